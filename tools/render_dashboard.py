"""Render the storefront Grafana dashboard's panels from a live run to a PNG (matplotlib).

The data comes from tests/observability/test_live_prometheus.py, which drives both services
(with failures and a Redis outage) under a real Prometheus and saves the range data of every
panel query to $STOREFRONT_TEST_LOGS/dashboard-data.json (/tmp/storefront-test-logs by
default). Panels keep their place in the dashboard's grid.

    .venv/bin/pytest tests/observability/test_live_prometheus.py
    .venv/bin/python tools/render_dashboard.py            # writes docs/dashboard.png
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure  # not pyplot: no GUI backend, no global state
from matplotlib.ticker import FuncFormatter
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = (
    Path(os.environ.get("STOREFRONT_TEST_LOGS", "/tmp/storefront-test-logs"))
    / "dashboard-data.json"
)
DEFAULT_OUT = REPO / "docs" / "dashboard.png"

GRID_COLUMNS = 24
UNIT_WIDTH_IN = 0.78  # inches per grid column
UNIT_HEIGHT_IN = 0.34  # inches per grid row
DPI = 90
LEGEND_ENTRIES = 6  # the largest series get a legend entry; the rest are drawn thin and grey
_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the saved range data")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the PNG to write")
    args = parser.parse_args()
    if not args.data.exists():
        parser.error(
            f"{args.data} does not exist: run "
            "`.venv/bin/pytest tests/observability/test_live_prometheus.py` first"
        )
    data = json.loads(args.data.read_text())
    figure = render(data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rendered = io.BytesIO()
    figure.savefig(rendered, format="png", dpi=DPI, facecolor=figure.get_facecolor())
    # A palette of 128 colours is plenty for lines on white, and a third of the size.
    with Image.open(rendered) as image:
        image.convert("RGB").quantize(colors=128).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


def render(data: dict[str, Any]) -> Figure:
    panels = data["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    width, height = GRID_COLUMNS * UNIT_WIDTH_IN, rows * UNIT_HEIGHT_IN + 0.8
    figure = Figure(figsize=(width, height), facecolor="#f4f5f5")
    seconds = data["end"] - data["start"]
    events = {name: at - data["start"] for name, at in data["events"].items()}
    figure.suptitle(
        f"storefront dashboard, {seconds:.0f} s of a live test run: steady shoppers; "
        f"at {events['failures']:.0f} s declined payments, missing stock, bad tokens, 404s; "
        f"Redis frozen from {events['redis frozen']:.0f} to {events['redis back']:.0f} s "
        f"(shaded). Rates over {data['rate_interval']}.",
        x=0.01,
        y=1 - 0.25 / height,
        ha="left",
        fontsize=13,
        fontweight="bold",
    )
    top = 0.6 / height  # figure fraction taken by the title
    for panel in panels:
        grid = panel["gridPos"]
        # The dashboard's row headers are not drawn: the gaps they leave stay empty.
        # Inside its cell, a panel leaves room for the y tick labels and the x label.
        left = (grid["x"] * UNIT_WIDTH_IN + 0.75) / width
        bottom = 1 - top - (grid["y"] + grid["h"]) * UNIT_HEIGHT_IN / height + 0.4 / height
        axes = figure.add_axes(
            (
                left,
                bottom,
                (grid["w"] * UNIT_WIDTH_IN - 0.9) / width,
                (grid["h"] * UNIT_HEIGHT_IN - 0.8) / height,
            )
        )
        if panel["type"] == "stat":
            _stat(axes, panel)
        elif panel["type"] == "table":
            _table(axes, panel)
        else:
            _timeseries(axes, panel, data["start"])
            axes.set_xlim(0, seconds)
            axes.axvspan(events["redis frozen"], events["redis back"], color="#f2495c", alpha=0.12)
    return figure


def _stat(axes: Axes, panel: dict[str, Any]) -> None:
    axes.set_axis_off()
    axes.set_title(panel["title"], fontsize=11, loc="left")
    [series] = panel["targets"][0]["series"]
    values = [float(value) for _, value in series["values"] if not math.isnan(float(value))]
    text = _format(values[-1], panel["unit"]) if values else "no data"
    axes.text(0.5, 0.4, text, fontsize=26, ha="center", va="center", color="#1f60c4")


def _table(axes: Axes, panel: dict[str, Any]) -> None:
    axes.set_axis_off()
    axes.set_title(panel["title"], fontsize=11, loc="left")
    lines = [
        f"{s['metric'].get('job', '')}  {s['metric'].get('version', '')}  "
        f"x{float(s['values'][-1][1]):.0f}"
        for s in panel["targets"][0]["series"]
    ]
    axes.text(0.02, 0.85, "\n".join(lines), fontsize=10, va="top", family="monospace")


def _timeseries(axes: Axes, panel: dict[str, Any], start: float) -> None:
    axes.set_title(panel["title"], fontsize=11, loc="left")
    lines = []
    for target in panel["targets"]:
        for series in target["series"]:
            times = [float(t) - start for t, _ in series["values"]]
            values = [float(v) for _, v in series["values"]]
            finite = [v for v in values if not math.isnan(v)]
            peak = max(finite) if finite else 0.0
            lines.append((peak, _legend(target["legend"], series["metric"]), times, values))
    lines.sort(key=lambda line: -line[0])
    for rank, (peak, label, times, values) in enumerate(lines):
        if rank < LEGEND_ENTRIES and peak > 0:
            axes.plot(times, values, linewidth=1.6, label=label)
        else:
            axes.plot(times, values, linewidth=0.8, color="#b0b0b0")
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _format(v, panel["unit"])))
    axes.set_xlabel("seconds into the run", fontsize=8)
    axes.tick_params(labelsize=8)
    axes.grid(alpha=0.3)
    axes.set_ylim(bottom=0)
    if axes.get_legend_handles_labels()[0]:
        hidden = len(lines) - min(LEGEND_ENTRIES, len(lines))
        title = f"top {LEGEND_ENTRIES} of {len(lines)}" if hidden > 0 else None
        axes.legend(fontsize=7, loc="upper left", title=title, title_fontsize=7, framealpha=0.8)


def _legend(template: str, labels: dict[str, str]) -> str:
    return _LABEL.sub(lambda match: labels.get(match.group(1), ""), template).strip() or "value"


def _format(value: float, unit: str) -> str:
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "reqps":
        return f"{value:.0f} req/s" if value >= 10 else f"{value:.1f} req/s"
    if unit == "ops":
        return f"{value:.0f}/s" if value >= 10 else f"{value:.2f}/s"
    return f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:.1f}"


if __name__ == "__main__":
    main()
