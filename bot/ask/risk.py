"""Should we deploy this now? A go / wait / no-go verdict for a workload, with its reasons.

`/ops risk <workload>` and `POST /api/deploy-check` (a CD pipeline's gate) ask the same
question and get the same verdict. Each check is declared below (`CHECKS`) and returns
findings at one of four levels: `no-go` (do not deploy), `wait` (not now), `ok`, or `unknown`
(could not be checked: said, never counted as ok or as a blocker). The verdict is the worst
finding: any no-go is no-go, else any wait is wait, else go.

- incidents: an open incident on the workload (its namespace and service) is no-go when high
  or critical, else wait; one resolved within `RECENT` is wait;
- alerts: alerts firing on it (wait);
- change freeze: a policy freeze window in force for its namespace (no-go); a kill switch on,
  global or for its namespace (no-go);
- rollbacks: a rollback of it that succeeded within `ROLLBACKS` (wait: the last release was bad);
- rollout: a rollout of it still in progress in Kubernetes (wait);
- error budget: multi-window burn rates over its 5xx ratio from Prometheus (`BURN_RULES`, the
  Google SRE workbook's pairs: 1 h and 5 min above 14.4× is no-go, 6 h and 30 min above 6× is
  wait), against the SLO objective (`OPSBOT_RISK_SLO_OBJECTIVE`, 99.9 % by default).

- dependencies: an open incident on what it depends on, as the RCAs of its past incidents named
  it (wait); none known is said.

Database reads happen in one snapshot; Kubernetes and
Prometheus are asked outside any transaction, each bounded by a timeout. Every verdict is
recorded (`risk_checks`: who asked, the verdict, every finding).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.ask.explain_workload import incidents_on, known_dependencies
from bot.context.metrics import error_ratio_query
from bot.context.model import ObjectRef
from bot.db.models import Alert, Incident, Proposal, RiskCheck
from bot.policy.cron import in_window
from bot.policy.model import Policy, matches
from bot.remediation import store

log = logging.getLogger(__name__)

KINDS = {"deploy": "Deployment", "deployment": "Deployment", "sts": "StatefulSet", "statefulset": "StatefulSet",
         "ds": "DaemonSet", "daemonset": "DaemonSet"}
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
LEVELS = ("no-go", "wait", "unknown", "ok")  # worst first
RECENT = timedelta(hours=24)
ROLLBACKS = timedelta(days=3)
ROLLBACK_RUNBOOKS = ("rollback-deployment",)
USAGE = "name a workload: `deploy/NAMESPACE/NAME` (or `sts/…`, `ds/…`, or `NAMESPACE/NAME` for a Deployment)"


class RiskInputError(ValueError):
    """The question cannot be asked: one line saying why (a 400, an ephemeral reply)."""


@dataclass(frozen=True)
class Workload:
    kind: str
    namespace: str
    name: str

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class BurnRule:
    """Both windows must burn faster than `factor` times the budget's rate."""

    long_window: str
    short_window: str
    factor: float
    level: str


BURN_RULES = (BurnRule("1h", "5m", 14.4, "no-go"), BurnRule("6h", "30m", 6.0, "wait"))


@dataclass(frozen=True)
class Finding:
    check: str
    level: str  # one of LEVELS
    text: str


@dataclass(frozen=True)
class Verdict:
    workload: str
    verdict: str  # go | wait | no-go
    findings: tuple[Finding, ...]
    checked_at: datetime
    check_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"workload": self.workload, "verdict": self.verdict, "id": self.check_id,
                "checked_at": self.checked_at.isoformat().replace("+00:00", "Z"),
                "reasons": [{"check": f.check, "level": f.level, "text": f.text} for f in self.findings]}


def parse_workload(text: str) -> Workload:
    parts = (text or "").strip().split("/")
    if len(parts) == 2:
        parts = ["deploy", *parts]
    if len(parts) != 3 or parts[0].lower() not in KINDS:
        raise RiskInputError(USAGE)
    kind, namespace, name = KINDS[parts[0].lower()], parts[1], parts[2]
    if not (_NAME.fullmatch(namespace) and len(namespace) <= 63 and _NAME.fullmatch(name)):
        raise RiskInputError(f"`{text[:80]}` is not a valid workload name; {USAGE}")
    return Workload(kind, namespace, name)


def verdict_of(findings: list[Finding]) -> str:
    levels = {f.level for f in findings}
    return "no-go" if "no-go" in levels else "wait" if "wait" in levels else "go"


# -- the checks that read the database (one snapshot) --------------------------------------

def incident_findings(session: Session, workload: Workload, now: datetime) -> list[Finding]:
    scope = (Incident.namespace == workload.namespace, Incident.service == workload.name)
    open_ones = session.execute(select(Incident).where(*scope, Incident.status == "open")
                                .order_by(Incident.id)).scalars().all()
    found = [Finding("incidents", "no-go" if i.severity in ("critical", "high") else "wait",
                     f"{i.reference} is open ({i.severity}): {i.title}") for i in open_ones]
    recent = session.execute(select(Incident).where(*scope, Incident.resolved_at >= now - RECENT,
                                                    Incident.status != "open")
                             .order_by(Incident.id)).scalars().all()
    found += [Finding("incidents", "wait", f"{i.reference} resolved {_ago(now, i.resolved_at)} ago: {i.title}")
              for i in recent]
    return found or [Finding("incidents", "ok", f"no open incident on it, none resolved in the last {_span(RECENT)}")]


def alert_findings(session: Session, workload: Workload) -> list[Finding]:
    names = sorted(set(session.execute(select(Alert.name).where(
        Alert.namespace == workload.namespace, Alert.service == workload.name, Alert.status == "firing")).scalars()))
    if names:
        return [Finding("alerts", "wait", f"firing on it: {', '.join(names[:8])}")]
    return [Finding("alerts", "ok", "no alert firing on it")]


def freeze_findings(session: Session, policy: Policy | None, workload: Workload, now: datetime) -> list[Finding]:
    found = []
    switches = store.kill_switches(session)
    for scope in ("global", f"namespace:{workload.namespace}"):
        if scope in switches:
            found.append(Finding("freeze", "no-go", f"the kill switch is on for {scope} (`/ops unfreeze` lifts it)"))
    for window in (policy.freeze_windows if policy else []):
        if matches(window.namespaces, workload.namespace) and in_window(window.cron, window.timezone, now):
            found.append(Finding("freeze", "no-go", f"change freeze {window.id} in force "
                                                    f"({window.cron} {window.timezone}): {window.reason}"))
    if policy is None:
        found.append(Finding("freeze", "unknown", "no policy is loaded: freeze windows not checked"))
    return found or [Finding("freeze", "ok", "no change freeze or kill switch in force")]


def rollback_findings(session: Session, workload: Workload, now: datetime) -> list[Finding]:
    rows = session.execute(select(Proposal).where(
        Proposal.target == workload.ref, Proposal.runbook_id.in_(ROLLBACK_RUNBOOKS), Proposal.status == "succeeded",
        Proposal.finished_at >= now - ROLLBACKS).order_by(Proposal.id)).scalars().all()
    return [Finding("rollbacks", "wait", f"rolled back {_ago(now, p.finished_at)} ago (P-{p.id}, INC-{p.incident_id})")
            for p in rows] or [Finding("rollbacks", "ok", f"no rollback of it in the last {_span(ROLLBACKS)}")]


def _scope_of(dependency: str, namespace: str) -> tuple[str, str] | None:
    """(namespace, service) of a dependency as an RCA names it: `Kind/ns/name`, a cluster DNS
    name (`name.ns.svc[.cluster.local][:port]`) or a bare `name[:port]` in the workload's namespace."""
    parts = dependency.split("/")
    if len(parts) == 3:
        return parts[1], parts[2]
    host = dependency.split(":")[0].lower()
    labels = host.split(".")
    if len(labels) >= 3 and labels[2] == "svc":
        return labels[1], labels[0]
    return (namespace, host) if len(labels) == 1 and _NAME.fullmatch(host) else None


def dependency_findings(session: Session, workload: Workload) -> list[Finding]:
    """Open incidents on what it depends on, as its past RCAs named it (wait: not its fault, but
    not the moment); said when none is known."""
    ref = ObjectRef(workload.kind, workload.namespace, workload.name)
    dependencies = known_dependencies(ref, incidents_on(session, ref))
    if not dependencies:
        return [Finding("dependencies", "unknown", "none known: no stored RCA of its incidents names one")]
    found = []
    for name in sorted(dependencies):
        scope = _scope_of(name, workload.namespace)
        if scope is None:
            continue
        for incident in session.execute(select(Incident).where(
                Incident.namespace == scope[0], Incident.service == scope[1], Incident.status == "open")).scalars():
            found.append(Finding("dependencies", "wait", f"{name}, which it depends on, has {incident.reference} "
                                                          f"open ({incident.severity}): {incident.title}"))
    return found or [Finding("dependencies", "ok", f"no open incident on what it depends on "
                                                   f"({', '.join(sorted(dependencies)[:5])})")]


# -- the checks that ask the cluster and Prometheus ----------------------------------------

def rollout_findings(api_client, workload: Workload, timeout_seconds: float = 5.0) -> list[Finding]:
    """`api_client`: a function making the cluster's `kubernetes` ApiClient (`ClusterAccess`), or None."""
    if api_client is None:
        return [Finding("rollout", "unknown", "Kubernetes is not configured: the rollout was not checked")]
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        apps = client.AppsV1Api(api_client())
        read = {"Deployment": apps.read_namespaced_deployment, "StatefulSet": apps.read_namespaced_stateful_set,
                "DaemonSet": apps.read_namespaced_daemon_set}[workload.kind]
        obj = read(workload.name, workload.namespace, _request_timeout=timeout_seconds)
    except ApiException as exc:
        if exc.status == 404:
            return [Finding("rollout", "unknown", f"{workload.ref} does not exist in the cluster")]
        return [Finding("rollout", "unknown", f"Kubernetes answered {exc.status}: the rollout was not checked")]
    except Exception as exc:  # noqa: BLE001 - unreachable or slow: said, not fatal
        return [Finding("rollout", "unknown", f"Kubernetes could not be read ({type(exc).__name__})")]
    status, generation = obj.status, obj.metadata.generation or 0
    if workload.kind == "DaemonSet":
        wanted, updated = status.desired_number_scheduled or 0, status.updated_number_scheduled or 0
    else:
        wanted, updated = obj.spec.replicas if obj.spec.replicas is not None else 1, status.updated_replicas or 0
    if (status.observed_generation or 0) < generation or updated < wanted:
        return [Finding("rollout", "wait", f"a rollout is in progress: {updated} of {wanted} replicas updated")]
    return [Finding("rollout", "ok", f"no rollout in progress ({updated} of {wanted} replicas on the current revision)")]


def burn_findings(prometheus_url: str | None, workload: Workload, objective: float,
                  sample=None) -> list[Finding]:
    """`sample(url, query) -> float | None`: an instant query (bot.remediation.execute.sample)."""
    if not prometheus_url:
        return [Finding("error budget", "unknown", "Prometheus is not configured: burn rates not checked")]
    if sample is None:
        from bot.remediation.execute import sample
    budget = 1.0 - objective
    rates: dict[str, float] = {}
    try:
        for window in sorted({w for rule in BURN_RULES for w in (rule.long_window, rule.short_window)}):
            value = sample(prometheus_url, error_ratio_query(workload.namespace, workload.name, window))
            if value is not None:
                rates[window] = value / budget
    except Exception as exc:  # noqa: BLE001 - unreachable or slow: said, not fatal
        return [Finding("error budget", "unknown", f"Prometheus could not be read ({type(exc).__name__})")]
    if not rates:
        return [Finding("error budget", "unknown", "no request metrics found for it (service, job or app label): "
                                                   "burn rates not checked")]
    found = []
    for rule in BURN_RULES:
        long, short = rates.get(rule.long_window), rates.get(rule.short_window)
        if long is not None and short is not None and long > rule.factor and short > rule.factor:
            found.append(Finding("error budget", rule.level, (
                f"burning the error budget {long:.1f}× over {rule.long_window} and {short:.1f}× over "
                f"{rule.short_window} (threshold {rule.factor}×, SLO {objective:.3%})")))
    shown = ", ".join(f"{w} {rates[w]:.1f}×" for w in sorted(rates, key=_seconds))
    return found or [Finding("error budget", "ok", f"burn rates within bounds ({shown}; SLO {objective:.3%})")]


def record(session: Session, verdict: Verdict, asked_by: str) -> int:
    row = RiskCheck(at=verdict.checked_at, asked_by=asked_by[:128], workload=verdict.workload[:300],
                    verdict=verdict.verdict, findings=verdict.as_dict()["reasons"])
    session.add(row)
    session.flush()
    return row.id


def _seconds(window: str) -> int:
    return int(window[:-1]) * {"m": 60, "h": 3600}[window[-1]]


def _ago(now: datetime, then: datetime | None) -> str:
    return _span(now - then) if then else "?"


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 90:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h" if hours < 48 else f"{hours // 24} days"


@dataclass(frozen=True)
class Inputs:
    """What the checks need besides the database (from the runtime)."""

    policy: Policy | None
    api_client: object | None
    prometheus_url: str | None
    objective: float = 0.999


def assess(factory, workload: Workload, inputs: Inputs, now: datetime, asked_by: str) -> Verdict:
    """Every check, then the verdict, recorded. The database is read in one snapshot and written
    in one transaction; the cluster and Prometheus are asked in between, outside both."""
    from bot.db.engine import reading, unit_of_work

    with reading(factory) as session:
        findings = [*incident_findings(session, workload, now), *alert_findings(session, workload),
                    *freeze_findings(session, inputs.policy, workload, now),
                    *rollback_findings(session, workload, now), *dependency_findings(session, workload)]
    findings += rollout_findings(inputs.api_client, workload)
    findings += burn_findings(inputs.prometheus_url, workload, inputs.objective)
    findings.sort(key=lambda f: LEVELS.index(f.level))
    verdict = Verdict(workload.ref, verdict_of(findings), tuple(findings), now)
    with unit_of_work(factory) as session:
        check_id = record(session, verdict, asked_by)
    return Verdict(verdict.workload, verdict.verdict, verdict.findings, now, check_id)


def inputs_of(runtime, cluster: str | None = None) -> Inputs:
    """The policy, the cluster's Kubernetes client and Prometheus (the default cluster unless
    named), the SLO objective."""
    kit = runtime.remediation
    access = kit.clusters.resolve(cluster) if kit is not None else None
    return Inputs(policy=kit.policy if kit is not None else None,
                  api_client=access.api_client if access is not None else None,
                  prometheus_url=access.prometheus_url if access is not None else runtime.settings.prometheus_url,
                  objective=runtime.settings.risk_slo_objective)
