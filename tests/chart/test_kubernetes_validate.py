"""Every rendered values set is valid Kubernetes for the oldest and a recent supported version."""

from __future__ import annotations

from pathlib import Path

from tests.chart._helm import KUBERNETES_VALIDATE, Rendered, require_tool, run

# The chart's kubeVersion floor, and a recent release.
KUBERNETES_VERSIONS = ("1.29", "1.34")


def kubernetes_validate(*files: Path, check: bool = True) -> str:
    tool = require_tool(KUBERNETES_VALIDATE, "run `make test` (the lock's dev group has it)")
    versions = [arg for version in KUBERNETES_VERSIONS for arg in ("-k", version)]
    # Files, not stdin: with several -k flags stdin would be read only once.
    result = run(tool, "--strict", "--quiet", *versions, *files, check=check)
    return result.stdout + result.stderr


def test_rendered_sets_are_valid_kubernetes(rendered_sets: dict[str, Rendered]) -> None:
    output = kubernetes_validate(*(rendered.path for rendered in rendered_sets.values()))
    assert "ERROR" not in output


def test_kubernetes_validate_rejects_unknown_fields(
    rendered_sets: dict[str, Rendered], tmp_path: Path
) -> None:
    """The check above is not vacuous: a misplaced field in a rendered set fails it."""
    text = rendered_sets["defaults"].path.read_text()
    broken = tmp_path / "broken.yaml"
    misplaced = "revisionHistoryLimit: 10\n  maxSurge: 1"  # belongs in strategy.rollingUpdate
    broken.write_text(text.replace("revisionHistoryLimit: 10", misplaced, 1))
    output = kubernetes_validate(broken, check=False)
    assert "'maxSurge' was unexpected" in output
