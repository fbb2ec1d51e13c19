"""Evidence items built from facts, each with a reference a person can follow. Pure.

Texts quote the cluster's own words (reasons, messages, quantities as written) and are cut
to one line; redaction happens where text leaves the process (renderers, timeline), and log
lines were already redacted when gathered.
"""

from __future__ import annotations

from datetime import datetime

from bot.context.model import ContainerView, EventView, PodView, Signal
from bot.diagnosis.findings import ErrorLine, short
from bot.diagnosis.model import Evidence


def ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "at an unknown time"
    seconds = int((now - moment).total_seconds())
    if seconds < 0:
        return f"in {-seconds // 60} min"
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 5400:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min ago"
    return f"{seconds // 86400} d ago"


def container_termination(pod: PodView, c: ContainerView, now: datetime) -> Evidence:
    if c.state == "terminated":
        reason, code, at, message = c.reason, c.exit_code, c.finished_at, c.message
    else:
        reason, code, at, message = c.last_reason, c.last_exit_code, c.last_finished_at, c.last_message
    text = (f"{pod.ref.namespace}/{pod.ref.name} container {c.name} terminated: {reason} (exit code {code}) "
            f"{ago(at, now)}, {c.restarts} restarts")
    if message:
        text += f"; message: {short(message, 160)}"
    return Evidence(text, "kubernetes", f"Pod {pod.ref.namespace}/{pod.ref.name} status.containerStatuses[{c.name}]")


def container_waiting(pod: PodView, c: ContainerView) -> Evidence:
    text = f"{pod.ref.namespace}/{pod.ref.name} container {c.name} is waiting: {c.reason}"
    if c.message:
        text += f": {short(c.message, 400)}"
    return Evidence(text, "kubernetes", f"Pod {pod.ref.namespace}/{pod.ref.name} status.containerStatuses[{c.name}]")


def event(e: EventView, now: datetime) -> Evidence:
    times = f" ×{e.count}" if e.count > 1 else ""
    stale = " (stale)" if e.stale else ""
    text = f"{e.type} {e.reason}{times} on {e.involved.kind} {e.involved.name}, last {ago(e.last_at, now)}{stale}: " \
           f"{short(e.message, 420)}"
    return Evidence(text, "event", f"Event {e.reason} on {e.involved}")


def log_line(error: ErrorLine) -> Evidence:
    which = "previous instance" if error.previous else "current instance"
    return Evidence(f"log of {error.pod.name} ({error.container}, {which}): {short(error.line, 420)}", "log",
                    f"Pod {error.pod.namespace}/{error.pod.name} logs ({error.container}{', previous' if error.previous else ''})")


def signal(s: Signal, text: str) -> Evidence:
    return Evidence(text, "prometheus", f"PromQL: {short(s.query, 300)}")


def fmt_bytes(value: float | None) -> str:
    if value is None:
        return "?"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def pct(value: float | None) -> str:
    return "?" if value is None else f"{value * 100:.0f} %"
