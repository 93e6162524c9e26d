"""The Prometheus rule file: valid, complete, and every alert unit-tested with promtool."""

from __future__ import annotations

import subprocess
from typing import Any

import jsonschema
import pytest
import yaml

from tests.observability._files import (
    RULES_FILE,
    RULES_TESTS,
    alerts_of,
    load_rules,
    load_schema,
    require_tool,
    rules_of,
)

ALERTS = [alert["alert"] for alert in alerts_of(load_rules())]


def test_the_rule_file_fits_the_schema() -> None:
    jsonschema.Draft7Validator(load_schema("prometheus-rules.json")).validate(load_rules())


def test_the_issue_s_alerts_are_all_there() -> None:
    expressions = {alert["alert"]: alert["expr"] for alert in alerts_of(load_rules())}
    assert expressions["StorefrontTargetDown"].startswith("up{")
    for name in ("HighErrorRatio", "HighLatencyP99", "RedisErrors", "CheckoutErrors"):
        assert f"Storefront{name}" in expressions


@pytest.mark.parametrize("alert", alerts_of(load_rules()), ids=ALERTS)
def test_every_alert_has_a_severity_and_says_what_to_do(alert: dict[str, Any]) -> None:
    assert set(alert["labels"]) == {"severity"}
    assert alert["labels"]["severity"] in {"critical", "warning"}
    assert set(alert["annotations"]) == {"summary", "description", "runbook"}
    assert alert.get("for"), "an alert without `for` pages on a single bad evaluation"


def test_every_rule_selects_the_storefront_jobs() -> None:
    for rule in rules_of(load_rules()):
        expr = rule["expr"]
        # Raw metrics are selected by job; recorded ones (level:metric:operation) already are.
        assert 'job=~"storefront-.+"' in expr or "job:storefront_" in expr, rule


@pytest.mark.parametrize("alert", ALERTS)
def test_every_alert_has_unit_tests_that_fire_and_stay_silent(alert: str) -> None:
    tests = yaml.safe_load(RULES_TESTS.read_text())["tests"]
    cases = [
        case
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == alert
    ]
    assert any(case["exp_alerts"] for case in cases), f"no test where {alert} fires"
    assert any(not case["exp_alerts"] for case in cases), f"no test where {alert} stays silent"


def test_promtool_checks_the_rules() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "test", "rules", RULES_TESTS.name],
        cwd=RULES_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
