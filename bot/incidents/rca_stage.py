"""GATHER → DIAGNOSE → REPORT: investigate each new incident and post the RCA in its thread.

Two steps, each claimed with a conditional UPDATE (see `investigations`), neither holding a
database transaction across slow work:
1. run: claim the investigation, read the incident's alerts, gather (Kubernetes, logs,
   Prometheus, within the time budget) and diagnose, add the similar past incidents
   (`bot.postmortem.memory`; a failure there leaves only that section out), store the redacted
   report, write `investigation.finished` on the timeline;
2. post: once the incident's card is in Slack, post the RCA message in its thread and record
   it; add the RCA to the PagerDuty incident as a note when one is linked;
3. files: in the incident's next write slot, share the graph (PNG) and the long material
   (logs, diff) as one files message.
Steps 2 and 3 take the incident's write slot (`service.lease_thread_write`), the same lease and
interval the card keeps, so an incident never gets more than one Slack write per interval
whatever mix of card updates, notes and RCA, with one exception: the first investigation's RCA
message may follow the card at once (see `_lease_write`). The people who just saw the
card are waiting for exactly that message, and it is one extra write in the incident's life, so
the budget over any longer stretch is unchanged (the next write waits a full interval after it). A 429 or 5xx from Slack defers the step
(Retry-After, else backoff); the message is recorded as soon as it exists, so files that fail
afterwards never cause a second RCA message. The model
never writes anything and this stage never changes the cluster: it only reads.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock
from bot.context.clusters import ClusterDirectory
from bot.context.gather import gather
from bot.context.model import AlertView
from bot.context.subject import resolve_subject
from bot.db.engine import reading, unit_of_work
from bot.db.models import Incident, Investigation
from bot.diagnosis.engine import diagnose
from bot.diagnosis.report import build_report, rca_text, timeline_payload
from bot.incidents import investigations, service, storm
from bot.incidents.slack_posts import PostSpec, forget, post_once
from bot.logs import incident_context
from bot.metrics import Metrics
from bot.postmortem.memory import similar
from bot.slack.gateway import SlackError, SlackGateway, SlackRetryLater
from bot.slack.graph import render_graph
from bot.slack.render.rca import render_rca
from bot.timeline import chain

log = logging.getLogger(__name__)
ACTOR = "opsbot"
MAX_POST_BACKOFF_SECONDS = 300


def _alert_views(session: Session, incident_id: int) -> list[AlertView]:
    return [AlertView(a.name, a.status, dict(a.labels or {}), dict(a.annotations or {}), a.starts_at, a.ends_at)
            for a in service.alerts_of(session, incident_id)]


class RcaStage:
    def __init__(self, factory: sessionmaker[Session], gateway: SlackGateway, clusters: ClusterDirectory,
                 clock: Clock, owner: str, metrics: Metrics | None = None, budget_seconds: float = 10.0,
                 lease: timedelta = timedelta(seconds=120), pagerduty=None,
                 min_interval: timedelta = timedelta(0), remediation=None):
        """`min_interval`: the incident's one-Slack-write-per-interval budget, shared with the
        card (`OPSBOT_CARD_MIN_INTERVAL_SECONDS`)."""
        self._factory, self._gateway, self._clusters = factory, gateway, clusters
        self._clock, self._owner_prefix, self._metrics = clock, owner, metrics
        self._budget, self._lease, self._pagerduty = budget_seconds, lease, pagerduty
        self._interval = min_interval
        self._remediation = remediation  # a RemediationKit: propose runbook steps after the RCA

    def round(self) -> bool:
        """Run what is due, then post what is ready; True if anything happened."""
        with reading(self._factory) as session:
            due = investigations.due(session, self._clock(), limit=5)
        ran = [self.run(i) for i in due]
        with reading(self._factory) as session:
            ready = investigations.postable(session, self._clock(), limit=5)
            files = investigations.files_due(session, self._clock(), limit=5)
            abandoned = investigations.abandoned(session, self._clock())
            untold = investigations.untold_failures(session)
        sent = [self._guarded(self.post, i) for i in ready] + [self._guarded(self.post_files, i) for i in files]
        told = [self._tell_failure(i, give_up=i in abandoned) for i in sorted({*abandoned, *untold})]
        return any(outcome in ("done", "failed", "skipped") for outcome in ran) or "posted" in sent or any(told)

    def _tell_failure(self, investigation_id: int, give_up: bool) -> bool:
        """An investigation that will not be retried says so in its thread (see
        `investigations.tell_failure`); one whose last attempt never ended is given up first."""
        with unit_of_work(self._factory) as session:
            if give_up and investigations.give_up(session, investigation_id, self._clock()):
                self._count("failed", "-")
            return investigations.tell_failure(session, investigation_id, self._clock())

    def _guarded(self, step, investigation_id: int) -> str:
        """A post that fails unexpectedly (a database error, a bug) frees what it leased, so the
        next round retries it at once instead of after the lease runs out."""
        try:
            return step(investigation_id)
        except Exception:  # noqa: BLE001 - logged; the work stays due
            log.exception("posting the RCA of investigation %s failed", investigation_id)
            with unit_of_work(self._factory) as session:
                row = session.get(Investigation, investigation_id)
                if row is not None and row.lease_owner and row.lease_owner.startswith(self._owner_prefix):
                    service.release_thread_write(session, row.incident_id, row.lease_owner, None)
                    investigations.release(session, investigation_id, row.lease_owner)
            return "failed"

    def _owner(self) -> str:
        return f"{self._owner_prefix}:{uuid.uuid4().hex[:12]}"

    def run(self, investigation_id: int) -> str:
        """Investigate; returns 'done', 'skipped', 'failed', 'retry' or 'taken' (another worker has it)."""
        owner = self._owner()
        now = self._clock()
        with unit_of_work(self._factory) as session:
            if not investigations.claim(session, investigation_id, owner, now, self._lease):
                return "taken"
            row = session.get(Investigation, investigation_id)
            incident = session.get(Incident, row.incident_id)
            incident_id, cluster, stormy = incident.id, incident.cluster, storm.is_storm(incident.group_key)
            alerts = _alert_views(session, incident_id)
        with incident_context(incident_id):
            access = self._clusters.resolve(cluster)
            if stormy:
                return self._skip(investigation_id, owner, incident_id, storm.SKIP_REASON)
            if not alerts:
                return self._skip(investigation_id, owner, incident_id, "the incident was declared by hand, with "
                                  "no alert to start from: nothing names a workload to investigate")
            if not resolve_subject(alerts).investigable:
                return self._skip(investigation_id, owner, incident_id, "the alerts name no Kubernetes object "
                                  "and carry no label that could lead to one (service, job, app, instance...)")
            if access is not None and access.api_client is None and not access.prometheus_url:
                return self._skip(investigation_id, owner, incident_id,
                                  "neither Kubernetes nor Prometheus is configured (OPSBOT_KUBE_MODE, "
                                  "OPSBOT_PROMETHEUS_URL)")
            try:
                ctx = gather(alerts, now, access, self._budget, cluster)
                report = build_report(ctx, diagnose(ctx))
            except Exception as exc:  # noqa: BLE001 - recorded, retried, never lost
                log.exception("investigation failed")
                with unit_of_work(self._factory) as session:
                    status = investigations.fail(session, investigation_id, owner, f"{type(exc).__name__}: {exc}",
                                                 self._clock(), timedelta(seconds=30))
                    chain.append(session, incident_id, "investigation.failed", ACTOR,
                                 {"error": type(exc).__name__, "will_retry": status == "pending"}, self._clock())
                self._count("failed" if status == "failed" else "retry", "-")
                return "failed" if status == "failed" else "retry"
            self._recall(incident_id, report)
            with unit_of_work(self._factory) as session:
                if not investigations.finish(session, investigation_id, owner, report, self._clock()):
                    log.warning("investigation lease lapsed before it finished; another worker re-runs it")
                    return "taken"
                chain.append(session, incident_id, "investigation.finished", ACTOR, timeline_payload(report),
                             self._clock())
            top = (report.get("hypotheses") or [{}])[0].get("category", "none")
            self._count("done", top)
            if self._remediation is not None:
                self._propose(incident_id, report, alerts, cluster)
            for name, seconds in ctx.timings.items():
                if self._metrics is not None:
                    self._metrics.gatherer_seconds.labels(gatherer=name).observe(seconds)
            log.info("investigation done", extra={"top": top, "timings": report.get("timings")})
            return "done"

    def _recall(self, incident_id: int, report: dict) -> None:
        """Add the past incidents most like this one to the report, as hypotheses to check. One
        bounded read; any failure is logged and costs only this section, never the RCA."""
        try:
            with reading(self._factory) as session:
                found = similar(session, incident_id, report=report)
        except Exception:  # noqa: BLE001 - the RCA matters more than its memory
            log.exception("looking up similar past incidents failed")
            return
        if found:
            report["similar"] = [past.as_dict() for past in found]

    def _propose(self, incident_id: int, report: dict, alerts: list[AlertView], cluster: str | None) -> None:
        from bot.remediation.propose import propose_for_report

        try:
            propose_for_report(self._remediation, incident_id, report,
                               [{"name": a.name, "status": a.status, "labels": a.labels} for a in alerts], cluster)
        except Exception:  # noqa: BLE001 - no proposal is better than no RCA
            log.exception("proposing runbook steps failed")

    def _skip(self, investigation_id: int, owner: str, incident_id: int, why: str) -> str:
        now = self._clock()
        with unit_of_work(self._factory) as session:
            investigations.finish(session, investigation_id, owner, {"version": 1, "skipped": why}, now,
                                  status="skipped")
            chain.append(session, incident_id, "investigation.skipped", ACTOR, {"why": why}, now)
        self._count("skipped", "-")
        return "skipped"

    def _count(self, outcome: str, category: str) -> None:
        if self._metrics is not None:
            self._metrics.investigations.labels(outcome=outcome, category=category).inc()

    def post(self, investigation_id: int) -> str:
        """Post the RCA message; returns 'posted', 'waiting' (the incident's write slot is
        taken or too recent), 'deferred', 'failed' or 'taken'."""
        owner = self._owner()
        leased = self._lease_write(investigations.lease_post, investigation_id, owner)
        if isinstance(leased, str):
            return leased
        card, report, reference, incident_id, attempts, pd_incident = leased
        with incident_context(incident_id):
            rendered = render_rca(report, reference)
            purpose = f"rca:{investigation_id}"  # posted once across crashes (bot.incidents.slack_posts)
            try:
                result = post_once(self._factory, self._gateway, self._clock,
                                   PostSpec(incident_id, purpose, card.channel, card.ts),
                                   rendered["text"], rendered["blocks"])
                message = result.message
            except SlackError as exc:
                self._release_slot(incident_id, owner, wrote=False)
                return self._defer(investigation_id, owner, incident_id, attempts, exc)
            with unit_of_work(self._factory) as session:
                if investigations.posted(session, investigation_id, owner, message.ts, self._clock()):
                    forget(session, incident_id, purpose)  # else the lease's new holder finds the message
                if not (report.get("graph") or report.get("material")):
                    investigations.files_posted(session, investigation_id, None, self._clock())
                service.release_thread_write(session, incident_id, owner, self._clock())
                service.catchup_moved(session, incident_id)
                chain.append(session, incident_id, "slack.rca_posted", ACTOR,
                             {"channel": message.channel, "ts": message.ts,
                              **({"adopted": True} if result.adopted else {})}, self._clock())
            if pd_incident and self._pagerduty is not None:
                self._note_pagerduty(pd_incident, report, incident_id)
            return "posted"

    def post_files(self, investigation_id: int) -> str:
        """Share the graph and the evidence file under the RCA, in the incident's next write
        slot; returns 'posted', 'waiting', 'deferred', 'failed' or 'taken'."""
        owner = self._owner()
        leased = self._lease_write(investigations.lease_files, investigation_id, owner)
        if isinstance(leased, str):
            return leased
        card, report, reference, incident_id, attempts, _ = leased
        with incident_context(incident_id):
            files = self._files(report, reference)
            outcome = "posted"
            if files:
                try:
                    self._gateway.upload_files(card.channel, card.ts, files)
                except SlackRetryLater as exc:
                    self._release_slot(incident_id, owner, wrote=False)
                    return self._defer(investigation_id, owner, incident_id, attempts, exc)
                except SlackError as exc:  # a file Slack refuses will not fit later either
                    log.warning("RCA files not shared: %s", exc)
                    outcome = "failed"
                    with unit_of_work(self._factory) as session:
                        chain.append(session, incident_id, "slack.failed", ACTOR,
                                     {"method": exc.method, "error": exc.error, "files": [f[0] for f in files]},
                                     self._clock())
            with unit_of_work(self._factory) as session:
                investigations.files_posted(session, investigation_id, owner, self._clock())
                service.release_thread_write(session, incident_id, owner, self._clock() if files else None)
            return outcome

    def _lease_write(self, lease_step, investigation_id: int, owner: str):
        """Lease the investigation's step, then the incident's write slot; 'taken' or 'waiting'
        when either is not ours, else what the write needs: (card, report, reference,
        incident id, attempts, PagerDuty incident)."""
        now = self._clock()
        with unit_of_work(self._factory) as session:
            if not lease_step(session, investigation_id, owner, now, self._lease):
                return "taken"
            row = session.get(Investigation, investigation_id)
            incident = session.get(Incident, row.incident_id)
            first_rca = lease_step is investigations.lease_post and row.round == 1
            interval = timedelta(0) if first_rca else self._interval
            if not service.lease_thread_write(session, incident.id, owner, now, now + self._lease, interval):
                investigations.release(session, investigation_id, owner)
                return "waiting"
            card = service.card_message(session, incident.id)
            return (card, row.result or {}, incident.reference, incident.id, row.post_attempts,
                    incident.pagerduty_incident_id)

    def _release_slot(self, incident_id: int, owner: str, wrote: bool) -> None:
        with unit_of_work(self._factory) as session:
            service.release_thread_write(session, incident_id, owner, self._clock() if wrote else None)

    def _files(self, report: dict, reference: str) -> list[tuple[str, bytes, str]]:
        files = []
        if report.get("graph"):
            try:
                files.append((f"{reference.lower()}-signal.png", render_graph(report["graph"]),
                              f"{reference}: {report['graph'].get('title', 'key signal')}"))
            except Exception:  # noqa: BLE001 - a graph that cannot be drawn must not cost the RCA
                log.exception("graph rendering failed")
        if report.get("material"):
            material = report["material"]
            files.append((f"{reference.lower()}-{material['filename']}", material["text"].encode(),
                          f"{reference}: logs and rollout diff"))
        return files

    def _note_pagerduty(self, pd_incident: str, report: dict, incident_id: int) -> None:
        try:
            self._pagerduty.add_note(pd_incident, "opsbot RCA\n" + rca_text(report))
            kind, payload = "pagerduty.sent.note", {"pagerduty_incident": pd_incident}
        except Exception as exc:  # noqa: BLE001 - PagerDuty down must not cost the thread
            kind, payload = "pagerduty.failed", {"action": "add_note", "error": type(exc).__name__}
        with unit_of_work(self._factory) as session:
            chain.append(session, incident_id, kind, ACTOR, payload, self._clock())

    def _defer(self, investigation_id: int, owner: str, incident_id: int, attempts: int, exc: SlackError) -> str:
        retry = exc.retry_after if isinstance(exc, SlackRetryLater) and exc.retry_after else \
            float(min(MAX_POST_BACKOFF_SECONDS, 2 ** min(attempts + 1, 9)))
        log.warning("RCA post deferred %.0fs: %s", retry, exc)
        with unit_of_work(self._factory) as session:
            investigations.defer_post(session, investigation_id, owner, self._clock(), timedelta(seconds=retry))
            if attempts == 0:
                chain.append(session, incident_id, "slack.failed", ACTOR,
                             {"method": exc.method, "error": exc.error, "retry_in_seconds": retry}, self._clock())
        return "deferred" if isinstance(exc, SlackRetryLater) else "failed"
