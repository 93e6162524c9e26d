"""`python -m bench.http_protocols` keeps working: one short round of add-to-cart over HTTP
under each protocol. Only the structure of the result is checked, never a timing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from bench import REPO
from tests._unavailable import unavailable

pytestmark = pytest.mark.timeout(120)


def test_each_protocol_serves_add_to_cart_and_is_measured() -> None:
    if shutil.which("wrk") is None:
        unavailable("wrk is not installed (tools/install-wrk.sh, run by make test, installs it)")
    completed = subprocess.run(
        [sys.executable, "-m", "bench.http_protocols", "--rounds", "1", "--seconds", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    output = completed.stdout + completed.stderr
    if completed.returncode != 0 and "no Redis" in completed.stderr:
        unavailable(completed.stderr.strip().splitlines()[-1])
    assert completed.returncode == 0, output
    table = output[output.index("protocol   CPU us/req") :].splitlines()
    assert [line.split()[0] for line in table[1:4]] == ["httptools", "limited", "h11"]
    written = sorted((REPO / ".run" / "bench").glob("http-*.json"))[-1]
    (row,) = json.loads(written.read_text())["rounds"]
    for protocol in ("httptools", "limited", "h11"):
        assert row[protocol]["requests"] > 0
        assert row[protocol]["cpu_us_per_request"] > 0
