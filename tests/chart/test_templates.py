"""How the chart's templates are laid out, as a reviewer reads them.

Each template file renders objects of the one kind its name says (app/deployment.yaml the
services' Deployments), and helpers (_*.tpl) return parts, never whole objects. The two
services come from one loop per kind over values of the same shape, so with the same values
they render the same objects but for their names: a template that special-cases a service
by name fails here (give the service a value instead).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart._helm import CHART_DIR, SERVICES, VALUES_DIR, Rendered, matrix
from tests.chart.conftest import Render

# The kind of the objects a template file renders, by the last word of its name
# (redis/headless-service.yaml: Service); a Grafana dashboard ships as a ConfigMap.
KIND_OF_FILE = {
    "configmap": "ConfigMap",
    "dashboard": "ConfigMap",
    "deployment": "Deployment",
    "hpa": "HorizontalPodAutoscaler",
    "job": "Job",
    "networkpolicy": "NetworkPolicy",
    "pdb": "PodDisruptionBudget",
    "pod": "Pod",
    "prometheusrule": "PrometheusRule",
    "secret": "Secret",
    "service": "Service",
    "serviceaccount": "ServiceAccount",
    "servicemonitor": "ServiceMonitor",
    "statefulset": "StatefulSet",
}
SOURCE = re.compile(r"^# Source: storefront/(templates/\S+)$", re.MULTILINE)


def sources(rendered: Rendered) -> list[tuple[str, str]]:
    """(template file, kind) of every document of a `helm template` output."""
    found = []
    for document in rendered.path.read_text().split("\n---\n"):
        source = SOURCE.search(document)
        body = yaml.safe_load(document)
        if source and body:
            found.append((source.group(1), body["kind"]))
    return found


def test_each_template_file_renders_the_kind_its_name_says(
    rendered_sets: dict[str, Rendered],
) -> None:
    seen = set()
    for rendered in rendered_sets.values():
        for template, kind in sources(rendered):
            seen.add(template)
            word = Path(template).stem.rsplit("-", 1)[-1]
            assert KIND_OF_FILE.get(word) == kind, f"{rendered.name}: {template} renders a {kind}"
    on_disk = {
        str(path.relative_to(CHART_DIR)) for path in (CHART_DIR / "templates").rglob("*.yaml")
    }
    assert on_disk - seen == set(), "templates no values set renders"


def test_helpers_return_parts_not_objects() -> None:
    for helpers in (CHART_DIR / "templates").glob("_*.tpl"):
        whole_objects = re.findall(r"^(?:apiVersion|kind): .*$", helpers.read_text(), re.MULTILINE)
        assert whole_objects == [], f"{helpers.name} defines an object: move it to a template"


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of values: maps merge key by key, anything else replaces."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def renamed(node: Any, old: str, new: str) -> Any:
    """`node` with `old` replaced by `new` in every string (keys too)."""
    if isinstance(node, dict):
        return {renamed(k, old, new): renamed(v, old, new) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return type(node)(renamed(item, old, new) for item in node)
    return node.replace(old, new) if isinstance(node, str) else node


def component_of(doc: dict[str, Any]) -> str | None:
    component = doc["metadata"].get("labels", {}).get("app.kubernetes.io/component")
    return str(component) if component else None


@pytest.mark.parametrize("values_set", matrix())
def test_services_render_alike_from_alike_values(
    render: Render, values_set: str, tmp_path: Path
) -> None:
    """checkout's values set to inventory's (its names renamed, e.g. its image repository):
    every checkout object is then inventory's, renamed."""
    first, second = SERVICES
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    values = merged(defaults, yaml.safe_load((VALUES_DIR / f"{values_set}.yaml").read_text()))
    # The whole values in one file: Helm would merge a second file's maps into the set's.
    values[second] = renamed(values[first], first, second)
    mirrored = tmp_path / f"{values_set}-mirrored.yaml"
    mirrored.write_text(yaml.safe_dump(values))
    rendered = render([mirrored])

    def objects(component: str) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (doc["kind"], doc["metadata"]["name"]): doc
            for doc in rendered.documents
            if component_of(doc) == component
        }

    expected = renamed(objects(first), first, second)
    actual = objects(second)
    assert expected, f"{values_set}: no {first} objects"
    assert actual.keys() == expected.keys()
    for key, doc in expected.items():
        assert actual[key] == doc, f"{values_set}: {key} differs from {first}'s beyond its names"
