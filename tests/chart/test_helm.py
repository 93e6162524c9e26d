"""Helm itself on the chart: lint, install --dry-run, Chart.yaml, and wrong values refused."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.chart._helm import (
    CHART_DIR,
    HELM_VERSION,
    INVALID_VALUES_DIR,
    NAMESPACE,
    RELEASE,
    REPO_ROOT,
    TESTS_DIR,
    VALUES_DIR,
    invalid_values,
    matrix,
    run,
    template_args,
)


def test_helm_is_the_pinned_version(helm: Path) -> None:
    version = run(helm, "version", "--template", "{{.Version}}").stdout.strip()
    assert version == HELM_VERSION


@pytest.mark.parametrize("values_set", matrix())
def test_lint_strict(helm: Path, values_set: str) -> None:
    result = run(helm, "lint", "--strict", CHART_DIR, "--values", VALUES_DIR / f"{values_set}.yaml")
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values_set", matrix())
def test_install_dry_run_client(helm: Path, values_set: str) -> None:
    """Helm 4's client-side dry run: the whole install path (kubeVersion, hooks, NOTES)."""
    result = run(
        helm, "install", RELEASE, CHART_DIR, "--dry-run=client", "--namespace", NAMESPACE,
        "--values", VALUES_DIR / f"{values_set}.yaml",
    )  # fmt: skip
    assert "STATUS: pending-install" in result.stdout
    assert "kind: StatefulSet" in result.stdout or values_set.startswith("external")
    assert f"CHART VERSION: {chart_yaml()['version']}" in result.stdout  # NOTES rendered


def test_notes_give_urls_port_forwards_and_the_admin_token(helm: Path) -> None:
    notes = dry_run_notes(helm)
    for service, port in (("inventory", 8001), ("checkout", 8002)):
        url = f"http://{RELEASE}-storefront-{service}.{NAMESPACE}.svc:{port}"
        assert url in notes
        assert f"svc/{RELEASE}-storefront-{service} {port}:{port}" in notes
    assert 'jsonpath="{.data.admin-token}"' in notes
    assert "WARNING: networkPolicy.enabled is false" in notes


def test_notes_warn_about_a_managed_redis_without_tls(helm: Path) -> None:
    notes = dry_run_notes(
        helm, "--set", "redis.enabled=false", "--set", "externalRedis.url=redis://:pw@r:6379/0"
    )
    assert "WARNING: externalRedis.url uses redis:// (no TLS)" in notes
    tls_notes = dry_run_notes(helm, "--values", VALUES_DIR / "external-redis.yaml")
    assert "no TLS" not in tls_notes


def dry_run_notes(helm: Path, *args: str | Path) -> str:
    result = run(helm, "install", RELEASE, CHART_DIR, "--dry-run=client", "-n", NAMESPACE, *args)
    return result.stdout.split("NOTES:", 1)[1]


def chart_yaml() -> dict[str, object]:
    data: dict[str, object] = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    return data


def test_chart_yaml_matches_the_helm_chart_schema() -> None:
    schema = json.loads((TESTS_DIR / "schemas" / "helm-chart.json").read_text())
    validator = jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(chart_yaml())]
    assert errors == []


def test_chart_is_an_application_for_kubernetes_1_29_and_later() -> None:
    chart = chart_yaml()
    assert chart["apiVersion"] == "v2"
    assert chart["type"] == "application"
    assert chart["kubeVersion"] == ">=1.29.0-0"


def test_app_version_is_the_project_version() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert chart_yaml()["appVersion"] == project["version"]


@pytest.mark.parametrize("values_file", invalid_values())
def test_wrong_values_are_refused(helm: Path, values_file: str) -> None:
    """Each file starts with `# expect: <text>` lines: text the error must contain (the key,
    the JSON path of values.schema.json's complaint, or storefront.validateValues' fix)."""
    path = INVALID_VALUES_DIR / values_file
    expected = [
        line.removeprefix("# expect: ")
        for line in path.read_text().splitlines()
        if line.startswith("# expect: ")
    ]
    assert expected, f"{values_file} names no `# expect:` text"
    result = run(helm, *template_args([path]), check=False)
    assert result.returncode != 0, f"{values_file} was accepted"
    for text in expected:
        assert text in result.stderr
