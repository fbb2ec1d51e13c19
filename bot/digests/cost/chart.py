"""The PNG attached to the cost digest: requested versus used CPU and memory by namespace.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend switch, no
display), so it is safe in worker threads and beside other plotting code. Invariants: the same
input gives the same picture; at most `MAX_NAMESPACES` namespaces are drawn (the largest by
requested CPU cost, the rest summed into "other"), so the chart stays legible; an empty input
gives no chart (None), never an empty image.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

MAX_NAMESPACES = 12
GIB = 1024**3
REQUESTED_COLOUR, USED_COLOUR = "#9bb7d4", "#1f4e79"
FIGURE_INCHES = (11.0, 0.45)  # width, height per namespace (plus a fixed margin)
DPI = 110


@dataclass(frozen=True)
class NamespaceUsage:
    """Averages over the look-back: requests and use of one namespace (label may name the cluster)."""

    label: str
    cpu_requested_cores: float
    cpu_used_cores: float
    memory_requested_bytes: float
    memory_used_bytes: float


def _legible(rows: Sequence[NamespaceUsage]) -> list[NamespaceUsage]:
    ordered = sorted(rows, key=lambda r: (-r.cpu_requested_cores, -r.memory_requested_bytes, r.label))
    if len(ordered) <= MAX_NAMESPACES:
        return ordered
    kept, rest = ordered[: MAX_NAMESPACES - 1], ordered[MAX_NAMESPACES - 1:]
    other = NamespaceUsage(
        f"other ({len(rest)})",
        sum(r.cpu_requested_cores for r in rest), sum(r.cpu_used_cores for r in rest),
        sum(r.memory_requested_bytes for r in rest), sum(r.memory_used_bytes for r in rest),
    )
    return [*kept, other]


def usage_chart(rows: Sequence[NamespaceUsage], *, title: str) -> bytes | None:
    """A PNG with two panels (CPU cores, memory GiB), requested and used bars per namespace."""
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # ~0.4 s to import: only when drawing
    from matplotlib.figure import Figure

    shown = list(reversed(_legible(rows)))  # largest at the top of a horizontal bar chart
    labels = [r.label for r in shown]
    positions = list(range(len(shown)))
    height = 2.0 + FIGURE_INCHES[1] * len(shown)
    figure = Figure(figsize=(FIGURE_INCHES[0], height), dpi=DPI)
    FigureCanvasAgg(figure)
    panels = figure.subplots(1, 2, sharey=True)
    series = (
        ("CPU (cores)", [r.cpu_requested_cores for r in shown], [r.cpu_used_cores for r in shown]),
        ("Memory (GiB)", [r.memory_requested_bytes / GIB for r in shown],
         [r.memory_used_bytes / GIB for r in shown]),
    )
    bar = 0.38
    for axes, (label, requested, used) in zip(panels, series, strict=True):
        axes.barh([p + bar / 2 for p in positions], requested, height=bar, color=REQUESTED_COLOUR,
                  label="requested")
        axes.barh([p - bar / 2 for p in positions], used, height=bar, color=USED_COLOUR,
                  label="used (average)")
        axes.set_xlabel(label)
        axes.grid(axis="x", alpha=0.3)
        axes.set_axisbelow(True)
    panels[0].set_yticks(positions, labels)
    panels[1].legend(loc="lower right", fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
