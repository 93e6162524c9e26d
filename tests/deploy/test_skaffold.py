"""skaffold.yaml against skaffold's official v4beta13 JSON schema: the newest that skaffold
v2.16.1 (tools/install-skaffold.sh builds it) reads. tests/cluster runs skaffold itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((Path(__file__).parent / "schemas" / "skaffold-v4beta13.json").read_text())
CONFIG_SCHEMA = {"$ref": "#/definitions/SkaffoldConfig", "definitions": SCHEMA["definitions"]}


def documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((ROOT / "skaffold.yaml").read_text()) if doc]


def messages(error: jsonschema.ValidationError) -> list[str]:
    """The leaf messages: `anyOf` branches (one per builder or deployer) hide them."""
    if not error.context:
        return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"]
    return [message for sub in error.context for message in messages(sub)]


def errors_of(config: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(CONFIG_SCHEMA)
    return [message for error in validator.iter_errors(config) for message in messages(error)]


@pytest.mark.parametrize("index", range(len(documents())))
def test_skaffold_yaml_matches_the_schema(index: int) -> None:
    config = documents()[index]
    assert config["apiVersion"] == "skaffold/v4beta13"
    assert errors_of(config) == []


def test_the_schema_check_catches_a_misspelt_field() -> None:
    config = documents()[0]
    config["build"]["artifacts"][0]["docker"]["dockerfil"] = "Dockerfile"
    assert any("dockerfil" in message for message in errors_of(config))


def test_both_images_are_built_and_given_to_the_chart() -> None:
    config = documents()[0]
    images = {artifact["image"] for artifact in config["build"]["artifacts"]}
    assert images == {"storefront-inventory", "storefront-checkout"}
    values = yaml.safe_load((ROOT / "charts/storefront/values.yaml").read_text())
    [release] = config["deploy"]["helm"]["releases"]
    templates = release["setValueTemplates"]
    for image in images:
        component = image.removeprefix("storefront-")
        variable = image.replace("-", "_")
        assert values[component]["image"]["repository"] == image
        assert templates[f"{component}.image.repository"] == f"{{{{.IMAGE_REPO_{variable}}}}}"
        assert templates[f"{component}.image.tag"] == f"{{{{.IMAGE_TAG_{variable}}}}}"


def test_profiles_point_at_what_exists() -> None:
    profiles = {profile["name"]: profile for profile in documents()[0]["profiles"]}
    assert set(profiles) == {"manifests", "network-policies", "local-cluster"}
    for path in profiles["manifests"]["manifests"]["kustomize"]["paths"]:
        assert (ROOT / path / "kustomization.yaml").is_file()
    hooks = [
        hook.get("host", hook)
        for patch in profiles["local-cluster"]["patches"]
        if patch["path"].endswith("/hooks")
        for hook in [*patch["value"].get("before", []), *patch["value"].get("after", [])]
    ]
    assert len(hooks) == 3  # a build hook per image, a deploy hook for Redis
    for hook in hooks:
        assert (ROOT / hook["command"][0]).is_file()
    values = yaml.safe_load((ROOT / "charts/storefront/values.yaml").read_text())
    assert "enabled" in values["networkPolicy"]


def test_port_forwards_match_the_services() -> None:
    forwards = {f["resourceName"]: f["port"] for f in documents()[0]["portForward"]}
    assert forwards == {"storefront-inventory": 8001, "storefront-checkout": 8002}
