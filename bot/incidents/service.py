"""Incident queries. No transactions here: callers (flows) own the unit of work."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, case, distinct, func, select, update
from sqlalchemy.orm import Session

from bot.alerts.fingerprints import key_hash
from bot.db.locks import ROW_LOCK
from bot.db.models import Alert, Incident, SlackMessage

SEVERITY_ALIASES = {
    "page": "critical", "p1": "critical", "sev1": "critical", "error": "high", "p2": "high", "sev2": "high",
    "major": "high", "medium": "warning", "p3": "warning", "sev3": "warning", "minor": "warning",
    "low": "info", "none": "info", "p4": "info", "p5": "info", "sev4": "info",
}


def normalise_severity(value: str | None) -> str:
    """Map the many spellings teams use onto critical | high | warning | info | unknown."""
    if not value:
        return "unknown"
    value = value.strip().lower()
    value = SEVERITY_ALIASES.get(value, value)
    return value if value in {"critical", "high", "warning", "info"} else "unknown"


def severity_rank(value: str) -> int:
    return ("unknown", "info", "warning", "high", "critical").index(normalise_severity(value))


def open_incident(session: Session, group_key: str, lock: bool = False) -> Incident | None:
    """The open incident of a group key. With `lock`, the row stays locked (FOR UPDATE) until
    the transaction ends, so concurrent updates of its aggregates queue instead of racing."""
    query = select(Incident).where(Incident.group_key_hash == key_hash(group_key), Incident.is_open.is_(True))
    if lock:
        query = query.with_for_update(**ROW_LOCK)
    return session.execute(query).scalar_one_or_none()


def latest_closed_incident(session: Session, group_key: str, lock: bool = False) -> Incident | None:
    query = (
        select(Incident)
        .where(Incident.group_key_hash == key_hash(group_key), Incident.is_open.is_(None))
        .order_by(Incident.id.desc())
        .limit(1)
    )
    if lock:
        query = query.with_for_update(**ROW_LOCK)
    return session.execute(query).scalar_one_or_none()


def get_incident(session: Session, incident_id: int) -> Incident | None:
    return session.get(Incident, incident_id)


def alerts_of(session: Session, incident_id: int) -> list[Alert]:
    return list(
        session.execute(select(Alert).where(Alert.incident_id == incident_id).order_by(Alert.id)).scalars()
    )


GROUPED_COLUMNS = (Alert.name, Alert.status, Alert.severity, Alert.cluster, Alert.namespace, Alert.service,
                   Alert.category)


@dataclass(frozen=True)
class CardFacts:
    """What the card is recomputed from: the alerts counted by GROUPED_COLUMNS (rows with a
    `count`), the lead alert's annotations and link (its first firing alert, else its first),
    and how many distinct targets fire."""

    groups: list
    lead_annotations: dict | None
    lead_generator_url: str | None
    firing_targets: int


def _card_facts_statement():
    """One statement (a batch pays one round trip for its card): the groups, with the lead
    alert and the firing-target count as uncorrelated subqueries the database runs once.
    Built once with the incident as a bound parameter: building it per call cost more than
    running it. The session is flushed by the caller (`flows.refresh`)."""
    incident_id = bindparam("incident_id")
    alerts = Alert.__table__  # Core, not the ORM: no ORM compile step or autoflush per batch
    lead, lead_column = alerts.alias("lead"), alerts.alias("lead_column")
    grouped = [alerts.c[column.key] for column in GROUPED_COLUMNS]
    first_lead = (select(lead.c.id).where(lead.c.incident_id == incident_id)
                  .order_by(case((lead.c.status == "firing", 0), else_=1), lead.c.id).limit(1).scalar_subquery())
    firing_targets = select(func.count(distinct(alerts.c.target))).where(
        alerts.c.incident_id == incident_id, alerts.c.status == "firing").scalar_subquery()
    return (
        select(*grouped, func.count().label("count"), firing_targets.label("firing_targets"),
               select(lead_column.c.annotations).where(lead_column.c.id == first_lead).scalar_subquery()
               .label("lead_annotations"),
               select(lead_column.c.generator_url).where(lead_column.c.id == first_lead).scalar_subquery()
               .label("lead_generator_url"))
        .where(alerts.c.incident_id == incident_id).group_by(*grouped)
    )


_CARD_FACTS = _card_facts_statement()


def card_facts(session: Session, incident_id: int) -> CardFacts:
    rows = list(session.execute(_CARD_FACTS, {"incident_id": incident_id}))
    first = rows[0] if rows else None
    return CardFacts(rows, first.lead_annotations if first else None, first.lead_generator_url if first else None,
                     int(first.firing_targets or 0) if first else 0)


def incident_of_message(session: Session, channel: str | None, ts: str | None) -> int | None:
    """The incident whose thread holds the bot's message (channel, ts), if it is one of ours."""
    if not channel or not ts:
        return None
    return session.execute(select(SlackMessage.incident_id).where(SlackMessage.channel == channel,
                                                                  SlackMessage.ts == ts)).scalar_one_or_none()


def card_message(session: Session, incident_id: int) -> SlackMessage | None:
    return thread_message(session, incident_id, "card")


def thread_message(session: Session, incident_id: int, purpose: str) -> SlackMessage | None:
    """The incident's message for `purpose` (`card`, `catchup`, ...), if posted."""
    return session.execute(
        select(SlackMessage).where(SlackMessage.incident_id == incident_id, SlackMessage.purpose == purpose)
    ).scalar_one_or_none()


def _card_due(now: datetime, min_interval: timedelta):
    """Behind, not leased (or the lease lapsed), and not synced within the debounce interval."""
    return (
        (Incident.card_synced_version < Incident.card_version)
        & ((Incident.card_lease_until.is_(None)) | (Incident.card_lease_until < now))
        & ((Incident.card_synced_at.is_(None)) | (Incident.card_synced_at <= now - min_interval))
    )


def incidents_needing_card(session: Session, now: datetime, limit: int,
                           min_interval: timedelta = timedelta(0)) -> list[int]:
    """Cards that are due, first posts before updates (a new incident is news; an update of
    one people already see can wait a round), oldest first within each."""
    return list(
        session.execute(
            select(Incident.id).where(_card_due(now, min_interval))
            .order_by(Incident.card_synced_at.is_not(None), Incident.id).limit(limit)
        ).scalars()
    )


def lease_card(session: Session, incident_id: int, owner: str, now: datetime, until: datetime,
               min_interval: timedelta = timedelta(0)) -> bool:
    """Take the card lease with a conditional UPDATE; True only for the one winner."""
    result = session.execute(
        update(Incident)
        .where(Incident.id == incident_id, _card_due(now, min_interval))
        .values(card_lease_owner=owner, card_lease_until=until)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def lease_thread_write(session: Session, incident_id: int, owner: str, now: datetime, until: datetime,
                       min_interval: timedelta = timedelta(0)) -> bool:
    """Take the incident's write slot for a message other than the card (the RCA, its files):
    the same lease and interval the card keeps, so every Slack write of an incident shares one
    budget of one write per interval. True only for the one winner."""
    result = session.execute(
        update(Incident)
        .where(Incident.id == incident_id,
               (Incident.card_lease_until.is_(None)) | (Incident.card_lease_until < now),
               (Incident.card_synced_at.is_(None)) | (Incident.card_synced_at <= now - min_interval))
        .values(card_lease_owner=owner, card_lease_until=until)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def catchup_moved(session: Session, incident_id: int) -> None:
    """Something the catch-up shows (a step's outcome, the RCA) changed elsewhere: have the card
    worker look again, when the thread carries a catch-up (`bot.incidents.catchup`). The card
    itself is unchanged, so its digest keeps it from being re-sent."""
    session.execute(update(Incident).where(Incident.id == incident_id, Incident.catchup_hash.is_not(None))
                    .values(card_version=Incident.card_version + 1).execution_options(synchronize_session=False))


def release_thread_write(session: Session, incident_id: int, owner: str, wrote_at: datetime | None) -> None:
    """Give the slot back; `wrote_at` (when a write happened) starts the next interval."""
    values: dict = {"card_lease_owner": None, "card_lease_until": None}
    if wrote_at is not None:
        values["card_synced_at"] = wrote_at
    session.execute(update(Incident).where(Incident.id == incident_id, Incident.card_lease_owner == owner)
                    .values(**values).execution_options(synchronize_session=False))


def open_incidents(session: Session, limit: int = 20) -> list[Incident]:
    return list(
        session.execute(
            select(Incident).where(Incident.status == "open").order_by(Incident.id.desc()).limit(limit)
        ).scalars()
    )


def count_open_incidents(session: Session) -> int:
    return session.execute(select(func.count()).where(Incident.status == "open")).scalar_one()
