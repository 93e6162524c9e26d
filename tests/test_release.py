"""Release hygiene: one version story, and a lock that cannot drift from pyproject.toml."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
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
