"""Alerts that never open a thread: heartbeats (Watchdog, InfoInhibitor, ...) and alerts
matched by a configured silence. They are counted (see /metrics), never stored."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from bot.alerts.classify import AlertView, is_heartbeat
from bot.alerts.matchers import MatcherSet
from bot.alerts.model import AlertBatch


def screen(batch: AlertBatch, silences: Sequence[MatcherSet]) -> tuple[AlertBatch | None, Counter[str]]:
    """The batch without screened-out alerts (None when nothing is left), and why each went."""
    suppressed: Counter[str] = Counter()
    kept = []
    for alert in batch.alerts:
        if is_heartbeat(AlertView(alert.name, alert.status, alert.labels, alert.annotations)):
            suppressed["heartbeat"] += 1
        elif any(silence.matches(alert.labels) for silence in silences):
            suppressed["silenced"] += 1
        else:
            kept.append(alert)
    if not kept:
        return None, suppressed
    return (batch if len(kept) == len(batch.alerts) else replace(batch, alerts=tuple(kept))), suppressed
