"""`/ops explain deploy/shop/checkout` (or `sts/…`, `ds/…`, `job/…`, `cronjob/…`, `pod/…`).

The workload now, from Kubernetes through the bot's cluster directory (`read_workload`, done
before the database snapshot is opened, bounded in time, every failure one line): ready and
desired replicas, restarts of its pods, and its rollouts (`bot.context.rollout`, the same
history and masked diff the RCA shows). From the database: the incidents on it (its namespace
and service, or an RCA naming it or owning it), the dependencies those RCAs found (a
`dependency` fact or a `dependency_unreachable` hypothesis on another object; "not known"
when none did), and from the configuration the runbooks whose `match.resource_kinds` include
its kind, each with the policy's autonomy for its namespace (the engine's own `autonomy_for`).

Invariants: reads only, Secrets are never read (the diff is masked where it is made); a part
that cannot be read says so and the rest is still answered; the cluster is the one its latest
incident came from, else the only one configured.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bot.ask.explain import Explanation, Part
from bot.context.clusters import ClusterDirectory
from bot.context.kube_read import KubeReader
from bot.context.model import ObjectRef
from bot.context.rollout import rollout_view
from bot.context.subject import valid_name
from bot.db.models import Incident, Investigation, RiskCheck
from bot.diagnosis.model import CATEGORY_TITLES
from bot.policy.engine import autonomy_for, environment_of
from bot.policy.model import Policy
from bot.remediation.catalog import Catalog

KINDS = {"deploy": "Deployment", "deployment": "Deployment", "sts": "StatefulSet", "statefulset": "StatefulSet",
         "ds": "DaemonSet", "daemonset": "DaemonSet", "job": "Job", "cronjob": "CronJob", "cj": "CronJob",
         "pod": "Pod", "po": "Pod"}
_WORKLOAD = re.compile(r"(?i)([a-z]+)/([^/\s]+)/([^/\s]+)")
READ_SECONDS = 8.0
MAX_INCIDENTS = 5
MAX_ROLLOUTS = 3
MAX_DIFF = 8
SCANNED_INCIDENTS = 200


def parse_workload(word: str) -> ObjectRef | None:
    """`deploy/shop/checkout` → Deployment/shop/checkout; None when it is not that form."""
    found = _WORKLOAD.fullmatch(word.strip())
    if not found or found.group(1).lower() not in KINDS:
        return None
    namespace, name = found.group(2), found.group(3)
    return ObjectRef(KINDS[found.group(1).lower()], namespace, name) \
        if valid_name(namespace) and valid_name(name) else None


def parse_ref(key: str) -> ObjectRef:
    kind, namespace, name = key.split("/", 2)
    return ObjectRef(kind, namespace, name)


@dataclass
class WorkloadRead:
    """What Kubernetes said (None: not read) and one line per thing that could not be read."""

    cluster: str | None
    obj: dict[str, Any] | None = None
    pods: list[dict[str, Any]] | None = None
    owned: list[dict[str, Any]] | None = None
    namespace_labels: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def latest_cluster(session: Session, ref: ObjectRef) -> str | None:
    return session.execute(select(Incident.cluster).where(Incident.namespace == ref.namespace,
                                                          Incident.cluster.is_not(None))
                           .order_by(Incident.id.desc())).scalars().first()


def read_workload(clusters: ClusterDirectory, cluster: str | None, ref: ObjectRef,
                  seconds: float = READ_SECONDS) -> WorkloadRead:
    """The object, its pods and its revisions; never raises (a failure is a line)."""
    read = WorkloadRead(cluster)
    access = clusters.resolve(cluster) or (clusters.resolve(clusters.names[0]) if len(clusters.names) == 1 else None)
    if access is None or access.api_client is None:
        read.failures.append("Could not read Kubernetes: " + ("no cluster is configured for it."
                                                              if access is None else "Kubernetes is not configured."))
        return read
    read.cluster = access.name
    r = KubeReader(access.api_client(), time.monotonic() + seconds)
    ns, name = ref.namespace, ref.name
    getters = {"Deployment": r.apps.read_namespaced_deployment, "StatefulSet": r.apps.read_namespaced_stateful_set,
               "DaemonSet": r.apps.read_namespaced_daemon_set, "Job": r.batch.read_namespaced_job,
               "CronJob": r.batch.read_namespaced_cron_job, "Pod": r.core.read_namespaced_pod}
    read.obj = r.one(str(ref), getters[ref.kind], name, ns)
    if read.obj is not None:
        read.obj.setdefault("kind", ref.kind)
        selector = ((read.obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if ref.kind == "Pod":
            read.pods = [read.obj]
        elif selector:
            labels = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
            read.pods = r.items(f"pods of {ref}", r.core.list_namespaced_pod, ns, label_selector=labels)
        if ref.kind == "Deployment":
            read.owned = r.items(f"replicasets in {ns}", r.apps.list_namespaced_replica_set, ns)
        elif ref.kind in ("StatefulSet", "DaemonSet"):
            read.owned = r.items(f"controller revisions in {ns}", r.apps.list_namespaced_controller_revision, ns)
    namespace = r.one(f"namespace {ns}", r.core.read_namespace, ns)
    read.namespace_labels = dict(((namespace or {}).get("metadata") or {}).get("labels") or {})
    read.failures += [f"Could not read {g.what}: {g.why}." for g in r.gaps]
    return read


def _restarts(pods: list[dict[str, Any]]) -> int:
    return sum(int(c.get("restartCount") or 0) for p in pods
               for c in (p.get("status") or {}).get("containerStatuses") or [])


def _health(ref: ObjectRef, read: WorkloadRead) -> Part:
    if read.obj is None:
        return Part("Health now", tuple(read.failures[:1]) or ("Could not read it from Kubernetes.",))
    spec, status = read.obj.get("spec") or {}, read.obj.get("status") or {}
    if ref.kind in ("Deployment", "StatefulSet"):
        lines = [f"{int(status.get('readyReplicas') or 0)}/{int(spec.get('replicas', 1) or 0)} replicas ready, "
                 f"{int(status.get('updatedReplicas') or 0)} updated."]
    elif ref.kind == "DaemonSet":
        lines = [f"{int(status.get('numberReady') or 0)}/{int(status.get('desiredNumberScheduled') or 0)} "
                 "pods ready."]
    elif ref.kind == "Job":
        lines = [f"{int(status.get('succeeded') or 0)}/{int(spec.get('completions') or 1)} completions, "
                 f"{int(status.get('active') or 0)} active, {int(status.get('failed') or 0)} failed."]
    elif ref.kind == "CronJob":
        lines = [f"Schedule {spec.get('schedule')}" + (" (suspended)" if spec.get("suspend") else "")
                 + f", last run {status.get('lastScheduleTime') or 'never'}, "
                   f"{len(status.get('active') or [])} running."]
    else:
        statuses = status.get("containerStatuses") or []
        lines = [f"Phase {status.get('phase') or 'unknown'}, {sum(1 for c in statuses if c.get('ready'))}/"
                 f"{len(statuses)} containers ready."]
    if read.pods is not None:
        lines.append(f"{_restarts(read.pods)} container restart(s) across {len(read.pods)} pod(s).")
    return Part("Health now", tuple(lines + read.failures[:2]))


def _rollouts(ref: ObjectRef, read: WorkloadRead) -> Part:
    if ref.kind not in ("Deployment", "StatefulSet", "DaemonSet"):
        return Part("Recent rollouts", (f"A {ref.kind} has no rollout history.",))
    if read.obj is None or read.owned is None:
        return Part("Recent rollouts", ("Could not read its revisions from Kubernetes.",))
    view = rollout_view(read.obj, read.owned)
    if not view.revisions:
        return Part("Recent rollouts", ("No revision found.",))
    lines = [f"Revision {r.number} ({r.name}), created "
             f"{r.created_at.strftime('%Y-%m-%d %H:%M UTC') if r.created_at else 'at an unknown time'}"
             + (" — current" if r is view.current else "") + "." for r in view.revisions[-MAX_ROLLOUTS:][::-1]]
    if view.in_progress:
        lines.append("A rollout is in progress.")
    if view.previous is not None:
        lines.append(f"Changes from revision {view.previous.number} to {view.current.number}:"
                     if view.changes else "The last two revisions have the same pod template.")
        lines += [f"{c.path}: {_value(c.before)} → {_value(c.after)}" for c in view.changes[:MAX_DIFF]]
        if len(view.changes) > MAX_DIFF:
            lines.append(f"… and {len(view.changes) - MAX_DIFF} more change(s)")
    return Part("Recent rollouts", tuple(lines))


def _value(value: Any) -> str:
    return "(unset)" if value is None else str(value)


def _names(report: dict[str, Any]) -> set[str]:
    tops = (report.get("hypotheses") or [])[:1]
    return {str(h.get("resource")) for h in tops} | set(report.get("owners") or [])


def incidents_on(session: Session, ref: ObjectRef) -> list[tuple[Incident, dict[str, Any] | None]]:
    """Incidents on the workload, newest first, with their latest finished RCA report: its
    namespace and service are the workload's, or the RCA's top cause or owner chain names it."""
    rows = session.execute(select(Incident).where(or_(Incident.namespace == ref.namespace,
                                                      Incident.namespace.is_(None)))
                           .order_by(Incident.id.desc()).limit(SCANNED_INCIDENTS)).scalars().all()
    found = []
    for incident in rows:
        latest = session.execute(select(Investigation).where(Investigation.incident_id == incident.id)
                                 .order_by(Investigation.round.desc())).scalars().first()
        report = latest.result if latest is not None and latest.status == "done" and latest.result else None
        named = str(ref) in _names(report or {})
        if named or (incident.namespace == ref.namespace and incident.service == ref.name):
            found.append((incident, report))
    return found


def _incidents(found: list[tuple[Incident, dict[str, Any] | None]]) -> Part:
    if not found:
        return Part("Incidents on it", ("None recorded.",))
    lines = []
    for incident, report in found[:MAX_INCIDENTS]:
        top = ((report or {}).get("hypotheses") or [{}])[0]
        cause = CATEGORY_TITLES.get(top.get("category"), top.get("category")) if report else "no RCA stored"
        lines.append(f"INC-{incident.id} {incident.title} ({incident.status}, opened "
                     f"{incident.created_at.strftime('%Y-%m-%d %H:%M UTC')}): {cause}.")
    if len(found) > MAX_INCIDENTS:
        lines.append(f"… and {len(found) - MAX_INCIDENTS} older one(s).")
    return Part("Incidents on it", tuple(lines))


def known_dependencies(ref: ObjectRef, found: list[tuple[Incident, dict[str, Any] | None]]) -> dict[str, list[str]]:
    """What the workload depends on as its incidents' RCAs named it (a host, or an object), with
    the incidents that named each; also what `/ops risk` checks for incidents."""
    seen: dict[str, list[str]] = {}
    for incident, report in found:
        for h in (report or {}).get("hypotheses") or []:
            names = [str((h.get("facts") or {}).get("dependency") or "")]
            if h.get("category") == "dependency_unreachable" and h.get("resource") not in (str(ref), "-"):
                names.append(str(h.get("resource")))
            for name in filter(None, names):
                if f"INC-{incident.id}" not in seen.setdefault(name, []):
                    seen[name].append(f"INC-{incident.id}")
    return seen


def _dependencies(ref: ObjectRef, found: list[tuple[Incident, dict[str, Any] | None]]) -> Part:
    seen = known_dependencies(ref, found)
    if not seen:
        return Part("Dependencies (as its RCAs found them)", ("Not known: no stored RCA of its incidents names one.",))
    return Part("Dependencies (as its RCAs found them)",
                tuple(f"{name} (named by {', '.join(refs)})" for name, refs in sorted(seen.items())))


def _runbooks(ref: ObjectRef, catalog: Catalog, policy: Policy, read: WorkloadRead) -> Part:
    environment = environment_of(policy, ref.namespace, read.namespace_labels) or "no environment"
    lines = [f"{runbook.id}: {runbook.title} — "
             f"{autonomy_for(policy, runbook.id, ref.namespace, read.namespace_labels)}"
             + ("" if runbook.enabled else " (disabled)")
             for runbook in sorted(catalog.runbooks.values(), key=lambda rb: rb.id)
             if ref.kind in runbook.match.resource_kinds]
    heading = f"Runbooks for a {ref.kind} (autonomy in {ref.namespace}: {environment})"
    return Part(heading, tuple(lines) or (f"No runbook applies to a {ref.kind}.",))


MAX_DEPLOY_CHECKS = 3


def _deploy_checks(session: Session, ref: ObjectRef) -> Part:
    """The latest verdicts of `/ops risk` and the deploy gate on it (`bot.ask.risk`), worst reason first."""
    rows = session.execute(select(RiskCheck).where(RiskCheck.workload == str(ref))
                           .order_by(RiskCheck.at.desc(), RiskCheck.id.desc()).limit(MAX_DEPLOY_CHECKS)).scalars().all()
    lines = [f"R-{row.id} {row.at:%Y-%m-%d %H:%M} UTC: {row.verdict}, asked by {row.asked_by}"
             + (f" — {row.findings[0]['check']}: {row.findings[0]['text']}" if row.findings else "") for row in rows]
    return Part("Deploy checks (/ops risk, the deploy gate)", tuple(lines) or ("None asked.",))


def explain_workload(session: Session, ref: ObjectRef, read: WorkloadRead, catalog: Catalog,
                     policy: Policy) -> Explanation:
    """The workload now (from `read`), its incidents, dependencies and runbooks (from the rows)."""
    found = incidents_on(session, ref)
    open_count = sum(1 for incident, _ in found if incident.is_open)
    headline = f"{ref}" + (f" in cluster {read.cluster}" if read.cluster else "") + \
        f" — {len(found)} incident(s) recorded, {open_count} open"
    return Explanation(str(ref), headline, (_health(ref, read), _rollouts(ref, read), _incidents(found),
                                            _dependencies(ref, found), _deploy_checks(session, ref),
                                            _runbooks(ref, catalog, policy, read)))
