"""The observability files under test, and the tools that check them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Final

import yaml

from tests._unavailable import unavailable

REPO: Final = Path(__file__).resolve().parents[2]
RULES_FILE: Final = REPO / "charts/storefront/files/prometheus/storefront-rules.yaml"
DASHBOARD_FILE: Final = REPO / "charts/storefront/files/grafana/storefront-dashboard.json"
RULES_TESTS: Final = Path(__file__).with_name("rules_test.yaml")
SCHEMAS: Final = Path(__file__).with_name("schemas")


def require_tool(name: str) -> str:
    """The path of `name` (prometheus, promtool) on PATH; without it the test is skipped
    locally with the reason and fails in CI (CI=true), where no test may be skipped."""
    path = shutil.which(name)
    if path is not None:
        return path
    problem = f"no `{name}` on PATH: run tools/install-prometheus.sh (`make test` does, as root)"
    unavailable(problem)


def load_rules() -> dict[str, Any]:
    rules: dict[str, Any] = yaml.safe_load(RULES_FILE.read_text())
    return rules


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return dashboard


def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return schema


def rules_of(rules: dict[str, Any]) -> list[dict[str, Any]]:
    """Every recording and alerting rule, in file order."""
    return [rule for group in rules["groups"] for rule in group["rules"]]


def alerts_of(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for rule in rules_of(rules) if "alert" in rule]


def panels_of(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that is not a row (also those inside collapsed rows)."""
    panels = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            panels.extend(panel["panels"])
        else:
            panels.append(panel)
    return panels
