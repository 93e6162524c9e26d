"""Fixtures of the chart tests: the tools, and the chart rendered once per values set.

Fixtures:
    helm           session: the pinned Helm 4 binary (a skip locally, a failure in CI, if missing)
    rendered_sets  session: {values set name: Rendered} for every tests/chart/values/*.yaml,
                   each rendered once (`helm template`, release "shop", namespace "storefront")
    render         session: render(values files, {--set key: value}) -> Rendered, cached
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from tests.chart._helm import (
    HELM,
    VALUES_DIR,
    Rendered,
    matrix,
    require_tool,
    run,
    template_args,
)

Render = Callable[..., Rendered]


@pytest.fixture(scope="session")
def helm() -> Path:
    """The project's Helm (tools/install-kube-clients.sh)."""
    return require_tool(HELM, "run `make kube-clients` (installs Helm 4.1.4)")


@pytest.fixture(scope="session")
def render(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """`helm template` of the chart with values files and --set values, once per combination."""
    cache: dict[tuple[tuple[Path, ...], tuple[tuple[str, str], ...]], Rendered] = {}
    out_dir = tmp_path_factory.mktemp("rendered")

    def render_chart(
        values_files: Sequence[Path] = (), set_values: Mapping[str, str] | None = None
    ) -> Rendered:
        key = (tuple(values_files), tuple(sorted((set_values or {}).items())))
        if key not in cache:
            result = run(helm, *template_args(values_files, set_values or {}))
            name = "+".join([p.stem for p in values_files] + [f"{k}={v}" for k, v in key[1]])
            # Cut: long --set paths would pass the file system's 255-byte name limit.
            safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name or "defaults")[:120]
            path = out_dir / f"{len(cache):02d}-{safe_name}.yaml"
            cache[key] = Rendered.from_text(name or "defaults", result.stdout, path)
        return cache[key]

    return render_chart


@pytest.fixture(scope="session")
def rendered_sets(render: Render) -> dict[str, Rendered]:
    """Every values set of tests/chart/values/, rendered."""
    return {name: render([VALUES_DIR / f"{name}.yaml"]) for name in matrix()}
