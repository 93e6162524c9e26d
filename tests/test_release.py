"""Release hygiene: one version story, and a lock that cannot drift from pyproject.toml."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path
from typing import Final

import pytest
import yaml

from tests._unavailable import unavailable

REPO: Final = Path(__file__).resolve().parents[1]
UV: Final = Path(os.environ.get("UV", REPO / ".tools" / "uv" / "bin" / "uv"))
# What tools/lock.sh reads and writes.
LOCK_INPUTS: Final = ("pyproject.toml", "uv.lock", "README.md", "tools/lock.sh", "requirements")


def project_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


def test_the_chart_app_version_is_the_project_version() -> None:
    chart = yaml.safe_load((REPO / "charts/storefront/Chart.yaml").read_text())
    assert chart["appVersion"] == project_version()


def test_the_changelog_has_an_entry_for_the_project_version() -> None:
    headings = re.findall(r"^## \[([^\]]+)\]", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert project_version() in headings


def test_the_license_is_the_apache_2_text_the_metadata_claims() -> None:
    with (REPO / "pyproject.toml").open("rb") as file:
        assert tomllib.load(file)["project"]["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text.splitlines()[0]
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def _lock_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(root / "tools/lock.sh"), "check"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "UV": str(UV), "UV_PYTHON_DOWNLOADS": "never"},
        timeout=300,
    )


@pytest.fixture
def lock_copy(tmp_path: Path) -> Path:
    """The files tools/lock.sh works on, copied so that a test can break them."""
    if not UV.is_file():
        unavailable(f"{UV} is missing: run `make` (it installs uv from requirements/uv.txt)")
    for name in LOCK_INPUTS:
        source, target = REPO / name, tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    return tmp_path


def test_the_committed_lock_and_requirements_agree_with_their_sources(lock_copy: Path) -> None:
    result = _lock_check(lock_copy)
    assert result.returncode == 0, result.stderr


def test_the_lock_check_fails_when_pyproject_gains_a_dependency(lock_copy: Path) -> None:
    pyproject = lock_copy / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('    "orjson>=3.10",\n', '    "orjson>=3.10",\n    "six",\n'))
    result = _lock_check(lock_copy)
    assert result.returncode != 0
    assert "uv.lock disagrees with pyproject.toml" in result.stderr


def test_the_lock_check_fails_when_an_exported_file_is_edited(lock_copy: Path) -> None:
    runtime = lock_copy / "requirements/runtime.txt"
    runtime.write_text(re.sub(r"^orjson==\S+", "orjson==3.10.0", runtime.read_text(), flags=re.M))
    result = _lock_check(lock_copy)
    assert result.returncode != 0
    assert "requirements/runtime.txt is stale" in result.stderr


def _fake_newer_wheel(directory: Path, name: str, version: str) -> Path:
    """A wheel of `name` at `version` that fails on import: a stand-in for a newer release."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": 'raise ImportError("a fake release, never to be installed")\n',
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = f"{dist_info}/RECORD"
    files[record] = "".join(f"{path},,\n" for path in [*files, record])
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def _installed_version(venv: Path, name: str) -> str:
    return subprocess.run(
        [venv / "bin/python", "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_a_newer_release_on_the_index_does_not_change_what_gets_installed(
    tmp_path: Path,
) -> None:
    """What `make` runs (`uv sync --locked`) installs the lock's orjson even when a newer
    orjson is on offer, which an unlocked install of the same range would take."""
    if not UV.is_file():
        unavailable(f"{UV} is missing: run `make` (it installs uv from requirements/uv.txt)")
    links = tmp_path / "links"
    links.mkdir()
    _fake_newer_wheel(links, "orjson", "99.0.0")
    locked = re.search(r'name = "orjson"\nversion = "([^"]+)"', (REPO / "uv.lock").read_text())
    assert locked is not None
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}

    synced = tmp_path / "synced"
    sync: list[str | Path] = [
        UV,
        "sync",
        "--quiet",
        "--locked",
        "--no-default-groups",
        "--no-install-project",
    ]
    subprocess.run(
        [*sync, "--find-links", str(links)],
        cwd=REPO,
        env={**env, "UV_PROJECT_ENVIRONMENT": str(synced)},
        check=True,
        timeout=300,
    )
    assert _installed_version(synced, "orjson") == locked.group(1)

    resolved = tmp_path / "resolved"
    subprocess.run([UV, "venv", "--quiet", resolved], env=env, check=True, timeout=60)
    install: list[str | Path] = [
        UV,
        "pip",
        "install",
        "--quiet",
        "--python",
        resolved / "bin/python",
    ]
    subprocess.run(
        [*install, "--find-links", str(links), "orjson>=3.10"],
        env=env,
        check=True,
        timeout=300,
    )
    assert _installed_version(resolved, "orjson") == "99.0.0"
