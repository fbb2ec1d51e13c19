"""Prometheus metrics of the bot, in a registry owned by the runtime (no global registry)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock
from bot.db.engine import reading
from bot.incidents.weekly import KINDS, STEP_FIGURES, WeekNumbers, weekly_numbers

log = logging.getLogger(__name__)
WEEK_CACHE_SECONDS = 60.0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhook_requests = Counter(
            "opsbot_webhook_requests_total", "Webhook requests by source and HTTP status.",
            ["source", "code"], registry=self.registry,
        )
        self.deliveries_processed = Counter(
            "opsbot_deliveries_processed_total", "Raw deliveries processed, by outcome.",
            ["source", "outcome"], registry=self.registry,
        )
        self.alerts_received = Counter(
            "opsbot_alerts_received_total", "Alerts received, by source and status.",
            ["source", "status"], registry=self.registry,
        )
        self.alerts_suppressed = Counter(
            "opsbot_alerts_suppressed_total", "Alerts that opened no thread: heartbeats and silenced ones.",
            ["source", "reason"], registry=self.registry,
        )
        self.incidents_opened = Counter(
            "opsbot_incidents_opened_total", "Incidents opened.", ["source"], registry=self.registry,
        )
        self.slack_requests = Counter(
            "opsbot_slack_requests_total", "Requests to the Slack endpoints by outcome: accepted, unsigned (401), "
            "malformed (400), duplicate (a replay, not acted on).", ["endpoint", "outcome"], registry=self.registry,
        )
        self.slack_calls = Counter(
            "opsbot_slack_calls_total", "Slack Web API calls by method and outcome.",
            ["method", "outcome"], registry=self.registry,
        )
        self.work_seconds = Histogram(
            "opsbot_work_seconds", "Time spent per unit of work.", ["stage"], registry=self.registry,
        )
        self.investigations = Counter(
            "opsbot_investigations_total", "Investigations by outcome (done, failed, skipped) and top category.",
            ["outcome", "category"], registry=self.registry,
        )
        self.gatherer_seconds = Histogram(
            "opsbot_gatherer_seconds", "Time each RCA gatherer took.", ["gatherer"], registry=self.registry,
        )
        self.digest_runs = Counter(
            "opsbot_digest_runs_total", "Digest runs by digest and outcome: posted, adopted (a dead run's post), "
            "failed (Slack refused it), taken (another replica has the slot).", ["digest", "outcome"],
            registry=self.registry,
        )
        self.digest_findings = Gauge(
            "opsbot_digest_findings", "Findings of each digest's last posted run, and what it could not check.",
            ["digest", "kind"], registry=self.registry,
        )
        self.pending_deliveries = Gauge(
            "opsbot_pending_deliveries", "Deliveries waiting for a worker.", registry=self.registry,
        )
        self.weeks: WeekCollector | None = None

    def watch_weeks(self, factory: sessionmaker[Session], clock: Clock, ttl_seconds: float = WEEK_CACHE_SECONDS,
                    monotonic: Callable[[], float] = time.monotonic) -> WeekCollector:
        """Export the current week's numbers (`opsbot_week_*`), read at scrape time; once per registry."""
        if self.weeks is None:
            self.weeks = WeekCollector(factory, clock, ttl_seconds, monotonic)
            self.registry.register(self.weeks)
        return self.weeks


def _gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    if value is not None:
        family.add_metric([], value)
    return family


def _labelled(name: str, doc: str, label: str, values: dict[str, float | None]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in values.items():
        if value is not None:
            family.add_metric([key], value)
    return family


def week_families(numbers: WeekNumbers | None) -> list[Metric]:
    """The `opsbot_week_*` gauges of one week (`None`: the families without samples, for
    `describe`). A figure with nothing to measure (no incident acknowledged, none resolved) has
    no sample rather than a made-up 0."""
    n = numbers
    families = [
        _gauge("opsbot_week_start_timestamp_seconds", "Start (Monday 00:00 UTC) of the ISO week the "
               "opsbot_week_* figures cover: the current one, so far.", n.start.timestamp() if n else None),
        _labelled("opsbot_week_incidents", "Incidents opened (created) and resolved this week; merged ones "
                  "are not counted.", "state", {"opened": n.opened, "resolved": n.resolved} if n else {}),
        _gauge("opsbot_week_alerts", "Distinct alerts first seen this week.", n.alerts if n else None),
        _gauge("opsbot_week_alerts_per_incident", "Noise reduction: alerts first seen this week per incident "
               "opened this week.", n.noise_reduction if n else None),
    ]
    for key in ("tta", "ttd", "ttr"):
        measured = getattr(n, key) if n else None
        families += [
            _gauge(f"opsbot_week_m{key}_seconds",
                   f"Mean {key.upper()} this week (from the first alert), over opsbot_week_timed_incidents.",
                   measured.mean_seconds if measured else None),
            _gauge(f"opsbot_week_{key}_median_seconds", f"Median {key.upper()} this week (from the first alert).",
                   measured.median_seconds if measured else None),
        ]
    families += [
        _labelled("opsbot_week_timed_incidents", "Incidents behind each time: opened this week and acknowledged "
                  "(tta) or diagnosed (ttd), resolved this week (ttr).", "time",
                  {key: getattr(n, key).count for key in ("tta", "ttd", "ttr")} if n else {}),
        _labelled("opsbot_week_steps", "Runbook steps proposed this week, by what became of them.", "figure",
                  {figure: n.steps[figure] for figure in STEP_FIGURES} if n else {}),
        _labelled("opsbot_week_resolutions", "Incidents resolved this week, by resolution kind.", "kind",
                  {kind: n.resolutions[kind] for kind in KINDS} if n else {}),
        _labelled("opsbot_week_resolution_share", "Share (0 to 1) of the incidents resolved this week, by "
                  "resolution kind.", "kind", {kind: n.share(kind) for kind in KINDS} if n else {}),
    ]
    return families


class WeekCollector(Collector):
    """The current ISO week's numbers (`bot.incidents.weekly`) as gauges, read from the database
    when scraped, in a read-only transaction.

    Cached for `ttl_seconds` (on `monotonic`): a scrape storm costs one query set per interval,
    and the lock makes scrapes that find the cache stale wait for the one reading it instead of
    querying alongside. A database that does not answer leaves the week's gauges out (the rest of
    /metrics still answers) and is not asked again before the interval ends.
    """

    def __init__(self, factory: sessionmaker[Session], clock: Clock, ttl_seconds: float,
                 monotonic: Callable[[], float]) -> None:
        self._factory, self._clock, self._ttl, self._monotonic = factory, clock, ttl_seconds, monotonic
        self._lock = threading.Lock()
        self._fresh_until: float | None = None
        self._families: list[Metric] = []

    def describe(self) -> list[Metric]:
        return week_families(None)

    def collect(self) -> list[Metric]:
        with self._lock:
            started = self._monotonic()
            if self._fresh_until is None or started >= self._fresh_until:
                self._families = self._read()
                self._fresh_until = started + self._ttl
            return self._families

    def _read(self) -> list[Metric]:
        try:
            with reading(self._factory) as session:
                return week_families(weekly_numbers(session, self._clock())[-1])
        except Exception:  # noqa: BLE001 - metrics must answer even when the database does not
            log.warning("the week's numbers could not be read for /metrics", exc_info=True)
            return []
