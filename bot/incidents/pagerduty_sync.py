"""The PagerDuty stage: bring PagerDuty to the status opsbot wants for each mirrored incident.

`pagerduty_status_wanted` is set by the incident flows (triggered while open, resolved when
the alerts resolve, the incident closes or is merged); this stage sends the Events API v2
event and records `pagerduty_status_synced`. The dedup key `opsbot-INC-N` makes a repeated
trigger harmless, so a crash between the call and the record costs nothing. `retry_at` is
both the lease (one worker at a time per incident) and the backoff after a failure; the first
failure of a streak goes on the timeline, as does a rejection (which waits an hour: a bad
routing key does not fix itself).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock
from bot.db.engine import unit_of_work
from bot.db.models import Incident, TimelineEntry
from bot.logs import incident_context
from bot.pagerduty.link import PagerDutyLink, PagerDutyRejected, PagerDutyUnavailable
from bot.timeline import chain

log = logging.getLogger(__name__)
ACTOR = "opsbot"
REJECTED_RETRY = timedelta(hours=1)
MAX_BACKOFF_SECONDS = 300
UNAVAILABLE_RETRY_SECONDS = 30


def _due(now):
    return and_(
        Incident.pagerduty_status_wanted.is_not(None),
        or_(Incident.pagerduty_status_synced.is_(None),
            Incident.pagerduty_status_synced != Incident.pagerduty_status_wanted),
        or_(Incident.pagerduty_retry_at.is_(None), Incident.pagerduty_retry_at <= now),
    )


class PagerDutySync:
    def __init__(self, factory: sessionmaker[Session], link: PagerDutyLink, clock: Clock,
                 lease: timedelta = timedelta(seconds=60)):
        self._factory, self._link, self._clock, self._lease = factory, link, clock, lease

    def pending(self, limit: int = 20) -> list[int]:
        with unit_of_work(self._factory) as session:
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
            incident = session.get(Incident, incident_id)
            wanted, key = incident.pagerduty_status_wanted, incident.pagerduty_dedup_key
            trigger = self._trigger_arguments(incident)
        try:
            key = self._send(wanted, key, trigger)
        except PagerDutyUnavailable as exc:
            delay = min(MAX_BACKOFF_SECONDS, exc.retry_after_seconds or UNAVAILABLE_RETRY_SECONDS)
            return self._record_failure(incident_id, "pagerduty.unavailable", str(exc), now + timedelta(seconds=delay))
        except PagerDutyRejected as exc:
            log.error("PagerDuty rejected the %s event: %s", wanted, exc)
            return self._record_failure(incident_id, "pagerduty.rejected", str(exc), now + REJECTED_RETRY,
                                        rejected=True)
        with unit_of_work(self._factory) as session:
            incident = session.get(Incident, incident_id, with_for_update=True)
            incident.pagerduty_status_synced, incident.pagerduty_retry_at = wanted, None
            incident.pagerduty_dedup_key = key
            if key:
                chain.append(session, incident_id, f"pagerduty.sent.{wanted}", ACTOR, {"dedup_key": key},
                             self._clock())
        return "sent"

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

    def _send(self, wanted: str, key: str | None, trigger: dict) -> str | None:
        if wanted == "triggered":
            return self._link.trigger(**trigger)
        if key is None:
            return None  # never reached PagerDuty: nothing to resolve or acknowledge there
        if wanted == "resolved":
            self._link.resolve(key)
        elif wanted == "acknowledged":
            self._link.acknowledge(key)
        return key

    def _record_failure(self, incident_id: int, kind: str, error: str, retry_at, rejected: bool = False) -> str:
        """Back off until `retry_at`; the timeline hears of it once per streak of one kind."""
        with unit_of_work(self._factory) as session:
            incident = session.get(Incident, incident_id, with_for_update=True)
            incident.pagerduty_retry_at = retry_at
            last = session.execute(
                select(TimelineEntry.kind).where(TimelineEntry.incident_id == incident_id)
                .order_by(TimelineEntry.seq.desc()).limit(1)
            ).scalar_one_or_none()
            if last != kind:
                chain.append(session, incident_id, kind, ACTOR, {"error": error[:500]}, self._clock())
        return "rejected" if rejected else "deferred"
