"""checkov finds nothing on any rendered values set (skips justified in checkov.yaml)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from tests.chart._helm import CHECKOV, TESTS_DIR, Rendered, require_tool, run

CONFIG = TESTS_DIR / "checkov.yaml"


def test_checkov_passes_every_rendered_set(
    rendered_sets: dict[str, Rendered], tmp_path: Path
) -> None:
    checkov = require_tool(CHECKOV, "run `make chart-tools` (checkov in .tools/checkov-venv)")
    for rendered in rendered_sets.values():
        shutil.copy(rendered.path, tmp_path / f"{rendered.name}.yaml")
    result = run(checkov, "--config-file", CONFIG, "--directory", tmp_path, "--output", "json")
    report = json.loads(result.stdout)
    failed = [
        f"{check['check_id']} {check['check_name']}: {check['resource']} in {check['file_path']}"
        for check in report["results"]["failed_checks"]
    ]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    # Every rendered object was scanned (checkov found the files and parsed them all).
    objects = sum(len(rendered.documents) for rendered in rendered_sets.values())
    assert report["summary"]["resource_count"] >= objects


def test_every_checkov_skip_is_justified() -> None:
    """Each skipped check is preceded by a comment that says why."""
    lines = CONFIG.read_text().splitlines()
    start = lines.index("skip-check:")
    for number, line in enumerate(lines[start + 1 :], start + 1):
        if match := re.fullmatch(r"  - (CKV2?_[A-Z0-9_]+)", line):
            above = lines[number - 1].strip()
            justified = above.startswith("#") or re.fullmatch(r"- CKV2?_[A-Z0-9_]+", above)
            assert justified, f"{match.group(1)} is skipped without a comment"
