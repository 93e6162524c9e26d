"""The opt-in Prometheus and Grafana objects (`metrics.*`): ServiceMonitors, the PrometheusRule,
the dashboard ConfigMap, the scrape annotations, and the NetworkPolicy rule for Prometheus.

The `metrics` values set turns all of them on the way a kube-prometheus-stack user would; the
other sets (and the defaults) must render none of them.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart._helm import (
    CHART_DIR,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    SERVICES,
    VALUES_DIR,
    Doc,
    Rendered,
    ingress_admits,
    matrix,
    require_tool,
    run,
    selects,
    values_of,
)
from tests.chart.conftest import Render

RULES_FILE = CHART_DIR / "files" / "prometheus" / "storefront-rules.yaml"
DASHBOARD_FILE = CHART_DIR / "files" / "grafana" / "storefront-dashboard.json"
DASHBOARD_CONFIGMAP = f"{FULLNAME}-grafana-dashboard"
METRICS = VALUES_DIR / "metrics.yaml"
SCRAPE_ANNOTATIONS = ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path")
# A pod of kube-prometheus-stack's Prometheus, as networkPolicy.metrics in metrics.yaml names it.
PROMETHEUS_POD = {"app.kubernetes.io/name": "prometheus"}


def sets_without_metrics() -> list[str]:
    return [name for name in matrix() if "metrics" not in values_of(name)]


def job_matchers() -> set[str]:
    """Every `job=~"..."` regex of the rule file (what the scrape jobs must be called)."""
    return set(re.findall(r'job=~"([^"]+)"', RULES_FILE.read_text()))


def pod_annotations(rendered: Rendered, component: str) -> dict[str, str]:
    owner = rendered.workload(component).owner
    if owner["kind"] == "Pod":
        return dict(owner["metadata"].get("annotations") or {})
    return dict(owner["spec"]["template"]["metadata"].get("annotations") or {})


def dashboard_configmaps(rendered: Rendered) -> list[Doc]:
    return [
        cm
        for cm in rendered.of_kind("ConfigMap")
        if "grafana_dashboard" in cm["metadata"]["labels"]
    ]


def service_monitor(rendered: Rendered, component: str) -> Doc:
    (monitor,) = [
        m
        for m in rendered.of_kind("ServiceMonitor")
        if m["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return monitor


def selected_services(rendered: Rendered, monitor: Doc) -> list[str]:
    """Names of the rendered Services a ServiceMonitor selects (namespace and labels)."""
    spec = monitor["spec"]
    assert set(spec["selector"]) == {"matchLabels"}, "only matchLabels is evaluated here"
    namespaces = spec["namespaceSelector"]["matchNames"]
    return [
        service["metadata"]["name"]
        for service in rendered.of_kind("Service")
        if service["metadata"]["namespace"] in namespaces
        and selects(spec["selector"]["matchLabels"], service["metadata"]["labels"])
    ]


# --- off by default -------------------------------------------------------------------------


@pytest.mark.parametrize("values_set", sets_without_metrics())
def test_sets_without_metrics_render_none_of_it(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    rendered = rendered_sets[values_set]
    assert rendered.of_kind("ServiceMonitor") == []
    assert rendered.of_kind("PrometheusRule") == []
    assert dashboard_configmaps(rendered) == []
    for workload in rendered.workloads():
        annotations = pod_annotations(rendered, workload.component)
        assert not any(key.startswith("prometheus.io/") for key in annotations), workload.name


def test_defaults_are_covered() -> None:
    assert "defaults" in sets_without_metrics()
    assert "metrics" in matrix()


# --- ServiceMonitor -------------------------------------------------------------------------


@pytest.mark.parametrize("component", SERVICES)
def test_service_monitor_selects_exactly_its_service(
    rendered_sets: dict[str, Rendered], component: str
) -> None:
    rendered = rendered_sets["metrics"]
    assert len(rendered.of_kind("ServiceMonitor")) == len(SERVICES)
    monitor = service_monitor(rendered, component)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"] == f"{FULLNAME}-{component}"
    assert selected_services(rendered, monitor) == [f"{FULLNAME}-{component}"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    # kube-prometheus-stack's Prometheus selects ServiceMonitors by its release label.
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE

    (endpoint,) = monitor["spec"]["endpoints"]
    service = rendered.get("Service", f"{FULLNAME}-{component}")
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "5s")


@pytest.mark.parametrize("component", SERVICES)
def test_service_monitor_names_the_job_the_rules_select(
    rendered_sets: dict[str, Rendered], component: str
) -> None:
    """The operator sets job to the Service's name (shop-storefront-inventory), then applies
    the endpoint's relabelings: one replace without source labels sets it to
    storefront-<component>, which every `job=~` matcher of the rules matches. Nothing touches
    `namespace` (the operator's, the Service's namespace), which the rules group by."""
    monitor = service_monitor(rendered_sets["metrics"], component)
    (endpoint,) = monitor["spec"]["endpoints"]
    job = f"storefront-{component}"
    assert endpoint["relabelings"] == [
        {"action": "replace", "targetLabel": "job", "replacement": job}
    ]
    assert not endpoint.get("honorLabels", False)
    assert "metricRelabelings" not in endpoint
    matchers = job_matchers()
    assert matchers, "no job=~ matcher in the rule file"
    for matcher in matchers:
        assert re.fullmatch(matcher, job), matcher
        assert not re.fullmatch(matcher, f"{FULLNAME}-{component}")


def test_job_does_not_depend_on_the_release_name(helm: Path) -> None:
    for release, extra in (("prod-eu-2", []), ("shop", ["--set", "fullnameOverride=web"])):
        output = run(
            helm, "template", release, CHART_DIR, "--namespace", "eu",
            "--values", METRICS, *extra,
        ).stdout  # fmt: skip
        monitors = [d for d in yaml.safe_load_all(output) if d and d["kind"] == "ServiceMonitor"]
        jobs = {
            m["metadata"]["labels"]["app.kubernetes.io/component"]: m["spec"]["endpoints"][0][
                "relabelings"
            ][0]["replacement"]
            for m in monitors
        }
        assert jobs == {"inventory": "storefront-inventory", "checkout": "storefront-checkout"}
        for monitor in monitors:
            assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == (
                release
            )
            assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["eu"]}


def test_metrics_objects_can_live_in_the_monitoring_namespace(render: Render) -> None:
    """ServiceMonitor, PrometheusRule and dashboard can go to Prometheus' and Grafana's
    namespaces; the ServiceMonitors still select the Services in the release's namespace."""
    rendered = render(
        [METRICS],
        {
            "metrics.serviceMonitor.namespace": "monitoring",
            "metrics.prometheusRule.namespace": "monitoring",
            "metrics.grafanaDashboard.namespace": "grafana",
        },
    )
    for component in SERVICES:
        monitor = service_monitor(rendered, component)
        assert monitor["metadata"]["namespace"] == "monitoring"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        assert selected_services(rendered, monitor) == [f"{FULLNAME}-{component}"]
    assert rendered.get("PrometheusRule", FULLNAME)["metadata"]["namespace"] == "monitoring"
    assert rendered.get("ConfigMap", DASHBOARD_CONFIGMAP)["metadata"]["namespace"] == "grafana"
    moved = {"ServiceMonitor", "PrometheusRule"}
    for doc in rendered.documents:
        if doc["kind"] not in moved and doc["metadata"]["name"] != DASHBOARD_CONFIGMAP:
            assert doc["metadata"]["namespace"] == NAMESPACE


def test_scrape_interval_and_timeout_can_be_left_to_prometheus(render: Render) -> None:
    rendered = render(
        [METRICS],
        {"metrics.serviceMonitor.interval": "", "metrics.serviceMonitor.scrapeTimeout": ""},
    )
    for component in SERVICES:
        (endpoint,) = service_monitor(rendered, component)["spec"]["endpoints"]
        assert "interval" not in endpoint and "scrapeTimeout" not in endpoint


# --- PrometheusRule -------------------------------------------------------------------------


def test_prometheus_rule_holds_the_rule_files_groups_exactly(
    rendered_sets: dict[str, Rendered],
) -> None:
    rendered = rendered_sets["metrics"]
    (rule,) = rendered.of_kind("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    file_rules = yaml.safe_load(RULES_FILE.read_text())
    assert rule["spec"] == {"groups": file_rules["groups"]}


def test_prometheus_templates_in_annotations_reach_prometheus_unchanged(
    rendered_sets: dict[str, Rendered],
) -> None:
    """The alerts' `{{ $labels.job }}` and `{{ $value }}` are Prometheus templates: Helm must
    neither evaluate them (tpl) nor mangle them."""

    def templates(groups: list[dict[str, Any]]) -> dict[str, list[str]]:
        found = {}
        for group in groups:
            for rule in group["rules"]:
                for key, text in rule.get("annotations", {}).items():
                    found[f"{rule['alert']}.{key}"] = re.findall(r"\{\{.*?\}\}", text, re.S)
        return found

    rendered = rendered_sets["metrics"]
    (rule,) = rendered.of_kind("PrometheusRule")
    expected = templates(yaml.safe_load(RULES_FILE.read_text())["groups"])
    assert any("{{ $labels.job }}" in found for found in expected.values())
    assert any("$value" in t for found in expected.values() for t in found)
    assert templates(rule["spec"]["groups"]) == expected
    assert "{{ $labels.job }}" in rendered.path.read_text()  # literally, in Helm's output


def test_prometheus_rule_passes_promtool(
    rendered_sets: dict[str, Rendered], tmp_path: Path
) -> None:
    """The embedded copy is still a valid rule file for Prometheus."""
    promtool = require_tool(
        Path(shutil.which("promtool") or "/usr/bin/promtool"),
        "run tools/install-prometheus.sh (`make test` does, as root)",
    )
    (rule,) = rendered_sets["metrics"].of_kind("PrometheusRule")
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(yaml.safe_dump(rule["spec"]))
    result = run(promtool, "check", "rules", rule_file)
    assert "SUCCESS" in result.stdout + result.stderr


# --- Grafana dashboard ----------------------------------------------------------------------


def test_dashboard_configmap_holds_the_dashboard_unchanged(
    rendered_sets: dict[str, Rendered],
) -> None:
    rendered = rendered_sets["metrics"]
    (configmap,) = dashboard_configmaps(rendered)
    assert configmap["metadata"]["name"] == DASHBOARD_CONFIGMAP
    # What kube-prometheus-stack's Grafana sidecar looks for (label "1", a string).
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Shop"}
    text = DASHBOARD_FILE.read_text()
    assert configmap["data"] == {"storefront-dashboard.json": text}  # byte for byte
    assert json.loads(configmap["data"]["storefront-dashboard.json"]) == json.loads(text)


def test_dashboard_label_is_configurable(render: Render) -> None:
    rendered = render(
        [METRICS],
        {
            "metrics.grafanaDashboard.labelKey": "dashboards",
            "metrics.grafanaDashboard.labelValue": "shop",
        },
    )
    configmap = rendered.get("ConfigMap", DASHBOARD_CONFIGMAP)
    assert configmap["metadata"]["labels"]["dashboards"] == "shop"
    assert "grafana_dashboard" not in configmap["metadata"]["labels"]


# --- scrape annotations ---------------------------------------------------------------------


def test_scrape_annotations_only_on_the_service_pods_when_enabled(
    rendered_sets: dict[str, Rendered], render: Render
) -> None:
    rendered = rendered_sets["metrics"]
    for component in SERVICES:
        annotations = pod_annotations(rendered, component)
        (container,) = rendered.workload(component).containers()
        (port,) = [p for p in container["ports"] if p["name"] == "http"]
        assert {key: annotations[key] for key in SCRAPE_ANNOTATIONS} == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port["containerPort"]),
            "prometheus.io/path": "/metrics",
        }
    assert pod_annotations(rendered, "checkout")["example.com/team"] == "shop"  # podAnnotations
    for component in ("redis", "smoke-test"):
        assert not set(SCRAPE_ANNOTATIONS) & set(pod_annotations(rendered, component))

    off = render([METRICS], {"metrics.scrapeAnnotations.enabled": "false"})
    for component in SERVICES:
        assert not set(SCRAPE_ANNOTATIONS) & set(pod_annotations(off, component))
    assert pod_annotations(off, "checkout")["example.com/team"] == "shop"


# --- NetworkPolicy --------------------------------------------------------------------------


def metrics_rules(policy: Doc, values_set: str) -> list[Doc]:
    """The ingress rules the chart adds for Prometheus: after its own rule (ingress[0]), before
    networkPolicy.extraIngress."""
    extra = len(values_of(values_set).get("networkPolicy", {}).get("extraIngress", []))
    ingress: list[Doc] = policy["spec"]["ingress"]
    return ingress[1 : len(ingress) - extra]


@pytest.mark.parametrize("component", SERVICES)
def test_network_policy_lets_prometheus_scrape(
    rendered_sets: dict[str, Rendered], component: str
) -> None:
    """allowExternal=false admits only labelled clients; networkPolicy.metrics adds one rule
    for port http whose single peer needs both the namespace and the pod labels."""
    rendered = rendered_sets["metrics"]
    policy = rendered.get("NetworkPolicy", f"{FULLNAME}-{component}")
    (container,) = rendered.workload(component).containers()
    port = container["ports"][0]["containerPort"]
    (rule,) = metrics_rules(policy, "metrics")
    assert rule["ports"] == [{"port": port, "protocol": "TCP"}]
    selectors = values_of("metrics")["networkPolicy"]["metrics"]
    assert rule["from"] == [selectors]
    # A pod labelled like Prometheus but in the release's namespace is not Prometheus.
    assert not ingress_admits(policy, PROMETHEUS_POD, port)


def test_network_policy_metrics_rule_variants(render: Render) -> None:
    network = VALUES_DIR / "network-policies.yaml"
    # Empty selectors (the default): no rule, so Prometheus is not let in by accident.
    closed = render([network])
    for component in SERVICES:
        policy = closed.get("NetworkPolicy", f"{FULLNAME}-{component}")
        assert metrics_rules(policy, "network-policies") == []
        (container,) = closed.workload(component).containers()
        assert not ingress_admits(policy, PROMETHEUS_POD, container["ports"][0]["containerPort"])
    # podSelector alone: Prometheus' pods in the release's namespace.
    prometheus_label = "networkPolicy.metrics.podSelector.matchLabels.app\\.kubernetes\\.io/name"
    same_namespace = render([network], {prometheus_label: "prometheus"})
    policy = same_namespace.get("NetworkPolicy", f"{FULLNAME}-inventory")
    (rule,) = metrics_rules(policy, "network-policies")
    assert rule == {
        "ports": [{"port": 8001, "protocol": "TCP"}],
        "from": [{"podSelector": {"matchLabels": PROMETHEUS_POD}}],
    }
    assert ingress_admits(policy, PROMETHEUS_POD, 8001)
    assert not ingress_admits(policy, {"app.kubernetes.io/name": "other"}, 8001)


def test_notes_warn_when_the_network_policy_shuts_prometheus_out(helm: Path) -> None:
    def warnings(*args: str | Path) -> list[str]:
        output = run(
            helm, "install", RELEASE, CHART_DIR, "--dry-run=client", "-n", NAMESPACE, *args
        ).stdout.split("NOTES:", 1)[1]
        return [line for line in output.splitlines() if "Prometheus cannot scrape" in line]

    shut_out = ("--set", "networkPolicy.enabled=true", "--set", "networkPolicy.allowExternal=false")
    assert warnings(*shut_out, "--set", "metrics.serviceMonitor.enabled=true") != []
    assert warnings(*shut_out, "--set", "metrics.scrapeAnnotations.enabled=true") != []
    assert warnings(*shut_out) == []  # nobody scrapes
    assert warnings("--values", METRICS) == []  # networkPolicy.metrics admits Prometheus
