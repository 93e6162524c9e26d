"""The dashboard and the rules against a real Prometheus scraping the real services.

Redis (Docker), inventory and checkout (processes) and Prometheus (Debian's binary, loopback
port, 1 s scrapes, the rule file loaded) run for this module. Shop traffic with every kind of
failure drives the services; then every dashboard query (its variables substituted as Grafana
would) and every rule expression goes through Prometheus's HTTP API: each must parse, return
series, and use only metric and label names that the scraped series have (see
`_prometheus.query_problems`). The range data of the dashboard is saved for
tools/render_dashboard.py.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._redis import run_restartable_redis
from tests.observability._drive import Shop, drive
from tests.observability._files import (
    RULES_FILE,
    load_dashboard,
    load_rules,
    panels_of,
    require_tool,
    rules_of,
)
from tests.observability._prometheus import (
    Prometheus,
    as_bool_comparison,
    query_problems,
    running_prometheus,
    scrape_config,
)
from tests.services._stack import LOGS, running_stack

JOBS = ("storefront-inventory", "storefront-checkout")
# What Grafana puts in for $__rate_interval with 1 s scrapes is 4 s; a little more smooths
# the picture.
RATE_INTERVAL = "5s"
SCRAPED_TIMEOUT = 30.0
DASHBOARD_DATA = Path(os.environ.get("STOREFRONT_DASHBOARD_DATA", LOGS / "dashboard-data.json"))


@dataclass(frozen=True)
class Query:
    panel: dict[str, Any]
    target: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.panel['title']} [{self.target['refId']}]"


QUERIES = [
    Query(panel, target) for panel in panels_of(load_dashboard()) for target in panel["targets"]
]
RULES = rules_of(load_rules())


def rule_id(rule: dict[str, Any]) -> str:
    return str(rule.get("alert") or rule["record"])


@dataclass(frozen=True)
class Live:
    prometheus: Prometheus
    started: float  # when the traffic started, and when it stopped
    stopped: float
    events: dict[str, float]  # when the failures and the Redis outage began and ended
    variables: dict[str, str]

    def substitute(self, expr: str) -> str:
        for name, value in self.variables.items():
            expr = expr.replace(f"${name}", value)
        assert "$" not in expr, f"a variable left in {expr}"
        return expr


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    binary = require_tool("prometheus")
    with (
        run_restartable_redis("7") as redis,
        running_stack(redis.url) as stack,
        httpx.Client(timeout=30, limits=httpx.Limits(max_connections=32)) as client,
    ):
        targets = {
            JOBS[0]: stack.inventory.url.removeprefix("http://"),
            JOBS[1]: stack.checkout.url.removeprefix("http://"),
        }
        config = scrape_config(targets, rule_files=[RULES_FILE])
        with running_prometheus(binary, config, tmp_path_factory.mktemp("prometheus")) as prom:
            wait_until(lambda: prom.value("sum(up)") == len(JOBS), "both services scraped")
            started = time.time()
            events = drive(Shop.of(stack, client), redis)
            stopped = time.time()
            wait_until(lambda: scraped_after(prom, stopped), "the last traffic scraped")
            yield Live(prom, started, stopped, events, variables=grafana_variables(prom))


def wait_until(condition: Any, what: str, timeout: float = SCRAPED_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout} s: {what}")
        time.sleep(0.2)


def scraped_after(prometheus: Prometheus, moment: float) -> bool:
    """Every target scraped, and every recording rule evaluated, after `moment`."""
    names = ["up", *(rule["record"] for rule in RULES if "record" in rule)]
    stamps = [prometheus.query(f"min(timestamp({name}))") for name in names]
    return all(stamp and float(stamp[0]["value"][1]) > moment for stamp in stamps)


def grafana_variables(prometheus: Prometheus) -> dict[str, str]:
    """The dashboard's variables as Grafana fills them in with "All" selected; longest
    names first, so that `$__rate_interval` is not taken for a variable `$__rate`."""
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    namespace = variables["namespace"]["allValue"]
    job_query = variables["job"]["query"].replace("$namespace", namespace)
    match = re.fullmatch(r"label_values\((.+), job\)", job_query)
    assert match, job_query
    jobs = prometheus.label_values("job", match.group(1))
    return {
        "__rate_interval": RATE_INTERVAL,
        "namespace": namespace,
        "job": "(" + "|".join(sorted(jobs)) + ")",
    }


def test_the_job_variable_finds_both_services(live: Live) -> None:
    assert live.variables["job"] == "(" + "|".join(sorted(JOBS)) + ")"


@pytest.mark.parametrize("query", QUERIES, ids=[query.id for query in QUERIES])
def test_every_dashboard_query_returns_series(live: Live, query: Query) -> None:
    expr = live.substitute(query.target["expr"])
    legend = query.target.get("legendFormat", "")
    assert query_problems(live.prometheus, expr, at=live.stopped, legend=legend) == []


@pytest.mark.parametrize("rule", RULES, ids=[rule_id(rule) for rule in RULES])
def test_every_rule_expression_returns_series(live: Live, rule: dict[str, Any]) -> None:
    # An alert's series exist whether or not they cross its threshold now.
    expr = as_bool_comparison(rule["expr"]) if "alert" in rule else rule["expr"]
    assert query_problems(live.prometheus, expr, at=live.stopped) == []


def test_prometheus_loaded_every_rule_and_evaluates_it_without_error(live: Live) -> None:
    loaded = {rule["name"]: rule for rule in live.prometheus.rules()}
    assert sorted(loaded) == sorted(rule_id(rule) for rule in RULES)
    for name, rule in loaded.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))


def test_the_checks_catch_typos(live: Live) -> None:
    """What a misspelt metric or label does to a query, per kind of mistake."""
    good = (
        'sum by (job, handler) (rate(http_requests_total{job=~"$job", '
        'handler!~"/healthz|/metrics"}[$__rate_interval]))'
    )
    typos = {
        "metric": good.replace("http_requests_total", "http_request_total"),
        "label in a matcher": good.replace("handler!~", "handle!~"),
        "label in by": good.replace("by (job, handler)", "by (job, hanlder)"),
    }
    assert query_problems(live.prometheus, live.substitute(good), at=live.stopped) == []
    for mistake, expr in typos.items():
        problems = query_problems(live.prometheus, live.substitute(expr), at=live.stopped)
        assert problems, mistake
    legend_typo = query_problems(
        live.prometheus, live.substitute(good), at=live.stopped, legend="{{jbo}}"
    )
    assert legend_typo, "label in a legend"


def test_the_traffic_reached_every_outcome(live: Live) -> None:
    """The drive did what the dashboard needs: each checkout outcome, 5xx, Redis errors."""
    prometheus = live.prometheus
    for outcome in ("paid", "empty", "insufficient_stock", "declined", "error"):
        count = prometheus.value(f'sum(cartlib_checkouts_total{{outcome="{outcome}"}})')
        assert count >= 1, outcome
    assert prometheus.value("sum(cartlib_checkout_replays_total)") >= 1
    assert prometheus.value('sum(http_requests_total{status="503"})') >= 1
    assert prometheus.value('sum(http_requests_total{status="401"})') >= 4
    assert prometheus.value('sum(http_requests_total{handler="none", status="404"})') >= 2
    assert prometheus.value("sum(cartlib_redis_errors_total)") >= 1


def test_save_the_dashboard_data_for_the_picture(live: Live) -> None:
    """The range data of every panel over the run, for tools/render_dashboard.py."""
    start, end = live.started - 2, live.stopped + 2
    panels = []
    for panel in panels_of(load_dashboard()):
        targets = []
        for target in panel["targets"]:
            expr = live.substitute(target["expr"])
            series = live.prometheus.query_range(expr, start, end, step=1)
            assert series, panel["title"]
            targets.append(
                {"expr": expr, "legend": target.get("legendFormat", ""), "series": series}
            )
        panels.append(
            {
                "title": panel["title"],
                "type": panel["type"],
                "unit": panel["fieldConfig"]["defaults"].get("unit", ""),
                "gridPos": panel["gridPos"],
                "targets": targets,
            }
        )
    DASHBOARD_DATA.parent.mkdir(parents=True, exist_ok=True)
    DASHBOARD_DATA.write_text(
        json.dumps(
            {
                "start": start,
                "end": end,
                "rate_interval": RATE_INTERVAL,
                "events": live.events,
                "panels": panels,
            }
        )
    )
