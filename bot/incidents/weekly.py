"""The numbers the team and the bot are judged by, per ISO week in UTC (`/metrics`, `/ops status`).

`weekly_numbers(session, now, weeks)` gives one `WeekNumbers` per week, oldest first; the last
is the week holding `now`, counted up to now (`so_far`). What each figure counts, and when:

- incidents `opened`: created in the week; `resolved`: whose standing resolution falls in the
  week (`resolved_at`, which a reopening clears). An incident merged into another is never
  counted: its alerts moved to the incident it joined, and that one is counted once.
- `alerts`: distinct alerts (one source fingerprint within one incident) first seen in the
  week; `noise_reduction` = alerts / incidents opened, i.e. alerts per thread (None without one).
- `tta`, `ttd`, `ttr`: each incident's time from its first alert (earliest `startsAt`, else first
  seen, else the incident's creation) to its first acknowledgement, to its RCA, to its
  resolution: the postmortem's definitions (`bot.postmortem.facts`; a test holds the two
  together). TTA and TTD over the incidents opened in the week, TTR over those resolved in it.
  Each gives the mean (the conventional MTTA/MTTD/MTTR) and the median (which one incident left
  open all weekend does not drag), with the number of incidents measured; both None for none.
- `steps`: runbook steps counted in the week they were proposed, so a week's outcomes can still
  move while its steps run (`STEP_FIGURES`: proposed, approved by people, auto-run, rejected,
  succeeded, rolled back, failed).
- `resolutions`: of the incidents resolved in the week, how many have each resolution kind,
  as `facts.resolution_kind` judges it (bot-mitigated, bot-assisted, human-resolved);
  `share(kind)` is its share.

Cost: seven queries per week, whatever it holds: counts are SQL aggregates, and the
per-incident inputs (first alert, first acknowledgement, latest RCA, steps) are read for all of
the week's incidents at once, selected by a subquery (no id lists, no query per incident); on
PostgreSQL, about 70 ms for a week of 400 incidents. Nothing is written and no clock is read:
the same rows and `now` give the same numbers, read in one snapshot (`bot.db.engine.reading`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from statistics import fmean, median
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select, type_coerce
from sqlalchemy.orm import Session, load_only

from bot.db.models import Alert, Incident, Investigation, Proposal, ProposalApproval, TimelineEntry
from bot.db.types import UTCDateTime
from bot.postmortem.facts import SUCCEEDED, resolution_kind

MAX_WEEKS = 52
WEEK = timedelta(days=7)
KINDS = ("bot-mitigated", "bot-assisted", "human-resolved")

_WENT_AHEAD = or_(Proposal.status == "approved", Proposal.started_at.is_not(None))  # approved, maybe run since
_APPROVED_BY_PEOPLE = exists().where(ProposalApproval.proposal_id == Proposal.id)
# Each step figure as a condition on the proposal (statuses: see `Proposal`). A step goes ahead
# either with the approvals its policy asked for or, with autonomy `auto` and a policy that
# allows it, with none: one of `approved` and `auto_run`, never both. `observed` steps were only
# written to the timeline (autonomy observe), so they were not proposed to anyone.
STEP_FIGURES: dict[str, Any] = {
    "proposed": Proposal.status != "observed",
    "approved": and_(_WENT_AHEAD, _APPROVED_BY_PEOPLE),
    "auto_run": and_(_WENT_AHEAD, ~_APPROVED_BY_PEOPLE),
    "rejected": Proposal.status == "rejected",
    "succeeded": Proposal.status == "succeeded",
    "rolled_back": Proposal.status == "rolled_back",
    "failed": Proposal.status.in_(("failed", "rollback_failed")),
}


@dataclass(frozen=True)
class Times:
    """One time-to-X over `count` incidents, in seconds (mean and median None when count is 0)."""

    count: int
    mean_seconds: float | None
    median_seconds: float | None


@dataclass(frozen=True)
class WeekNumbers:
    week: str  # ISO 8601 week, e.g. "2026-W47"
    start: datetime  # Monday 00:00 UTC
    end: datetime  # the next Monday 00:00 UTC (exclusive)
    so_far: bool  # the week holding `now`: counted up to now
    opened: int
    resolved: int
    alerts: int
    noise_reduction: float | None
    tta: Times
    ttd: Times
    ttr: Times
    steps: dict[str, int]  # by STEP_FIGURES name
    resolutions: dict[str, int]  # by KINDS

    def share(self, kind: str) -> float | None:
        """The share of the week's resolved incidents with this resolution kind (None: none resolved)."""
        return self.resolutions[kind] / self.resolved if self.resolved else None


def week_start(moment: datetime) -> datetime:
    """Monday 00:00 UTC of the ISO week holding `moment`."""
    day = moment.astimezone(UTC).date()
    return datetime.combine(day - timedelta(days=day.weekday()), time(), UTC)


def week_label(start: datetime) -> str:
    year, week, _ = start.isocalendar()
    return f"{year}-W{week:02d}"


def times(values: Iterable[int | None]) -> Times:
    """Mean and median of the values that exist (a time that has not happened yet is not 0)."""
    known = [value for value in values if value is not None]
    if not known:
        return Times(0, None, None)
    return Times(len(known), fmean(known), float(median(known)))


def weekly_numbers(session: Session, now: datetime, weeks: int = 1) -> list[WeekNumbers]:
    """The last `weeks` ISO weeks (1 to MAX_WEEKS), oldest first, ending with the one holding `now`.

    ValueError for a naive `now` or a number of weeks out of range."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if isinstance(weeks, bool) or not isinstance(weeks, int) or not 1 <= weeks <= MAX_WEEKS:
        raise ValueError(f"weeks must be a whole number from 1 to {MAX_WEEKS}, not {weeks!r}")
    current = week_start(now)
    return [_week(session, current - WEEK * back, now) for back in range(weeks - 1, -1, -1)]


def _seconds(start: datetime, end: datetime | None) -> int | None:
    return int((end - start).total_seconds()) if end is not None and end >= start else None


@dataclass(frozen=True)
class _Timed:
    """One incident's times (seconds from its first alert) and resolution kind."""

    tta: int | None
    ttd: int | None
    ttr: int | None
    kind: str


def _bot_rca(investigation: Investigation | None) -> dict[str, Any]:
    """The `root` that `resolution_kind` reads: whether the bot's RCA named a cause (a finished
    investigation with at least one hypothesis), as `facts` words it."""
    result = investigation.result if investigation is not None and investigation.status == "done" else None
    return {"rca": "the bot's RCA" if result and result.get("hypotheses") else "no RCA"}


def _timed(session: Session, incidents: list[Incident], ids) -> dict[int, _Timed]:
    """The times and resolution kind of `incidents` (selected by the subquery `ids`), in four queries."""
    first_alert = dict(session.execute(
        select(Alert.incident_id, func.min(type_coerce(func.coalesce(Alert.starts_at, Alert.first_seen_at),
                                                       UTCDateTime())))
        .where(Alert.incident_id.in_(ids)).group_by(Alert.incident_id)).all())
    acknowledged: dict[int, datetime] = {}
    for incident_id, when in session.execute(  # the first by seq, as the postmortem reads the timeline
            select(TimelineEntry.incident_id, TimelineEntry.at)
            .where(TimelineEntry.kind == "incident.acknowledged", TimelineEntry.incident_id.in_(ids))
            .order_by(TimelineEntry.incident_id, TimelineEntry.seq)):
        acknowledged.setdefault(incident_id, when)
    latest_rca = {row.incident_id: row for row in session.execute(  # ordered by round: the latest wins
        select(Investigation).where(Investigation.incident_id.in_(ids)).order_by(Investigation.round)).scalars()}
    steps: dict[int, list[dict[str, Any]]] = {}
    for row in session.execute(select(Proposal.incident_id, Proposal.status, Proposal.requested_by,
                                      Proposal.finished_at).where(Proposal.incident_id.in_(ids))):
        steps.setdefault(row.incident_id, []).append(
            {"status": row.status, "requested_by": row.requested_by, "finished_at": row.finished_at})
    timed = {}
    for incident in incidents:
        start = first_alert.get(incident.id) or incident.created_at
        rca = latest_rca.get(incident.id)
        actions = steps.get(incident.id, [])
        mitigated = min((a["finished_at"] for a in actions if a["status"] == SUCCEEDED and a["finished_at"]),
                        default=None)
        timed[incident.id] = _Timed(
            tta=_seconds(start, acknowledged.get(incident.id)),
            ttd=_seconds(start, rca.finished_at if rca is not None and rca.status == "done" else None),
            ttr=_seconds(start, incident.resolved_at),
            kind=resolution_kind(incident, _bot_rca(rca), actions, mitigated))
    return timed


def _week(session: Session, start: datetime, now: datetime) -> WeekNumbers:
    end = start + WEEK

    def within(column):
        return and_(column >= start, column < end)

    # The week's incidents, once: opened or resolved in it, never one merged into another.
    chosen = and_(Incident.merged_into_id.is_(None), or_(within(Incident.created_at), within(Incident.resolved_at)))
    incidents = list(session.execute(select(Incident).where(chosen).options(load_only(
        Incident.id, Incident.created_at, Incident.resolved_at, Incident.status, Incident.is_open))).scalars())
    timed = _timed(session, incidents, select(Incident.id).where(chosen)) if incidents else {}
    opened = [timed[i.id] for i in incidents if start <= i.created_at < end]
    resolved = [timed[i.id] for i in incidents if i.resolved_at is not None and start <= i.resolved_at < end]
    alerts = session.execute(select(func.count(Alert.id)).where(within(Alert.first_seen_at))).scalar_one()
    step_row = session.execute(select(*(func.coalesce(func.sum(case((condition, 1), else_=0)), 0)
                                        for condition in STEP_FIGURES.values()))
                               .where(within(Proposal.created_at))).one()
    kinds = [incident.kind for incident in resolved]
    return WeekNumbers(
        week=week_label(start), start=start, end=end, so_far=start <= now < end,
        opened=len(opened), resolved=len(resolved), alerts=alerts,
        noise_reduction=alerts / len(opened) if opened else None,
        tta=times(incident.tta for incident in opened),
        ttd=times(incident.ttd for incident in opened),
        ttr=times(incident.ttr for incident in resolved),
        steps={name: int(value) for name, value in zip(STEP_FIGURES, step_row, strict=True)},
        resolutions={kind: kinds.count(kind) for kind in KINDS},
    )
