"""Background workers: claim stored deliveries, run the intake flow, sync incident cards.

Work lives in the database, not in memory: a worker claims rows (see `bot.alerts.deliveries`)
and a restart resumes whatever was pending or whose lease lapsed. Any number of threads and
replicas may run these loops at once; the claims decide who does what. The webhook handler
calls `wake()` so that a fresh delivery is picked up at once instead of at the next poll.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.alerts import deliveries, pagerduty
from bot.alerts.grouping import regroup
from bot.alerts.intake import parse_delivery
from bot.alerts.matchers import MatcherSet, parse_matchers
from bot.alerts.model import AlertBatch, PayloadError
from bot.alerts.screening import screen
from bot.clock import Clock
from bot.db import seen
from bot.db.engine import reading, unit_of_work
from bot.db.models import RawDelivery
from bot.incidents import flows, pagerduty_flow
from bot.incidents.lifecycle import Windows
from bot.incidents.pagerduty_sync import PagerDutySync
from bot.incidents.thread import CardSync
from bot.logs import incident_context
from bot.metrics import Metrics

log = logging.getLogger(__name__)
CLAIM_BATCH = 10
CONFLICT_RETRIES = 3
SEEN_PRUNE_INTERVAL = timedelta(minutes=10)  # how often the housekeeping loop forgets expired replay ids


@dataclass(frozen=True)
class IntakeRules:
    """How deliveries become incidents (from the settings)."""

    windows: Windows = Windows()
    group_key_template: str | None = None
    silences: tuple[MatcherSet, ...] = ()
    mirror_pagerduty: bool = False


def intake_rules(settings) -> IntakeRules:
    """The rules from `bot.config.Settings` (here, not in `bot.runtime`, so that an intake
    child process imports only the intake path: half the memory)."""
    return IntakeRules(
        windows=Windows(reopen=timedelta(seconds=settings.reopen_window_seconds),
                        quiet=timedelta(seconds=settings.quiet_window_seconds),
                        related=timedelta(seconds=settings.related_window_seconds),
                        settle=timedelta(seconds=settings.investigation_settle_seconds),
                        postmortem_grace=timedelta(seconds=settings.postmortem_grace_seconds),
                        storm_incidents=settings.storm_incidents,
                        storm=timedelta(seconds=settings.storm_window_seconds)),
        group_key_template=settings.group_key_template,
        silences=tuple(parse_matchers(text) for text in settings.silences),
        mirror_pagerduty=bool(settings.pagerduty_routing_key),
    )


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class RemediationStage:
    """Runs approved steps, polls verifications, expires requests, syncs proposal messages."""

    executor: object
    messages: object

    def round(self) -> bool:
        ran = self.executor.round()
        synced = self.messages.round()
        return bool(ran or synced)


class Workers:
    """The loops of one process. `intake_elsewhere` (see `bot.intake_processes`) is an object
    with start/stop/wake that runs the intake loops in child processes instead of threads
    here; `on_opened` is called when a delivery opened an incident (by default: wake the card
    and PagerDuty loops of this process)."""

    def __init__(self, factory: sessionmaker[Session], cards: CardSync | None, clock: Clock, metrics: Metrics,
                 threads: int = 2, poll_seconds: float = 0.5, lease_seconds: float = 120,
                 intake: IntakeRules | None = None, pagerduty: PagerDutySync | None = None,
                 intake_elsewhere=None, on_opened: Callable[[], None] | None = None, rca=None,
                 rca_threads: int = 1, remediation: RemediationStage | None = None, anchor=None, postmortem=None):
        self._factory, self._cards, self._clock, self._metrics = factory, cards, clock, metrics
        self._threads_wanted, self._poll, self._lease = threads, poll_seconds, timedelta(seconds=lease_seconds)
        self._intake = intake or IntakeRules()
        self._pagerduty = pagerduty
        self._rca, self._rca_threads = rca, rca_threads
        self._remediation = remediation
        self._postmortem = postmortem  # `bot.postmortem.stage.PostmortemStage`
        self._anchor = anchor  # `bot.timeline.anchors.Anchorer`: writes the timeline heads out periodically
        self._elsewhere = intake_elsewhere
        self._on_opened = on_opened or self.wake_stages
        self._intake_wakes: list[threading.Event] = []
        self._stage_wakes: list[threading.Event] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._seen_pruned_at = None  # see `_prune_seen`

    def wake(self) -> None:
        """New work was stored: wake the intake loops (the card and PagerDuty loops poll, and
        are woken when an incident opens, so a storm does not keep them busy querying)."""
        for event in self._intake_wakes:
            event.set()
        if self._elsewhere is not None:
            self._elsewhere.wake()

    def wake_stages(self) -> None:
        for event in self._stage_wakes:
            event.set()

    def start(self, stages: bool = True) -> None:
        """Intake threads (or processes), one card thread and (when configured) one PagerDuty
        thread: each stage has its own loop, so a slow Slack or PagerDuty never delays alert
        intake. `stages=False` runs the intake loops only (an intake child process)."""
        self._stop.clear()
        loops = []
        if self._elsewhere is None:
            loops += [(f"opsbot-intake-{index}", self.intake_round) for index in range(self._threads_wanted)]
        else:
            self._elsewhere.start(on_opened=self.wake_stages)
        if stages and self._cards is not None:
            loops.append(("opsbot-cards", self.cards_round))
        if stages and self._pagerduty is not None:
            loops.append(("opsbot-pagerduty", self.pagerduty_round))
        if stages and self._rca is not None:
            loops += [(f"opsbot-rca-{index}", self.rca_round) for index in range(self._rca_threads)]
        if stages and self._remediation is not None:
            loops.append(("opsbot-remediation", self.remediation_round))
        if stages and self._postmortem is not None:
            loops.append(("opsbot-postmortem", self.postmortem_round))
        if stages:
            loops.append(("opsbot-housekeeping", self.housekeeping_round))
        for name, step in loops:
            wake = threading.Event()
            (self._intake_wakes if step == self.intake_round else self._stage_wakes).append(wake)
            thread = threading.Thread(target=self._loop, args=(step, wake), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._elsewhere is not None:
            self._elsewhere.stop(timeout)
        self.wake()
        self.wake_stages()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        self._intake_wakes.clear()
        self._stage_wakes.clear()

    def _loop(self, step, wake: threading.Event) -> None:
        owner = f"{worker_identity()}:{threading.current_thread().name}"
        while not self._stop.is_set():
            try:
                busy = step(owner)
            except Exception:  # noqa: BLE001 - a worker must survive any single failure
                log.exception("worker iteration failed")
                busy = False
            if not busy:
                wake.wait(self._poll)
                wake.clear()

    def intake_round(self, owner: str) -> bool:
        """Claim and process stored deliveries; True if there was work."""
        with reading(self._factory) as session:
            if not deliveries.any_claimable(session, self._clock()):
                return False  # an idle poll takes no write lock
        with unit_of_work(self._factory) as session:
            claimed = deliveries.claim(session, owner, self._clock(), self._lease, CLAIM_BATCH)
        opened = sum(self.process_delivery(delivery, owner) for delivery in claimed)
        if opened:
            self._on_opened()  # a new incident's card should appear at once
        return bool(claimed)

    def housekeeping_round(self, _owner: str) -> bool:
        """This process's periodic upkeep, whatever the load: forget expired replay ids, write
        the changed timeline heads out (`bot.timeline.anchors`). Never busy: it runs once a poll."""
        self._prune_seen()
        if self._anchor is not None:
            self._anchor.round()
        return False

    def _prune_seen(self) -> None:
        """Forget the replay guard's expired ids (`bot.db.seen.prune`), at most once per
        `SEEN_PRUNE_INTERVAL` per process; one indexed DELETE, harmless when several threads
        or replicas run it at once."""
        now = self._clock()
        if self._seen_pruned_at is not None and now - self._seen_pruned_at < SEEN_PRUNE_INTERVAL:
            return
        self._seen_pruned_at = now
        with unit_of_work(self._factory) as session:
            seen.prune(session, now)

    def cards_round(self, _owner: str) -> bool:
        synced = [self._cards.sync(incident_id) for incident_id in self._cards.pending()]
        if {"posted", "adopted"} & set(synced):
            self.wake_stages()  # a new thread exists: its RCA may be waiting for it
        return any(outcome in {"posted", "adopted", "updated", "noted", "caught_up"} for outcome in synced)

    def rca_round(self, _owner: str) -> bool:
        """Investigate new incidents and post their RCA (see `bot.incidents.rca_stage`)."""
        return self._rca.round() if self._rca is not None else False

    def remediation_round(self, _owner: str) -> bool:
        return self._remediation.round() if self._remediation is not None else False

    def postmortem_round(self, _owner: str) -> bool:
        """Write the postmortems that are due into their threads (`bot.postmortem.stage`)."""
        return self._postmortem.round() if self._postmortem is not None else False

    def pagerduty_round(self, _owner: str) -> bool:
        """Sync due incidents; stop at the first 'unavailable' (PagerDuty is down or slow:
        the others would only wait for the same time-out)."""
        if self._pagerduty is None:
            return False
        sent = False
        for incident_id in self._pagerduty.pending():
            outcome = self._pagerduty.sync(incident_id)
            if outcome == "deferred":
                break
            sent = sent or outcome == "sent"
        return sent

    def process_delivery(self, claimed: deliveries.Claimed, owner: str) -> int:
        """Run the intake flow for one claimed delivery, retrying write conflicts; returns how
        many incidents it opened. The body is parsed before the write transaction (a stored
        body never changes), so the database's writer lock is held for the grouping only."""
        started = time.perf_counter()
        delivery_id, source = claimed.id, claimed.source
        try:
            batch, suppressed = screen(parse_delivery(source, claimed.body), self._intake.silences)
        except Exception as exc:  # noqa: BLE001 - recorded on the delivery (a PayloadError for good)
            self._fail(delivery_id, owner, source, exc)
            return 0
        for attempt in range(1, CONFLICT_RETRIES + 1):
            try:
                with unit_of_work(self._factory) as session:
                    if not deliveries.lock_claimed(session, delivery_id, owner):
                        return 0
                    results = self._apply(session, batch, delivery_id)
                    deliveries.finish(session, delivery_id, self._clock())
                break
            except DataError as exc:  # a value the database refuses will never fit: no retry
                self._fail(delivery_id, owner, source, exc, permanent=True)
                return 0
            except (IntegrityError, DBAPIError) as exc:
                if attempt == CONFLICT_RETRIES or not _is_conflict(exc):
                    self._fail(delivery_id, owner, source, exc)
                    return 0
                log.info("delivery %s: write conflict, retrying (%s)", delivery_id, type(exc.orig).__name__)
            except Exception as exc:  # noqa: BLE001 - recorded on the delivery, retried with backoff
                self._fail(delivery_id, owner, source, exc)
                return 0
        self._metrics.work_seconds.labels(stage="intake").observe(time.perf_counter() - started)
        self._metrics.deliveries_processed.labels(source=source, outcome="done").inc()
        for reason, count in suppressed.items():
            self._metrics.alerts_suppressed.labels(source=source, reason=reason).inc(count)
        for status, count in Counter(alert.status for alert in (batch.alerts if batch else ())).items():
            self._metrics.alerts_received.labels(source=source, status=status).inc(count)
        for result in results:
            if result.opened:
                self._metrics.incidents_opened.labels(source=source).inc()
            with incident_context(result.incident_id):
                log.info("delivery %s processed", delivery_id,
                         extra={"opened": result.opened, "new": result.new_alerts, "repeat": result.repeated_alerts})
        return sum(1 for result in results if result.opened)

    def _apply(self, session: Session, batch: AlertBatch | None, delivery_id: int) -> list[flows.IntakeResult]:
        """Run the incident flow for a screened batch (split into groups where configured)."""
        if batch is None:
            return []
        rules, now = self._intake, self._clock()
        if batch.source == pagerduty.SOURCE:
            result = pagerduty_flow.apply(session, batch, delivery_id, now, rules.windows)
            return [result] if result is not None else []
        return [flows.ingest(session, group, delivery_id, now, rules.windows, rules.mirror_pagerduty)
                for group in regroup(batch, rules.group_key_template)]

    def _fail(self, delivery_id: int, owner: str, source: str, exc: Exception, permanent: bool = False) -> None:
        log.error("delivery %s failed: %s", delivery_id, exc, exc_info=not isinstance(exc, PayloadError))
        with unit_of_work(self._factory) as session:
            delivery = session.get(RawDelivery, delivery_id)
            attempts = delivery.attempts if delivery else 1
            status = deliveries.mark_failed(session, delivery_id, owner, f"{type(exc).__name__}: {exc}",
                                            self._clock(), timedelta(seconds=min(300, 2**attempts)),
                                            permanent=permanent or isinstance(exc, PayloadError))
        self._metrics.deliveries_processed.labels(source=source, outcome=status).inc()


def _is_conflict(exc: DBAPIError) -> bool:
    """Unique violations, serialization failures, deadlocks and SQLite lock timeouts."""
    if isinstance(exc, IntegrityError):
        return True
    code = getattr(exc.orig, "sqlstate", None)
    return code in {"40001", "40P01"} or "database is locked" in str(exc.orig)
