"""The PagerDuty stage: bring PagerDuty to the status opsbot wants for each incident.

`pagerduty_status_wanted` is set by the incident flows and `bot.incidents.acknowledge`; this
stage makes the call and records `pagerduty_status_synced`. Two kinds of incident:
- opsbot's own, mirrored to PagerDuty (triggered while open, acknowledged from Slack, resolved
  when the alerts resolve, the incident closes or is merged): Events API v2 events under the
  incident's dedup key. The key (`<prefix>-INC-N`, the prefix per install) is recorded on the
  incident before the first trigger is sent, so PagerDuty's webhook about it, which may arrive
  before this stage records anything else, is already recognised as opsbot's own incident. The
  key makes a repeated trigger harmless, so a crash between the call and the record costs
  nothing.
- PagerDuty-born (`source == "pagerduty"`, another integration opened it): the Events API
  cannot act on it, so an acknowledgement from Slack goes through the REST API
  (`PUT /incidents/{id}` as the `From` user), and so does a person's resolution in Slack
  (`bot.incidents.controls`; the alerts resolving is PagerDuty's own news, nothing to send).
  Only `acknowledged` and `resolved` are ever due for such an incident. Before the call, the PagerDuty user opsbot
  acts as is written on the timeline (`ACTING_AS`), once per incident and user, so the flow
  recognises the webhook that comes back as opsbot's echo, however fast it arrives.
`retry_at` is both the lease (one worker at a time per incident) and the backoff after a
failure; the first failure of a streak goes on the timeline, as does a rejection (which waits
an hour: a bad routing key does not fix itself).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.alerts.pagerduty import GROUP_KEY_PREFIX
from bot.alerts.pagerduty import SOURCE as PAGERDUTY_SOURCE
from bot.clock import Clock
from bot.db.engine import reading, unit_of_work
from bot.db.locks import ROW_LOCK
from bot.db.models import Incident, TimelineEntry
from bot.logs import incident_context
from bot.pagerduty.link import PagerDutyLink, PagerDutyRejected, PagerDutyUnavailable
from bot.timeline import chain

log = logging.getLogger(__name__)
ACTOR = "opsbot"
ACTING_AS = "pagerduty.acknowledging"  # timeline kind: opsbot is about to write as this PD user
REJECTED_RETRY = timedelta(hours=1)
MAX_BACKOFF_SECONDS = 300
UNAVAILABLE_RETRY_SECONDS = 30
PAGERDUTY_BORN_WRITES = ("acknowledged", "resolved")  # what the REST API can do to another's incident


def _due(now):
    return and_(
        Incident.pagerduty_status_wanted.is_not(None),
        or_(Incident.pagerduty_status_synced.is_(None),
            Incident.pagerduty_status_synced != Incident.pagerduty_status_wanted),
        or_(Incident.pagerduty_retry_at.is_(None), Incident.pagerduty_retry_at <= now),
        or_(Incident.source != PAGERDUTY_SOURCE, Incident.pagerduty_status_wanted.in_(PAGERDUTY_BORN_WRITES)),
    )


def acting_user_ids(session: Session, incident_id: int) -> set[str]:
    """The PagerDuty user ids opsbot wrote to this incident's PagerDuty incident as
    (from the `ACTING_AS` timeline entries)."""
    payloads = session.execute(
        select(TimelineEntry.payload).where(TimelineEntry.incident_id == incident_id, TimelineEntry.kind == ACTING_AS)
    ).scalars()
    return {str(payload.get("as")) for payload in payloads if payload.get("as")}


@dataclass(frozen=True)
class _Plan:
    """What one sync sends: an Events API event under `dedup_key` (opsbot's incidents), or
    a REST acknowledgement of `pagerduty_incident` (PagerDuty-born ones)."""

    incident_id: int
    wanted: str
    dedup_key: str | None = None
    pagerduty_incident: str | None = None
    trigger: dict | None = None


class PagerDutySync:
    def __init__(self, factory: sessionmaker[Session], link: PagerDutyLink, clock: Clock,
                 lease: timedelta = timedelta(seconds=60)):
        self._factory, self._link, self._clock, self._lease = factory, link, clock, lease

    def pending(self, limit: int = 20) -> list[int]:
        with reading(self._factory) as session:
            return list(session.execute(
                select(Incident.id).where(_due(self._clock())).order_by(Incident.id).limit(limit)
            ).scalars())

    def sync(self, incident_id: int) -> str:
        """Returns 'sent', 'skipped', 'deferred' or 'rejected'."""
        now = self._clock()
        with incident_context(incident_id), unit_of_work(self._factory) as session:
            leased = session.execute(
                update(Incident).where(Incident.id == incident_id, _due(now))
                .values(pagerduty_retry_at=now + self._lease).execution_options(synchronize_session=False)
            ).rowcount == 1
            if not leased:
                return "skipped"
            plan = self._plan(session.get(Incident, incident_id))
        try:
            detail = self._send(plan)
        except PagerDutyUnavailable as exc:
            delay = min(MAX_BACKOFF_SECONDS, exc.retry_after_seconds or UNAVAILABLE_RETRY_SECONDS)
            return self._record_failure(incident_id, "pagerduty.unavailable", str(exc), now + timedelta(seconds=delay))
        except PagerDutyRejected as exc:
            log.error("PagerDuty rejected the %s request: %s", plan.wanted, exc)
            return self._record_failure(incident_id, "pagerduty.rejected", str(exc), now + REJECTED_RETRY,
                                        rejected=True)
        with unit_of_work(self._factory) as session:
            incident = session.get(Incident, incident_id, with_for_update=ROW_LOCK)
            incident.pagerduty_status_synced, incident.pagerduty_retry_at = plan.wanted, None
            if detail:
                chain.append(session, incident_id, f"pagerduty.sent.{plan.wanted}", ACTOR, detail, self._clock())
        return "sent"

    def _plan(self, incident: Incident) -> _Plan:
        """Read what to send (in the lease's transaction); records the dedup key before the
        first trigger (see the module's docstring)."""
        wanted = incident.pagerduty_status_wanted
        if incident.source == PAGERDUTY_SOURCE:
            pd_id = incident.pagerduty_incident_id or incident.group_key.removeprefix(GROUP_KEY_PREFIX)
            return _Plan(incident.id, wanted, pagerduty_incident=pd_id)
        if wanted == "triggered" and incident.pagerduty_dedup_key is None:
            incident.pagerduty_dedup_key = self._link.dedup_key(incident.reference)
        trigger = self._trigger_arguments(incident) if wanted == "triggered" else None
        return _Plan(incident.id, wanted, dedup_key=incident.pagerduty_dedup_key, trigger=trigger)

    @staticmethod
    def _trigger_arguments(incident: Incident) -> dict:
        scope = "/".join(part for part in (incident.cluster, incident.namespace, incident.service) if part)
        return {
            "incident_reference": incident.reference, "summary": f"{incident.reference} {incident.title}",
            "severity": incident.severity, "source": scope or "opsbot",
            "custom_details": {"category": incident.category, "firing": incident.firing_count,
                               "alerts": incident.alert_count, "cluster": incident.cluster,
                               "namespace": incident.namespace, "service": incident.service},
            "links": [{"href": url, "text": name} for name, url in sorted(incident.links.items())],
        }

    def _send(self, plan: _Plan) -> dict | None:
        """Make the call; returns the timeline detail of what was sent (None: nothing was)."""
        if plan.pagerduty_incident is not None:
            self._record_acting_user(plan)
            if plan.wanted == "resolved":
                self._link.resolve_incident(plan.pagerduty_incident)
            else:
                self._link.acknowledge_incident(plan.pagerduty_incident)
            return {"pagerduty_incident": plan.pagerduty_incident}
        if plan.trigger is not None:
            return {"dedup_key": self._link.trigger(**plan.trigger, dedup_key=plan.dedup_key)}
        if plan.dedup_key is None:
            return None  # never triggered in PagerDuty: nothing to resolve or acknowledge there
        if plan.wanted == "resolved":
            self._link.resolve(plan.dedup_key)
        elif plan.wanted == "acknowledged":
            self._link.acknowledge(plan.dedup_key)
        return {"dedup_key": plan.dedup_key}

    def _record_acting_user(self, plan: _Plan) -> None:
        """Put the PagerDuty user opsbot writes as on the timeline before the write, once per
        incident and user (so retries after failures add nothing)."""
        user = self._link.acting_user()
        with unit_of_work(self._factory) as session:
            if user.id not in acting_user_ids(session, plan.incident_id):
                chain.append(session, plan.incident_id, ACTING_AS, ACTOR,
                             {"pagerduty_incident": plan.pagerduty_incident, "as": user.id, "name": user.name},
                             self._clock())

    def _record_failure(self, incident_id: int, kind: str, error: str, retry_at, rejected: bool = False) -> str:
        """Back off until `retry_at`; the timeline hears of it once per streak of one kind."""
        with unit_of_work(self._factory) as session:
            incident = session.get(Incident, incident_id, with_for_update=ROW_LOCK)
            incident.pagerduty_retry_at = retry_at
            last = session.execute(
                select(TimelineEntry.kind).where(TimelineEntry.incident_id == incident_id)
                .order_by(TimelineEntry.seq.desc()).limit(1)
            ).scalar_one_or_none()
            if last != kind:
                chain.append(session, incident_id, kind, ACTOR, {"error": error[:500]}, self._clock())
        return "rejected" if rejected else "deferred"
