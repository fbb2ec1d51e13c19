"""What digests keep in the database: the claim of each run's slot, and the findings between runs.

Claims (`job_claims`): a run first inserts its `(job, slot)` row; the primary key lets exactly
one replica win, the others see the row and do nothing. A claim whose run never finished (its
replica died) and whose lease lapsed is taken over by one conditional UPDATE, so a crashed run is
retried once, by one replica. A finished claim is never run again.

Findings (`digest_findings`): `remember` compares a run's findings with the scope's open ones:
a finding seen before keeps its first sighting (`Finding.reported_since`, "still drifted since"),
one no longer found is marked fixed and returned once in `DigestReport.fixed`. A run that
could not check everything (`problems`) marks nothing fixed: a finding it did not see may only
have been out of reach; nor does a section the builder cut to its top N (`partial_sections`).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.db.models import DigestFinding, JobClaim
from bot.digests.model import DigestReport, Finding

CLAIM_LEASE = timedelta(minutes=15)  # a run longer than this is presumed dead and may be retaken
MAX_DETAIL = 2000


def claim(session: Session, job: str, slot: str, owner: str, now: datetime, channel: str | None = None,
          lease: timedelta = CLAIM_LEASE) -> bool:
    """True when this caller now owns the run of (job, slot). Commits nothing itself, but the
    insert is flushed in a savepoint so that losing the race leaves the session usable."""
    try:
        with session.begin_nested():
            session.add(JobClaim(job=job, slot=slot, claimed_by=owner, claimed_at=now, channel=channel, summary={}))
    except IntegrityError:
        taken = session.execute(
            update(JobClaim)
            .where(JobClaim.job == job, JobClaim.slot == slot, JobClaim.finished_at.is_(None),
                   JobClaim.claimed_at < now - lease)
            .values(claimed_by=owner, claimed_at=now)
        )
        return taken.rowcount == 1
    return True


def finish(session: Session, job: str, slot: str, owner: str, now: datetime, outcome: str, *,
           ts: str | None = None, summary: dict[str, float] | None = None, error: str | None = None) -> bool:
    """Record how the run ended; False when the claim is no longer this owner's (taken over)."""
    done = session.execute(
        update(JobClaim)
        .where(JobClaim.job == job, JobClaim.slot == slot, JobClaim.claimed_by == owner,
               JobClaim.finished_at.is_(None))
        .values(finished_at=now, outcome=outcome, ts=ts, summary=summary or {}, error=error)
    )
    return done.rowcount == 1


def last_run(session: Session, job: str, before_slot: str | None = None) -> JobClaim | None:
    """The latest finished run of `job` that posted (for growth figures and "since" wording)."""
    query = select(JobClaim).where(JobClaim.job == job, JobClaim.outcome == "posted",
                                   JobClaim.finished_at.is_not(None))
    if before_slot is not None:
        query = query.where(JobClaim.slot != before_slot)
    return session.scalars(query.order_by(JobClaim.finished_at.desc()).limit(1)).first()


def runs(session: Session, job_prefix: str, limit: int = 20) -> list[JobClaim]:
    return list(session.scalars(select(JobClaim).where(JobClaim.job.startswith(job_prefix))
                                .order_by(JobClaim.claimed_at.desc()).limit(limit)))


def _fix_json(finding: Finding) -> dict[str, Any] | None:
    fix = finding.fix
    if fix is None:
        return None
    return {"runbook": fix.runbook, "params": dict(fix.params), "title": fix.title, "cluster": fix.cluster}


def annotate(session: Session, scope: str, report: DigestReport) -> DigestReport:
    """Read-only: the report as `remember` will store it: each finding's first sighting filled
    in, and the open findings no longer found in `fixed` (for the message, and for a dry run)."""
    known = {row.key: row for row in session.scalars(
        select(DigestFinding).where(DigestFinding.scope == scope, DigestFinding.fixed_at.is_(None)))}
    fixed = tuple(
        Finding(key=key, section=row.section, subject=row.subject, detail=row.detail, severity="info",
                reported_since=row.first_seen)
        for key, row in sorted(known.items()) if _gone(report, key, row.section))
    return dataclasses.replace(report, fixed=fixed, findings=tuple(
        dataclasses.replace(f, reported_since=known[f.key].first_seen) if f.key in known else f
        for f in report.findings))


def remember(session: Session, scope: str, report: DigestReport, now: datetime) -> DigestReport:
    """Store this run's findings; returns the report with `reported_since` set on findings seen by
    an earlier run and `fixed` holding the ones gone since (each reported once)."""
    open_rows = {row.key: row for row in session.scalars(
        select(DigestFinding).where(DigestFinding.scope == scope).with_for_update())}
    findings = []
    for finding in report.findings:
        row = open_rows.get(finding.key)
        values = {"section": finding.section[:120], "subject": finding.subject[:300],
                  "detail": finding.detail[:MAX_DETAIL], "last_seen": now, "fix": _fix_json(finding)}
        if row is None:
            session.add(DigestFinding(scope=scope, key=finding.key[:400], first_seen=now, fixed_at=None, **values))
            findings.append(finding)
            continue
        if row.fixed_at is not None:  # it came back: a new episode
            row.first_seen, row.fixed_at = now, None
            findings.append(finding)
        else:
            findings.append(dataclasses.replace(finding, reported_since=row.first_seen))
        for name, value in values.items():
            setattr(row, name, value)
    fixed: list[Finding] = []
    for key, row in open_rows.items():
        if row.fixed_at is None and _gone(report, key, row.section):
            row.fixed_at = now
            fixed.append(Finding(key=key, section=row.section, subject=row.subject, detail=row.detail,
                                 severity="info", reported_since=row.first_seen))
    return dataclasses.replace(report, findings=tuple(findings), fixed=tuple(fixed))


def _gone(report: DigestReport, key: str, section: str) -> bool:
    """A stored finding this run proves fixed: it checked everything (no problems), the finding's
    section was not cut to a top N, and the finding is not among this run's."""
    return (not report.problems and section not in report.partial_sections
            and all(f.key != key for f in report.findings))


def stored_fix(session: Session, scope: str, key: str) -> tuple[DigestFinding | None, dict[str, Any] | None]:
    """The finding a Fix button points at and the fix the digest offered, from the database."""
    row = session.get(DigestFinding, (scope, key))
    return row, (row.fix if row is not None else None)
