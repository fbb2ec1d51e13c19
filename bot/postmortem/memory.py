"""The memory of past incidents: what each resolved incident leaves behind, and the past
incidents most like a new one. A past incident is a hypothesis to check, never an answer.

- `remember(session, incident_id, now)` writes (or rewrites) a resolved incident's signature
  (`incident_signatures`) from database facts only: the object the RCA named and its owner
  chain, the root-cause category, the alert names, the log templates that jumped (all from the
  stored RCA and the alert rows), and from `postmortem_facts` the steps that ran with whether
  their verification held, how it was resolved, by which step, and whether that fix held (its
  verification passed and the incident did not reopen after it). Called each time the incident
  resolves; idempotent: the same rows give the same signature.
- `similar(session, incident_id, limit, report=None)` ranks the signatures of *other* incidents
  that are resolved now (a reopened incident's signature is stale until it resolves again) and
  were resolved before this one opened (what its responders could have known). The current
  incident's side comes from `report`, else from its stored RCA: it need not be resolved.

Similarity is declared data (`FEATURES`): each feature compares one field of the two
signatures, exactly (`same`) or as sets (`overlap`, |A∩B| / |A∪B|), and adds weight × match to
the score; the weights sum to 1, so the score lies in [0, 1]. Every feature that matches gives
one reason in words, so each ranking explains itself. An `unknown` category is no shared cause
and never matches. Below `MIN_SCORE` nothing is listed: a weak resemblance is noise in an RCA.
`similar` only reads, reads no clock, and breaks ties by the most recently resolved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.db.models import Alert, Incident, IncidentSignature
from bot.diagnosis.model import CATEGORY_TITLES
from bot.incidents import investigations
from bot.postmortem.facts import NoSuchIncident, postmortem_facts
from bot.redaction import redact

FEATURES_VERSION = 1
MIN_SCORE = 0.35
MAX_CANDIDATES = 500  # newest first: a bounded read, so the lookup never holds up an RCA
NOTE_CHARS = 300
RESOLUTIONS = ("bot-mitigated", "bot-assisted", "human-resolved")
HELD, NOT_HELD = ("succeeded",), ("failed", "rolled_back", "rollback_failed")
RAN = HELD + NOT_HELD + ("unverified", "accepted", "unverified_expired", "running", "verifying", "rolling_back")
NO_CAUSE = ("unknown", "-", "")


@dataclass(frozen=True)
class Feature:
    name: str  # a `Signature` field
    weight: float
    compare: str  # same | overlap
    why: str  # the reason's words


FEATURES: tuple[Feature, ...] = (
    Feature("resource", 0.25, "same", "same object to fix"),
    Feature("workload", 0.20, "same", "same workload"),
    Feature("category", 0.20, "same", "same kind of cause"),
    Feature("log_templates", 0.15, "overlap", "log templates that jumped in both"),
    Feature("alerts", 0.10, "overlap", "alerts in common"),
    Feature("namespace", 0.05, "same", "same namespace"),
    Feature("cluster", 0.05, "same", "same cluster"),
)


@dataclass(frozen=True)
class Signature:
    """What two incidents are compared on."""

    cluster: str | None
    namespace: str | None
    resource: str | None
    workload: str | None
    category: str | None
    alerts: frozenset[str] = frozenset()
    log_templates: frozenset[str] = frozenset()
    owners: tuple[str, ...] = ()


@dataclass(frozen=True)
class Similar:
    """A past incident like the current one: a hypothesis to check, never an answer."""

    incident_id: int
    score: float  # 0..1
    reasons: tuple[str, ...]  # one per matching feature, in FEATURES order
    parts: dict[str, float]  # feature name -> what it added to the score
    title: str
    category: str
    resource: str | None
    resolved_at: datetime
    resolution: str  # bot-mitigated | bot-assisted | human-resolved
    fixed_by: str | None  # the runbook whose step mitigated it
    fix_held: bool | None  # None: nothing verified it
    note: str | None = None  # the resolution note people wrote
    summary: str = ""  # the past RCA's cause, in one sentence
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return f"INC-{self.incident_id}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what the RCA report stores and `opsbot incidents similar --json` prints."""
        return {"incident": self.reference, "score": round(self.score, 3), "reasons": list(self.reasons),
                "parts": self.parts, "title": self.title, "category": self.category, "resource": self.resource,
                "resolved_at": self.resolved_at.isoformat().replace("+00:00", "Z"), "resolution": self.resolution,
                "fixed_by": self.fixed_by, "fix_held": self.fix_held, "note": self.note, "summary": self.summary,
                "steps": self.steps}


def _stored_report(session: Session, incident_id: int) -> dict[str, Any]:
    row = investigations.latest_for(session, incident_id)
    return (row.result or {}) if row is not None and row.status == "done" else {}


def _alert_names(session: Session, incident_id: int) -> frozenset[str]:
    return frozenset(session.execute(select(Alert.name).where(Alert.incident_id == incident_id)).scalars())


def signature_of(incident: Incident, alerts: frozenset[str], report: dict[str, Any]) -> Signature:
    """The incident's signature from its row, its alert names and its RCA report (pure)."""
    top = (report.get("hypotheses") or [{}])[0]
    resource = top.get("resource") if top.get("resource") not in NO_CAUSE else None
    owners = tuple(report.get("owners") or ())
    namespace = incident.namespace or (resource.split("/")[1] if resource and resource.count("/") == 2 else None)
    return Signature(cluster=incident.cluster, namespace=namespace, resource=resource,
                     workload=owners[-1] if owners else None, category=top.get("category") or "unknown",
                     alerts=alerts, log_templates=frozenset(report.get("log_templates") or ()), owners=owners)


def _steps(facts: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps that ran, each with whether its verification held (None: not verified)."""
    steps = []
    for action in facts["actions"]:
        if action["status"] not in RAN:
            continue
        verified = "after" in (action.get("verification") or {})
        held = True if action["status"] in HELD and verified else False if action["status"] in NOT_HELD else None
        steps.append({"runbook": action["runbook"], "status": action["status"], "held": held,
                      "finished_at": action.get("finished_at")})
    return steps


def _fix(facts: dict[str, Any], steps: list[dict[str, Any]]) -> tuple[str | None, bool | None]:
    """The step that mitigated the incident (the last that succeeded) and whether it held: its
    verification passed and the incident did not reopen after it."""
    reopened = [e.get("until") or e["at"] for e in facts["timeline"] if e["kind"] == "incident.reopened"]
    fixed = [s for s in steps if s["status"] in HELD]
    if not fixed:
        return None, (False if reopened else None)
    last = fixed[-1]
    after = any(at > (last["finished_at"] or "") for at in reopened)
    return last["runbook"], (False if after else last["held"])


def remember(session: Session, incident_id: int, now: datetime) -> IncidentSignature | None:
    """Write the resolved incident's signature (None, nothing written, when it is not resolved).

    Two writers racing (two replicas resolving the same incident) cannot both insert: the
    loser's INSERT fails on the primary key inside a savepoint and it updates instead, with the
    same facts."""
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise NoSuchIncident(f"INC-{incident_id} does not exist")
    if incident.status != "resolved" or incident.resolved_at is None:
        return None
    facts = postmortem_facts(session, incident_id)
    report = _stored_report(session, incident_id)
    sig = signature_of(incident, frozenset(facts["alerts"]["names"]), report)
    steps = _steps(facts)
    fixed_by, held = _fix(facts, steps)
    root = facts["root_cause"]
    values = {
        "resolved_at": incident.resolved_at, "cluster": sig.cluster, "namespace": sig.namespace,
        "resource": sig.resource, "category": sig.category,
        "resolution": facts["resolution"] if facts["resolution"] in RESOLUTIONS else "human-resolved",
        "summary": redact(str(root.get("summary") or root.get("rca") or ""))[:1000],
        "features": {
            "version": FEATURES_VERSION, "title": incident.title, "owners": list(sig.owners),
            "workload": sig.workload, "alerts": sorted(sig.alerts), "log_templates": sorted(sig.log_templates),
            "steps": [{k: s[k] for k in ("runbook", "status", "held")} for s in steps],
            "fixed_by": fixed_by, "fix_held": held, "reopened": facts["reopened"],
            "resolved_by": incident.resolved_by,
            "note": redact(incident.resolution_note)[:NOTE_CHARS] if incident.resolution_note else None,
            "remembered_at": now.isoformat().replace("+00:00", "Z"),
        },
    }
    where = IncidentSignature.incident_id == incident_id
    if session.execute(update(IncidentSignature).where(where).values(**values)
                       .execution_options(synchronize_session=False)).rowcount == 0:
        try:
            with session.begin_nested():
                session.add(IncidentSignature(incident_id=incident_id, **values))
        except IntegrityError:  # another writer inserted it first
            session.execute(update(IncidentSignature).where(where).values(**values)
                            .execution_options(synchronize_session=False))
    session.flush()
    return session.get(IncidentSignature, incident_id, populate_existing=True)


def _from_row(row: IncidentSignature) -> Signature:
    features = row.features or {}
    return Signature(cluster=row.cluster, namespace=row.namespace, resource=row.resource,
                     workload=features.get("workload"), category=row.category,
                     alerts=frozenset(features.get("alerts") or ()),
                     log_templates=frozenset(features.get("log_templates") or ()),
                     owners=tuple(features.get("owners") or ()))


def _words(feature: Feature, value: Any) -> str:
    if feature.name == "category":
        return CATEGORY_TITLES.get(value, value)
    if isinstance(value, (set, frozenset)):
        shown = sorted(value)
        text = ", ".join(f"“{v[:80]}”" if feature.name == "log_templates" else v for v in shown[:3])
        return text + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")
    return str(value)


def match(feature: Feature, current: Signature, past: Signature) -> tuple[float, str | None]:
    """How far `feature` matches (0..1) and the reason in words (None: no match)."""
    mine, theirs = getattr(current, feature.name), getattr(past, feature.name)
    if feature.compare == "same":
        if not mine or mine != theirs or (feature.name == "category" and mine in NO_CAUSE):
            return 0.0, None
        return 1.0, f"{feature.why}: {_words(feature, mine)}"
    shared = mine & theirs
    if not shared:
        return 0.0, None
    return len(shared) / len(mine | theirs), f"{feature.why}: {_words(feature, shared)}"


def score(current: Signature, past: Signature) -> tuple[float, tuple[str, ...], dict[str, float]]:
    """The weighted similarity in [0, 1], its reasons, and each feature's share."""
    total, reasons, parts = 0.0, [], {}
    for feature in FEATURES:
        value, reason = match(feature, current, past)
        if reason is not None:
            total += feature.weight * value
            reasons.append(reason)
            parts[feature.name] = round(feature.weight * value, 3)
    return min(1.0, round(total, 3)), tuple(reasons), parts


def _candidates(session: Session, incident: Incident, current: Signature) -> list[tuple[IncidentSignature, str]]:
    """Resolved signatures of other incidents, resolved before this one opened, that share at
    least the object, the namespace or the cause (the only ways to reach MIN_SCORE)."""
    anchors = [IncidentSignature.resource == current.resource] if current.resource else []
    anchors += [IncidentSignature.namespace == current.namespace] if current.namespace else []
    anchors += [IncidentSignature.category == current.category] if current.category not in NO_CAUSE else []
    query = (select(IncidentSignature, Incident.title).join(Incident, Incident.id == IncidentSignature.incident_id)
             .where(IncidentSignature.incident_id != incident.id, Incident.resolved_at.is_not(None),
                    IncidentSignature.resolved_at <= incident.created_at)
             .order_by(IncidentSignature.resolved_at.desc(), IncidentSignature.incident_id.desc())
             .limit(MAX_CANDIDATES))
    if anchors:
        query = query.where(or_(*anchors))
    return [(row, title) for row, title in session.execute(query).all()]


def similar(session: Session, incident_id: int, limit: int | None = 3,
            report: dict[str, Any] | None = None) -> list[Similar]:
    """Past incidents like INC-`incident_id`, most similar first (at most `limit`; None: all
    that reach MIN_SCORE). `report`: the incident's RCA before it is stored (the RCA stage)."""
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise NoSuchIncident(f"INC-{incident_id} does not exist")
    current = signature_of(incident, _alert_names(session, incident_id),
                           report if report is not None else _stored_report(session, incident_id))
    found = []
    for row, title in _candidates(session, incident, current):
        value, reasons, parts = score(current, _from_row(row))
        if value < MIN_SCORE:
            continue
        features = row.features or {}
        found.append(Similar(
            incident_id=row.incident_id, score=value, reasons=reasons, parts=parts,
            title=features.get("title") or title, category=row.category, resource=row.resource,
            resolved_at=row.resolved_at, resolution=row.resolution, fixed_by=features.get("fixed_by"),
            fix_held=features.get("fix_held"), note=features.get("note"), summary=row.summary,
            steps=list(features.get("steps") or [])))
    found.sort(key=lambda s: (-s.score, -s.resolved_at.timestamp(), -s.incident_id))
    return found if limit is None else found[:limit]
