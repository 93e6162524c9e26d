"""Running wrk with one of the Lua scripts in bench/wrk/ and reading the JSON line that the
scripts' `done()` hook prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SCRIPTS = Path(__file__).resolve().parent / "wrk"
RESULT_MARKER = "BENCH_RESULT "
REQUEST_TIMEOUT_S = 5  # wrk's --timeout: a slower response counts as a timeout error
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class WrkError(Exception):
    """wrk is missing, failed, or printed no result."""


@dataclass(frozen=True)
class WrkResult:
    requests: int  # completed
    sent: int  # made, including those in flight when wrk stopped
    duration_s: float
    rps: float
    errors: dict[str, int]
    latency_us: dict[str, Any]  # min, max, mean, stdev, percentiles: [[quantile, us], ...]
    data_wrapped: int
    output: str  # wrk's own text report

    @property
    def errors_total(self) -> int:
        return sum(self.errors.values())

    def percentile_ms(self, quantile: float) -> float:
        for q, micros in self.latency_us["percentiles"]:
            if q == quantile:
                return float(micros) / 1000
        raise KeyError(quantile)


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError("wrk is not installed: run tools/install-wrk.sh (make bench does)")
    return path


def wrk_version() -> str:
    try:
        out = subprocess.run(
            [wrk_binary(), "-v"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError, WrkError):
        return "unknown"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def run_wrk(
    url: str,
    script: str,
    *,
    connections: int,
    duration_s: float,
    threads: int,
    env: dict[str, str],
    log: Path | None = None,
) -> WrkResult:
    """`wrk -t threads -c connections -d duration -s bench/wrk/<script> url`, bounded in time.

    Only loopback URLs are accepted. `env` names the data files (BENCH_TOKENS, ...)."""
    host = urlsplit(url).hostname
    if host not in _LOOPBACK_HOSTS:
        raise WrkError(f"refusing to load {url}: the bench targets loopback only")
    threads = max(1, min(threads, connections))
    argv = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={REQUEST_TIMEOUT_S}s",
        "-s",
        str(SCRIPTS / script),
        url,
    ]
    child_env = dict(os.environ, BENCH_THREADS=str(threads), **env)
    try:
        completed = subprocess.run(
            argv,
            env=child_env,
            capture_output=True,
            text=True,
            timeout=duration_s + REQUEST_TIMEOUT_S + 30,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish: {' '.join(argv)}") from exc
    output = completed.stdout + completed.stderr
    if log is not None:
        with log.open("a") as file:
            file.write(f"$ {' '.join(argv)}\n{output}\n")
    if completed.returncode != 0:
        raise WrkError(f"wrk exited with {completed.returncode}: {output.strip()}")
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            data = json.loads(line[len(RESULT_MARKER) :])
            break
    else:
        raise WrkError(f"wrk printed no {RESULT_MARKER.strip()} line:\n{output}")
    duration = data["duration_us"] / 1e6
    report = "\n".join(
        line for line in completed.stdout.splitlines() if not line.startswith(RESULT_MARKER)
    )
    return WrkResult(
        requests=data["requests"],
        sent=data["sent"],
        duration_s=duration,
        rps=data["requests"] / duration if duration else 0.0,
        errors=data["errors"],
        latency_us=data["latency_us"],
        data_wrapped=data["data_wrapped"],
        output=report,
    )
