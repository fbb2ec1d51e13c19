"""A graph asked for by name in an incident's thread ("@opsbot graph error rate"), queried from
Prometheus now rather than re-rendered from the RCA.

The signal is named by declared words (`SIGNAL_WORDS`, first match wins) and queried with the
RCA's own golden-signal queries (`bot.context.metrics`) for the incident's subject (the
workload the RCA investigated), over the last hour, within a time budget. Anything that keeps it
from being drawn (no named signal, no subject, Prometheus not configured, down, or without data)
is `None` with the reason: the caller then answers from the stored graph and says why.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from bot.context.metrics import PrometheusGatherer, application_queries, workload_queries
from bot.context.model import ObjectRef

SIGNAL_WORDS: tuple[tuple[str, str], ...] = (
    ("error", "error_ratio"), ("5xx", "error_ratio"), ("latenc", "latency_p95"), ("slow", "latency_p95"),
    ("request", "request_rate"), ("traffic", "request_rate"), ("restart", "restarts"), ("crash", "restarts"),
    ("memory", "memory_vs_limit"), ("oom", "memory_vs_limit"), ("throttl", "cpu_throttling"), ("cpu", "cpu_usage"),
    ("replica", "available_replicas"),
)
WINDOW = timedelta(hours=1)
BUDGET_SECONDS = 5.0
MAX_SERIES = 4


def wanted_signal(question: str) -> str | None:
    text = (question or "").lower()
    return next((key for word, key in SIGNAL_WORDS if word in text), None)


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob")


def _subject(report: dict[str, Any]) -> ObjectRef | None:
    """The workload the RCA investigated: the end of the top hypothesis' owner chain, else the
    top hypothesis' object when it is a workload."""
    top = (report.get("hypotheses") or [{}])[0]
    for candidate in [*reversed(report.get("owners") or []), top.get("resource") or ""]:
        parts = str(candidate).split("/")
        if len(parts) == 3 and parts[0] in WORKLOAD_KINDS:
            return ObjectRef(parts[0], parts[1], parts[2])
    return None


def fresh_graph(prometheus_url: str | None, report: dict[str, Any], key: str,
                now: datetime) -> tuple[dict[str, Any] | None, str]:
    """(the graph as `bot.slack.graph.render_graph` draws it, "") or (None, why not)."""
    subject = _subject(report)
    if subject is None:
        return None, "the analysis names no workload to query"
    if not prometheus_url:
        return None, "Prometheus is not configured"
    queries = [q for q in workload_queries(subject.namespace, subject, []) +
               application_queries(subject.namespace, subject, []) if q.key == key]
    if not queries:
        return None, f"no {key.replace('_', ' ')} query for a {subject.kind}"
    gatherer = PrometheusGatherer(prometheus_url, timeout_seconds=BUDGET_SECONDS)
    signals, gaps = gatherer.gather(queries[:1], now, time.monotonic() + BUDGET_SECONDS)
    if not signals:
        return None, gaps[0].why if gaps else f"Prometheus has no {queries[0].title} for {subject} in the last hour"
    first = signals[0]
    series = [{"label": ", ".join(f"{k}={v}" for k, v in sorted(s.labels.items())) or s.title,
               "points": [[moment.timestamp(), value] for moment, value in s.points if moment >= now - WINDOW]}
              for s in signals[:MAX_SERIES]]
    return {"title": f"{first.title} of {subject}, last hour", "unit": first.unit, "query": first.query,
            "series": series, "marks": []}, ""
