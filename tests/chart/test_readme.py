"""The chart README's Parameters table is what readme-generator makes of values.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.chart._helm import CHART_DIR, README_GENERATOR, require_tool, run


def test_readme_parameters_table_is_up_to_date(tmp_path: Path) -> None:
    generator = require_tool(
        README_GENERATOR, "run `make chart-tools` (readme-generator-for-helm 2.7.2 from npm)"
    )
    readme = tmp_path / "README.md"
    shutil.copy(CHART_DIR / "README.md", readme)
    # It also fails when a key has no `## @param` or a `## @param` names no key.
    run(generator, "--values", CHART_DIR / "values.yaml", "--readme", readme)
    assert readme.read_text() == (CHART_DIR / "README.md").read_text(), (
        "charts/storefront/README.md is stale: run "
        f"{generator} --values charts/storefront/values.yaml --readme charts/storefront/README.md"
    )
