"""The chart's `config.*` defaults are the services' own defaults (cartlib/settings.py): a
deployment from the chart runs with what docs/configuration.md says."""

from __future__ import annotations

import re
from typing import Any

import yaml

from cartlib.settings import Settings
from tests.chart._helm import CHART_DIR


def _field(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def test_config_defaults_match_the_settings_defaults() -> None:
    config: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["config"]
    assert "httpMaxHeaderBytes" in config and "httpReadTimeoutSeconds" in config
    differing = {}
    for key, value in config.items():
        field = Settings.model_fields[_field(key)]
        default = field.default
        if default != value:
            differing[key] = (value, default)
    assert differing == {}, "chart value vs Settings default"
