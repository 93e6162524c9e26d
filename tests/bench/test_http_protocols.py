"""`python -m bench.http_protocols` keeps working: one short round of add-to-cart over HTTP
under each variant (the three protocols, the framework-free handler, the floor). Only the
structure of the result is checked, never a timing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from bench import REPO
from tests._unavailable import unavailable

pytestmark = pytest.mark.timeout(120)


VARIANTS = ("httptools", "limited", "h11", "framework-free", "floor")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.http_protocols", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def test_each_variant_serves_add_to_cart_and_is_measured() -> None:
    if shutil.which("wrk") is None:
        unavailable("wrk is not installed (tools/install-wrk.sh, run by make test, installs it)")
    completed = run("--rounds", "1", "--seconds", "1", "--variants", ",".join(VARIANTS))
    output = completed.stdout + completed.stderr
    if completed.returncode != 0 and "no Redis" in completed.stderr:
        unavailable(completed.stderr.strip().splitlines()[-1])
    assert completed.returncode == 0, output
    table = output[output.index("variant ") :].splitlines()
    assert [line.split()[0] for line in table[1:6]] == list(VARIANTS)
    written = sorted((REPO / ".run" / "bench").glob("http-*.json"))[-1]
    (row,) = json.loads(written.read_text())["rounds"]
    for variant in VARIANTS:
        assert row[variant]["requests"] > 0
        assert row[variant]["cpu_us_per_request"] > 0


def test_an_unknown_or_repeated_variant_is_refused() -> None:
    for variants in ("limited,unknown", "limited,limited"):
        completed = run("--variants", variants)
        assert completed.returncode == 2, completed.stderr
        assert "--variants" in completed.stderr
