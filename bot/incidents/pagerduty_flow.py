"""PagerDuty webhooks in the incident flow.

Two kinds of PagerDuty incident arrive here:
- one opsbot opened itself: its `incident_key` is exactly the dedup key recorded on INC-N
  (`<prefix>-INC-N`, with this install's prefix; label `opsbot_incident`). The event is
  mirrored onto INC-N (acknowledged by, reassigned, notes, resolved or reopened in PagerDuty)
  and never becomes an alert, so nothing loops back and forth. Another install's key
  (`acme-INC-N`) matches no recorded key: that incident is foreign, as below;
- any other (PagerDuty-born): an alert source like Alertmanager (one PD incident, one alert,
  one opsbot incident). Its state changes (`INGESTED`) are ingested: `incident.reopened`
  fires the alert again from the event's time, so a resolved incident reopens within the
  reopen window (later, a new one opens). Unacknowledgements, reassignments, notes and the
  like are mirrored as above.
`incident.annotated` carries no state, so it is only mirrored, never ingested as an alert.
Echoes (opsbot's own change coming back: its Events API calls for its own incidents, its REST
acknowledgements of PagerDuty-born ones) are recorded on the timeline only, so they never
overwrite who acknowledged in Slack nor post a thread note about what opsbot itself did.

Replays. A signed delivery stays valid for anyone who captured it, so each event is applied
at most once and never against a newer state, checked in the transaction that applies it:
- the event's id is recorded in the replay guard (`bot.db.seen`, `REPLAY_KEEP`) with the
  change itself: a replay finds it and changes nothing; a delivery whose transaction rolled
  back left no record and is applied when retried. Two replicas cannot both record it;
- an event that occurred more than `REPLAY_KEEP` ago is refused, so no replay outlives the
  record of its id (PagerDuty gives up retrying long before);
- a state change (`STATE_EVENTS`) older than the last one applied to the incident (timeline
  entry `pagerduty.state`, which keeps its `occurred_at`) is refused with a `pagerduty.ignored`
  entry: a resolve that occurred before a reopen cannot undo it, whatever its id.
Replays and too-old events are logged, not put on the timeline (anyone holding one old
delivery could repeat it endlessly); the webhook route answers a replay already recorded
with 200 `duplicate` before storing anything.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.alerts.model import AlertBatch
from bot.alerts.pagerduty import SOURCE as PAGERDUTY_SOURCE
from bot.db import seen
from bot.db.locks import ROW_LOCK
from bot.db.models import Incident, TimelineEntry
from bot.incidents import flows, service
from bot.incidents.lifecycle import Windows
from bot.incidents.pagerduty_sync import acting_user_ids
from bot.timeline import chain

ACTOR = "pagerduty"
MIRRORED = {
    "incident.acknowledged": "acknowledged",
    "incident.unacknowledged": "unacknowledged",
    "incident.reassigned": "reassigned",
    "incident.annotated": "annotated",
    "incident.escalated": "escalated_in_pagerduty",
    "incident.priority_updated": "priority_updated",
    "incident.reopened": "reopened",
}
# What a PagerDuty-born incident's alert takes in; every other event is mirrored only.
INGESTED = frozenset({"incident.triggered", "incident.acknowledged", "incident.resolved", "incident.reopened"})
ECHO_OF = {"incident.triggered": "triggered", "incident.acknowledged": "acknowledged",
           "incident.resolved": "resolved"}
# Events that set the incident's state: one older than the last applied is refused. The others
# (notes, reassignments, escalations, priorities) tell what happened and apply in any order.
STATE_EVENTS = frozenset({"incident.triggered", "incident.acknowledged", "incident.unacknowledged",
                          "incident.resolved", "incident.reopened"})
STATE_KIND = "pagerduty.state"
# How long an applied event's id is kept, and so the oldest event accepted at all.
REPLAY_KEEP = timedelta(days=7)
log = logging.getLogger(__name__)


def _linked(session: Session, labels: dict[str, str]) -> Incident | None:
    """The opsbot incident a PagerDuty incident mirrors: by the PagerDuty id recorded earlier,
    or by the INC-N its dedup key names, but only when INC-N really is mirrored under exactly
    that key. The recorded key was built with this install's prefix (and recorded before the
    first trigger left), so another install's `acme-INC-N`, or a foreign PagerDuty incident
    that merely uses a key of that shape, controls nothing."""
    pd_id = labels.get("pagerduty_incident", "")[:64]
    if pd_id:
        known = session.execute(
            select(Incident).where(Incident.pagerduty_incident_id == pd_id, Incident.source != PAGERDUTY_SOURCE)
            .with_for_update(**ROW_LOCK)
        ).scalars().first()
        if known is not None:
            return known
    reference, key = labels.get("opsbot_incident", ""), labels.get("pagerduty_dedup_key")
    if not key or not reference.startswith("INC-") or not reference[4:].isdigit() or len(reference) > 20:
        return None
    incident = session.execute(
        select(Incident).where(Incident.id == int(reference[4:])).with_for_update(**ROW_LOCK)
    ).scalar_one_or_none()
    if incident is None or incident.source == PAGERDUTY_SOURCE or incident.pagerduty_status_wanted is None:
        return None
    if incident.pagerduty_dedup_key != key:
        return None
    if incident.pagerduty_incident_id and pd_id and pd_id != incident.pagerduty_incident_id:
        return None  # another PagerDuty incident (another service or install) using our key
    return incident


def _mirror(session: Session, incident: Incident, event: str, annotations: dict[str, str], labels: dict[str, str],
            now: datetime, echo: bool = False) -> bool:
    """Reflect a PagerDuty-side change on the opsbot incident; True when the card changes.

    An `echo` (opsbot's own Events API call or REST acknowledgement coming back, see
    `_is_echo`) is recorded on the timeline only: it must not overwrite who acknowledged in
    Slack or tell the thread what it just did itself."""
    agent = annotations.get("agent") or "someone"
    detail = {"agent": agent, "pagerduty_incident": labels.get("pagerduty_incident")}
    link_changed = _remember_pagerduty(incident, annotations, labels)
    if echo:
        kind = MIRRORED.get(event, event.removeprefix("incident."))
        chain.append(session, incident.id, f"pagerduty.echo.{kind}", ACTOR, detail, now)
        if link_changed:
            incident.card_version += 1
        return link_changed
    note = dict(incident.note_pending or {})
    if event == "incident.acknowledged":
        incident.acknowledged_by = agent[:256]
        note["acknowledged"] = agent
    elif event == "incident.unacknowledged":
        incident.acknowledged_by = None
        _pagerduty_shows(incident, "triggered")  # so a later acknowledgement in Slack is sent again
    elif event == "incident.reassigned":
        note["reassigned"] = annotations.get("assignees") or agent
        detail["assignees"] = annotations.get("assignees")
    elif event == "incident.annotated":
        note["annotated"] = agent
        detail["note"] = annotations.get("note", "")
    elif event == "incident.resolved":
        note["resolved_in_pagerduty"] = agent
        _pagerduty_shows(incident, "resolved")  # a person resolved it there: do not page again
    kind = MIRRORED.get(event, "resolved" if event == "incident.resolved" else event.removeprefix("incident."))
    chain.append(session, incident.id, f"pagerduty.{kind}", ACTOR, detail, now)
    incident.note_pending = note
    incident.updated_at = now
    incident.card_version += 1
    return True


def _remember_pagerduty(incident: Incident, annotations: dict[str, str], labels: dict[str, str]) -> bool:
    """Store the PagerDuty incident id and link (for later lookups and the card)."""
    before = (incident.pagerduty_incident_id, incident.links.get("pagerduty"))
    if annotations.get("html_url", "").startswith("https://"):
        incident.links = {**incident.links, "pagerduty": annotations["html_url"][:2000]}
    pd_id = labels.get("pagerduty_incident", "")[:64]
    incident.pagerduty_incident_id = pd_id or incident.pagerduty_incident_id
    return before != (incident.pagerduty_incident_id, incident.links.get("pagerduty"))


def _pagerduty_shows(incident: Incident, status: str) -> None:
    """PagerDuty itself moved the incident to `status` (`triggered` after an unacknowledgement
    or a reopen, `resolved`): record it as both wanted and synced, so the PagerDuty stage
    neither undoes it nor thinks a later change already sent. A pending resolve of opsbot's
    own incident stays pending."""
    if incident.pagerduty_status_wanted is not None and (
            status == "resolved" or incident.pagerduty_status_wanted != "resolved"):
        incident.pagerduty_status_wanted = incident.pagerduty_status_synced = status


def _is_echo(session: Session, incident: Incident, event: str, annotations: dict[str, str]) -> bool:
    """Our own change coming back: the new state is one opsbot wants (set before the call:
    PagerDuty's webhook may arrive before the sync records what it sent), and the agent is
    opsbot's: an integration (the Events API) for opsbot's incidents; for PagerDuty-born ones,
    the PagerDuty user opsbot's REST writes act as (on the timeline before the call, see
    `bot.incidents.pagerduty_sync.ACTING_AS`). PagerDuty's own automation (ack timeouts, other
    integrations) and people acting in PagerDuty match neither and are mirrored."""
    sent = {incident.pagerduty_status_wanted, incident.pagerduty_status_synced} - {None}
    if ECHO_OF.get(event) not in sent:
        return False
    if incident.source != PAGERDUTY_SOURCE:
        return annotations.get("agent_type") == "service_reference"
    agent_id = annotations.get("agent_id")
    return (annotations.get("agent_type") == "user_reference" and bool(agent_id)
            and agent_id in acting_user_ids(session, incident.id))


def _reopened_in_pagerduty(incident: Incident) -> None:
    """A PagerDuty-born incident fires again: PagerDuty shows it triggered and unacknowledged,
    so the card offers Acknowledge again (and that acknowledgement is sent again)."""
    _pagerduty_shows(incident, "triggered")
    if incident.status == "open" and incident.acknowledged_by is not None:
        incident.acknowledged_by = None
        incident.card_version += 1


def apply(session: Session, batch: AlertBatch, delivery_id: int, now: datetime,
          windows: Windows) -> flows.IntakeResult | None:
    """Apply one PagerDuty webhook; None when it changed nothing: a replay or a stale state
    change (see the module docstring), or an event about no incident opsbot knows that carries
    no state (a note on a PagerDuty incident opsbot never saw)."""
    event = batch.common_annotations.get("pagerduty_event", "")
    (alert,) = batch.alerts
    linked = _linked(session, alert.labels)
    known = linked or service.open_incident(session, batch.group_key, lock=True) or \
        service.latest_closed_incident(session, batch.group_key, lock=True)
    if _refused(session, batch, event, known, now):
        return None
    if linked is not None:
        changed = _mirror(session, linked, event, alert.annotations, alert.labels, now,
                          echo=_is_echo(session, linked, event, alert.annotations))
        _record_state(session, linked.id, batch, event, now)
        return flows.IntakeResult(linked.id, False, 0, 0, 0, changed)
    if event not in INGESTED:
        if known is None:
            return None
        _mirror(session, known, event, alert.annotations, alert.labels, now)
        _record_state(session, known.id, batch, event, now)
        return flows.IntakeResult(known.id, False, 0, 0, 0, True)
    result = flows.ingest(session, batch, delivery_id, now, windows)
    incident = session.get(Incident, result.incident_id)
    if event == "incident.acknowledged":
        _mirror(session, incident, event, alert.annotations, alert.labels, now,
                echo=_is_echo(session, incident, event, alert.annotations))
    elif event == "incident.resolved":
        _pagerduty_shows(incident, "resolved")  # a pending acknowledgement has nothing left to do
    elif event == "incident.reopened":
        _reopened_in_pagerduty(incident)
    _record_state(session, incident.id, batch, event, now)
    return result


def _refused(session: Session, batch: AlertBatch, event: str, known: Incident | None, now: datetime) -> bool:
    """True when the event must change nothing: too old to be told from a replay, already
    applied (its id is recorded here, in the caller's transaction, when it is not), or a state
    change older than the one `known` (the incident it concerns, locked) last took."""
    event_id, occurred_at = batch.event_id, batch.occurred_at
    if event_id is None or occurred_at is None:
        return False  # not a PagerDuty V3 event (`parse` always sets both)
    if occurred_at < now - REPLAY_KEEP:
        log.warning("PagerDuty event %s (%s) ignored: it occurred at %s, longer ago than replays are "
                    "recognised (%s)", event_id, event, occurred_at.isoformat(), REPLAY_KEEP)
        return True
    if not seen.first_time(session, PAGERDUTY_SOURCE, event_id, now, REPLAY_KEEP):
        log.warning("PagerDuty event %s (%s) ignored: already applied (a replay)", event_id, event)
        return True
    last = _last_state(session, known.id) if known is not None and event in STATE_EVENTS else None
    if last is None or occurred_at >= last[1]:
        return False
    chain.append(session, known.id, "pagerduty.ignored", ACTOR, {
        "event": event, "event_id": event_id, "occurred_at": occurred_at.isoformat(),
        "reason": f"older than the state it would replace ({last[0]} at {last[1].isoformat()})"}, now)
    return True


def _last_state(session: Session, incident_id: int) -> tuple[str, datetime] | None:
    """The last PagerDuty state change applied to the incident: (event type, occurred at)."""
    payload = session.execute(
        select(TimelineEntry.payload).where(TimelineEntry.incident_id == incident_id, TimelineEntry.kind == STATE_KIND)
        .order_by(TimelineEntry.seq.desc()).limit(1)).scalar_one_or_none()
    try:
        return payload["event"], datetime.fromisoformat(payload["occurred_at"])
    except (TypeError, KeyError, ValueError):
        return None  # none yet


def _record_state(session: Session, incident_id: int, batch: AlertBatch, event: str, now: datetime) -> None:
    """Keep the time of a state change applied to the incident, for `_refused`."""
    if event in STATE_EVENTS and batch.occurred_at is not None:
        chain.append(session, incident_id, STATE_KIND, ACTOR, {
            "event": event, "event_id": batch.event_id, "occurred_at": batch.occurred_at.isoformat()}, now)
