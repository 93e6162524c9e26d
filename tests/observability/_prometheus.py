"""A real Prometheus server for the tests (Debian's binary), and the checks run through it.

`running_prometheus()` starts `prometheus` on a free loopback port with a temporary
configuration and storage directory, and stops it on exit. `query_problems()` says what is
wrong with a query: it does not parse, returns nothing, selects a metric or label that no
scraped series has, or groups or names series (`by (...)`, `{{label}}` legends) by a label
that its results lack. An empty list means the query works.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests._redis import LOOPBACK, free_port

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

# A selector with matchers: `metric{label="value", ...}`.
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^{}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")
_LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_SCALAR_COMPARISON = re.compile(
    r"^(?P<left>.+?)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<right>-?[0-9.eE+]+)$"
)

# Labels a query may use although this test's Prometheus does not attach them: Kubernetes'
# `namespace` target label (kube-prometheus-stack) and the histogram bucket bound `le`.
OPTIONAL_LABELS = frozenset({"namespace", "le"})


class PrometheusError(Exception):
    """Prometheus answered a query with an error (it does not parse, or cannot run)."""


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))
    _labels: dict[str, frozenset[str]] = field(default_factory=dict)

    def api(self, path: str, **params: Any) -> Any:
        response = self.client.get(f"{self.url}/api/v1/{path}", params=params)
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one series) of `expr` at `at` (default now)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        if data["resultType"] == "vector":
            result: list[dict[str, Any]] = data["result"]
            return result
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        raise PrometheusError(f"unexpected result type {data['resultType']} for {expr}")

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self.api(
            "query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step}s"
        )
        result: list[dict[str, Any]] = data["result"]
        return result

    def labels_of(self, metric: str) -> frozenset[str]:
        """Every label name on the stored series of `metric` (empty: no such series)."""
        if metric not in self._labels:
            series = self.api("series", **{"match[]": metric})
            self._labels[metric] = frozenset(
                name for labels in series for name in labels if name != "__name__"
            )
        return self._labels[metric]

    def label_values(self, label: str, match: str) -> list[str]:
        values: list[str] = self.api(f"label/{label}/values", **{"match[]": match})
        return values

    def value(self, expr: str) -> float:
        """The single value of `expr` now, or 0 when it returns nothing."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0

    def rules(self) -> list[dict[str, Any]]:
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]


def query_problems(
    prometheus: Prometheus, expr: str, *, at: float | None = None, legend: str = ""
) -> list[str]:
    """What is wrong with `expr` against the scraped data (see the module docstring)."""
    try:
        result = prometheus.query(expr, at)
    except PrometheusError as exc:
        return [f"Prometheus refuses it: {exc}"]
    problems = [] if result else ["returns no series"]
    for metric, matchers in _SELECTOR.findall(expr):
        known = prometheus.labels_of(metric)
        if not known:
            problems.append(f"no scraped series is called {metric}")
            continue
        for label in _MATCHER.findall(matchers):
            if label not in known | OPTIONAL_LABELS:
                problems.append(f"{metric} has no label {label!r} (it has {sorted(known)})")
    if result:
        returned = {name for series in result for name in series["metric"]}
        grouping = {
            label.strip()
            for labels in _GROUPING.findall(expr)
            for label in labels.split(",")
            if label.strip()
        }
        for label in sorted((grouping | set(_LEGEND_LABEL.findall(legend))) - OPTIONAL_LABELS):
            if label not in returned:
                problems.append(f"grouped or named by {label!r}, which no result has")
    return problems


def as_bool_comparison(expr: str) -> str:
    """An alert expression `X > 0.05` as `X > bool 0.05`: the same series, whether or not
    they cross the threshold now, so that the query can be checked when nothing fires."""
    flat = " ".join(expr.split())
    match = _SCALAR_COMPARISON.match(flat)
    if match is None or not _balanced(match["left"]):
        raise ValueError(f"not `<expression> <comparison> <number>`: {expr}")
    return f"{match['left']} {match['op']} bool {match['right']}"


def _balanced(expr: str) -> bool:
    depth = 0
    for char in expr:
        depth += {"(": 1, ")": -1, "{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def scrape_config(
    targets: dict[str, str], *, rule_files: list[Path], interval: str = "1s"
) -> dict[str, Any]:
    """A configuration scraping each `job name -> host:port` every `interval`."""
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in targets.items()
        ],
    }


@contextlib.contextmanager
def running_prometheus(binary: str, config: dict[str, Any], workdir: Path) -> Iterator[Prometheus]:
    """`binary` serving `config` on a free 127.0.0.1 port, its data in `workdir`; stopped
    (and its connections closed) on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                "--storage.tsdb.retention.time=1h",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--log.level=warn",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    prometheus = Prometheus(f"http://{LOOPBACK}:{port}", process, log)
    try:
        _wait_until_ready(prometheus)
        yield prometheus
    finally:
        prometheus.client.close()
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(prometheus: Prometheus) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if prometheus.process.poll() is not None:
            raise RuntimeError(
                f"prometheus exited with {prometheus.process.returncode}:\n"
                + prometheus.log.read_text()
            )
        with contextlib.suppress(httpx.HTTPError):
            if prometheus.client.get(f"{prometheus.url}/-/ready").status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"prometheus did not become ready within {READY_TIMEOUT} s")
