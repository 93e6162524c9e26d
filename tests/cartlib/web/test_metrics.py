"""cartlib.web.metrics: the multiprocess directory of `/metrics`.

(Aggregation across real uvicorn workers is proven in tests/observability.)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from cartlib.web import metrics


@pytest.fixture
def clean_multiproc_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No PROMETHEUS_MULTIPROC_DIR (restored afterwards: services started by later tests
    inherit this environment), and temporary directories made under `tmp_path`."""
    # setenv first: delenv alone records nothing to undo when the variable is unset, and
    # the variable that use_multiprocess_dir() sets would then outlive the test.
    monkeypatch.setenv(metrics.MULTIPROC_DIR_ENV, "")
    monkeypatch.delenv(metrics.MULTIPROC_DIR_ENV)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_one_worker_stays_single_process(clean_multiproc_env: Path) -> None:
    assert metrics.use_multiprocess_dir(None, workers=1) is None
    assert metrics.MULTIPROC_DIR_ENV not in os.environ
    assert list(clean_multiproc_env.iterdir()) == []


def test_several_workers_get_a_new_directory_under_tmp(clean_multiproc_env: Path) -> None:
    first = metrics.use_multiprocess_dir(None, workers=2)
    assert first is not None
    assert first.parent == clean_multiproc_env
    assert first.name.startswith("storefront-metrics-")
    assert os.environ[metrics.MULTIPROC_DIR_ENV] == str(first)
    second = metrics.use_multiprocess_dir(None, workers=2)
    assert second != first  # one per start: nothing of an earlier start is counted


def test_a_configured_directory_is_emptied_of_earlier_files(clean_multiproc_env: Path) -> None:
    configured = clean_multiproc_env / "configured" / "metrics"
    configured.mkdir(parents=True)
    stale = [configured / "counter_1.db", configured / "gauge_livesum_2.db"]
    own = configured / f"counter_{os.getpid()}.db"
    for path in [*stale, own]:
        path.write_bytes(b"")

    assert metrics.use_multiprocess_dir(str(configured), workers=1) == configured

    assert os.environ[metrics.MULTIPROC_DIR_ENV] == str(configured)
    assert sorted(configured.iterdir()) == [own]  # this process's files are open: kept
