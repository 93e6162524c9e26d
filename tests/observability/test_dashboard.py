"""The Grafana dashboard: a valid classic JSON model, on a Prometheus datasource variable,
every query filtered by the dashboard's variables. (That every query returns data is
proven against a live Prometheus in test_live_prometheus.py.)"""

from __future__ import annotations

import itertools
import re

import jsonschema

from tests.observability._files import load_dashboard, load_schema, panels_of

SELECTOR = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\{([^}]*)\}")


def test_the_dashboard_fits_the_grafana_schema() -> None:
    jsonschema.Draft7Validator(load_schema("grafana-dashboard-v1.json")).validate(load_dashboard())


def test_the_schema_check_has_teeth() -> None:
    dashboard = load_dashboard()
    dashboard["__inputs"] = []  # what "export for sharing externally" adds
    errors = list(
        jsonschema.Draft7Validator(load_schema("grafana-dashboard-v1.json")).iter_errors(dashboard)
    )
    assert errors


def test_the_datasource_is_a_prometheus_variable_used_everywhere() -> None:
    dashboard = load_dashboard()
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    expected = {"type": "prometheus", "uid": "${datasource}"}
    for variable in ("namespace", "job"):
        assert variables[variable]["datasource"] == expected
    for panel in panels_of(dashboard):
        assert panel["datasource"] == expected, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected, panel["title"]


def test_every_selector_is_filtered_by_job_and_namespace() -> None:
    for panel in panels_of(load_dashboard()):
        for target in panel["targets"]:
            selectors = SELECTOR.findall(target["expr"])
            assert selectors, (panel["title"], target["expr"])
            for matchers in selectors:
                assert matchers.startswith('job=~"$job", namespace=~"$namespace"'), (
                    panel["title"],
                    target["expr"],
                )


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    dashboard = load_dashboard()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for cell in itertools.product(
            range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
        ):
            assert cell not in cells, f"{panel['title']} overlaps {cells[cell]}"
            cells[cell] = panel["title"]


def test_the_issue_s_panels_are_all_there() -> None:
    queries = " ".join(
        target["expr"] for panel in panels_of(load_dashboard()) for target in panel["targets"]
    )
    for needed in (
        "sum by (job, handler) (rate(http_requests_total",  # RED per service and route
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "sum by (command, le) (rate(cartlib_redis_command_duration_seconds_bucket",
        "cartlib_redis_errors_total",
        "cartlib_redis_pool_connections",
        "cartlib_cart_items_added_total",
        "sum by (outcome) (rate(cartlib_checkouts_total",
        "cartlib_order_value_cents_sum",
        "cartlib_cache_requests_total",
        "storefront_build_info",
    ):
        assert needed in queries, needed
