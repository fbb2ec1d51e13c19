"""The RCA graph: the key signal as a PNG, with the alert and rollout times marked. Pure.

matplotlib with the Agg backend (no display, thread-safe when each call builds its own
Figure and never touches pyplot's global state). Input is the report's `graph` dict (see
`bot.diagnosis.report`), so a stored RCA can be re-rendered without the cluster.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from bot.slack.render.text import truncate

WIDTH_INCHES, HEIGHT_INCHES, DPI = 8.0, 3.2, 100
MARK_COLOURS = {"alert fired": "#d62728", "change": "#7f7f7f"}


def _formatter(unit: str) -> FuncFormatter:
    def fmt(value: float, _pos: int) -> str:
        if unit == "ratio":
            return f"{value * 100:.0f}%" if abs(value) >= 0.1 or value == 0 else f"{value * 100:.2g}%"
        if unit == "bytes":
            for suffix, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
                if abs(value) >= size:
                    return f"{value / size:.0f}{suffix}"
            return f"{value:.0f}"
        if unit == "seconds":
            return f"{value * 1000:.0f}ms" if abs(value) < 1 else f"{value:.1f}s"
        return f"{value:g}"
    return FuncFormatter(fmt)


def render_graph(graph: dict[str, Any]) -> bytes:
    """A PNG of `graph` (title, unit, series of [epoch, value], marks of {label, at})."""
    figure = Figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for series in graph.get("series") or []:
        points = series.get("points") or []
        if not points:
            continue
        axes.plot([datetime.fromtimestamp(t, UTC) for t, _ in points], [v for _, v in points], linewidth=1.6,
                  label=truncate(str(series.get("label", "")), 60))
    for mark in graph.get("marks") or []:
        colour = MARK_COLOURS.get(mark["label"], "#1f77b4")
        axes.axvline(datetime.fromtimestamp(mark["at"], UTC), color=colour, linestyle="--", linewidth=1.2)
        axes.annotate(truncate(mark["label"], 30), xy=(datetime.fromtimestamp(mark["at"], UTC), 1.0),
                      xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right", fontsize=8,
                      color=colour)
    axes.set_title(truncate(str(graph.get("title", "")), 80), fontsize=11)
    axes.yaxis.set_major_formatter(_formatter(str(graph.get("unit", ""))))
    axes.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=UTC))
    axes.set_xlabel("UTC", fontsize=8)
    axes.grid(True, alpha=0.3)
    if len(graph.get("series") or []) > 1:
        axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
