"""Running a digest: claim its slot, build it, remember its findings, post it once, record the run.

`DigestRunner.run(name, channel, job, slot)` is the one path for the scheduler (a cron slot such
as `2026-12-07T08:00Z`), the catch-up at start-up, `/ops digest` and `opsbot digest --now`
(a `manual:` slot). Invariants:
- The `(job, slot)` claim is taken before anything is built (`bot.digests.store.claim`): with
  any number of replicas exactly one builds and posts. A run whose replica died is retaken once
  its lease lapsed; the retaking run first looks in the channel for the message the dead one
  may have posted (its metadata names job and slot) and adopts it instead of posting again.
- A builder that raises still produces a digest: it says the digest could not be built and why.
  Prometheus, manifests or a database being unreachable are the builders' `problems` lines.
- Findings are stored (`remember`) in the same transaction that finishes the claim, after the
  post succeeded; a failed post records the run as failed with Slack's error and stores nothing,
  so the next run still reports them as new.
- `preview(name)` builds and annotates without writing anything (the CLI's --dry-run).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock
from bot.db.engine import reading, unit_of_work
from bot.db.models import JobClaim
from bot.digests import store
from bot.digests.config import DigestsConfig
from bot.digests.model import DigestContext, DigestReport
from bot.slack.render.digest import render_digest, render_markdown

log = logging.getLogger(__name__)
BUILDERS = {"drift": ("bot.digests.drift", "Drift"), "credentials": ("bot.digests.credentials", "Expiring credentials"),
            "cost": ("bot.digests.cost", "Cost and capacity"), "database": ("bot.digests.database", "Database health")}
METADATA_EVENT = "opsbot_digest"
ADOPT_LOOKBACK = timedelta(hours=2)


@dataclass(frozen=True)
class RunResult:
    outcome: str  # posted | adopted | failed | taken (another replica has it) | printed
    report: DigestReport | None = None
    ts: str | None = None
    error: str | None = None


def manual_slot(now: datetime) -> str:
    return "manual:" + now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class DigestRunner:
    def __init__(self, factory: sessionmaker[Session], gateway, clusters, config: DigestsConfig, clock: Clock,
                 owner: str, builders: dict[str, Callable[[Any, DigestContext], DigestReport]] | None = None,
                 metrics=None):
        self._factory, self._gateway, self._clusters = factory, gateway, clusters
        self._config, self._clock, self._owner = config, clock, owner
        self._builders = builders or {}
        self._metrics = metrics  # `bot.metrics.Metrics`: runs and findings (None: not exported)

    @property
    def config(self) -> DigestsConfig:
        return self._config

    def _builder(self, name: str) -> Callable[[Any, DigestContext], DigestReport]:
        if name not in self._builders:
            self._builders[name] = importlib.import_module(BUILDERS[name][0]).build
        return self._builders[name]

    def build(self, name: str, job: str | None = None) -> DigestReport:
        """Build one digest now; never raises for what the world does (see the module docstring)."""
        now = self._clock()
        previous: dict[str, float] = {}
        previous_at = None
        if job is not None:
            with reading(self._factory) as session:
                last = store.last_run(session, job)
                if last is not None:
                    previous, previous_at = dict(last.summary or {}), last.finished_at
        context = DigestContext(clusters=self._clusters, now=now, base_dir=self._config.base_dir,
                                previous_summary=previous, previous_at=previous_at)
        try:
            return self._builder(name)(self._config.section(name), context)
        except Exception as exc:  # noqa: BLE001 - a digest says it failed; it never goes silent
            log.exception("the %s digest could not be built", name)
            return DigestReport(name=name, title=BUILDERS[name][1], generated_at=now,
                                headline=f"The {BUILDERS[name][1].lower()} digest could not be built.",
                                problems=(f"{type(exc).__name__}: {exc}",))

    def preview(self, name: str, job: str | None = None) -> DigestReport:
        """Build and mark what earlier runs already reported; writes nothing."""
        report = self.build(name, job)
        if job is None:
            return report
        with reading(self._factory) as session:
            return store.annotate(session, job, report)

    def run(self, name: str, channel: str, job: str, slot: str) -> RunResult:
        """Claim, build, post, remember; see the module docstring."""
        result = self._run(name, channel, job, slot)
        if self._metrics is not None:
            self._metrics.digest_runs.labels(digest=name, outcome=result.outcome).inc()
            if result.outcome == "posted" and result.report is not None:
                for kind, count in (("findings", len(result.report.findings)),
                                    ("not_checked", len(result.report.problems)), ("fixed", len(result.report.fixed))):
                    self._metrics.digest_findings.labels(digest=name, kind=kind).set(count)
        return result

    def _run(self, name: str, channel: str, job: str, slot: str) -> RunResult:
        now = self._clock()
        with unit_of_work(self._factory) as session:
            retaken = session.get(JobClaim, (job, slot)) is not None
            if not store.claim(session, job, slot, self._owner, now, channel=channel):
                return RunResult("taken")
        if retaken:
            adopted = self._adopt(channel, job, slot)
            if adopted is not None:
                with unit_of_work(self._factory) as session:
                    store.finish(session, job, slot, self._owner, self._clock(), "posted", ts=adopted)
                return RunResult("adopted", ts=adopted)
        report = self.build(name, job)
        with reading(self._factory) as session:
            shown = store.annotate(session, job, report)
        try:
            ts = self._post(shown, channel, job, slot)
        except Exception as exc:  # noqa: BLE001 - recorded on the claim, logged, reported to the caller
            error = f"{type(exc).__name__}: {exc}"
            log.error("digest %s for %s could not be posted: %s", name, channel, error)
            with unit_of_work(self._factory) as session:
                store.finish(session, job, slot, self._owner, self._clock(), "failed", error=error[:2000])
            return RunResult("failed", report, error=error)
        with unit_of_work(self._factory) as session:
            store.remember(session, job, report, self._clock())
            store.finish(session, job, slot, self._owner, self._clock(), "posted", ts=ts,
                         summary={k: float(v) for k, v in report.summary.items()})
        return RunResult("posted", shown, ts=ts)

    def _post(self, report: DigestReport, channel: str, job: str, slot: str) -> str:
        rendered = render_digest(report, job)
        posted = self._gateway.post_message(channel, rendered["text"], rendered["blocks"],
                                            metadata={"event_type": METADATA_EVENT,
                                                      "event_payload": {"job": job, "slot": slot}})
        files = [(a.filename, a.content, a.title) for a in report.attachments]
        if rendered["truncated"] or report.findings or report.queries:
            files.insert(0, (f"{report.name}-digest-{report.generated_at:%Y%m%d}.md",
                             render_markdown(report).encode(), f"{report.title} digest: everything"))
        if files:
            try:
                self._gateway.upload_files(posted.channel, posted.ts, files)
            except Exception as exc:  # noqa: BLE001 - the message stands; say what is missing
                log.warning("digest files not attached: %s", exc)
                self._gateway.post_message(posted.channel, f"The digest's files could not be attached: {exc}",
                                           thread_ts=posted.ts)
        return posted.ts

    def _adopt(self, channel: str, job: str, slot: str) -> str | None:
        """The ts of a message a dead run posted for this slot, read from the channel's metadata."""
        try:
            oldest = f"{(self._clock() - ADOPT_LOOKBACK).timestamp():.6f}"
            messages, _ = self._gateway.messages_page(channel, None, oldest, 200)
        except Exception:  # noqa: BLE001 - cannot look: post (a duplicate beats a missing digest)
            return None
        for message in messages:
            meta = message.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") == METADATA_EVENT and payload.get("job") == job and payload.get("slot") == slot:
                return str(message.get("ts"))
        return None

