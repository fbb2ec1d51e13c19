"""Facts derived once per focus workload, shared by every analyzer. Pure.

`WorkloadFindings` answers the questions each analyzer would otherwise re-ask: which pods are
in trouble and how (OOMKilled, crashed with an exit code, waiting with a reason, pending,
evicted), which events are about them (stale ones set apart), which error lines their logs
hold (classified by family, and whether healthy pods print the same: then it is noise), and
whether a rollout happened shortly before the trouble and splits failing from healthy pods.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.context.focus import focus_pods, pod_unhealthy
from bot.context.kube_facts import controller_of, parse_quantity
from bot.context.log_lines import parse_line
from bot.context.log_signals import classify
from bot.context.model import ContainerView, Context, EventView, ObjectRef, PodView, RolloutView, WorkloadView

# A Warning followed by a later success of the same step, for the same object, is over.
SUPERSEDED_BY = {"FailedScheduling": ("Scheduled",), "FailedAttachVolume": ("SuccessfulAttachVolume",),
                 "FailedMount": ("Started", "Created"), "Failed": ("Pulled", "Started"), "ErrImagePull": ("Pulled",),
                 "FailedCreate": ("SuccessfulCreate",), "FailedCreatePodSandBox": ("Started", "Created"),
                 "ProvisioningFailed": ("ProvisioningSucceeded",), "Unhealthy": ()}
# A rollout this long before the trouble began can still be its cause.
ROLLOUT_WINDOW = timedelta(hours=3)


@dataclass(frozen=True)
class ErrorLine:
    pod: ObjectRef
    container: str
    previous: bool
    line: str
    families: frozenset[str]
    healthy_pod: bool  # printed by a pod that is fine: likely noise
    at: datetime | None


@dataclass
class WorkloadFindings:
    ref: ObjectRef
    view: WorkloadView | None
    owner: ObjectRef | None  # a Job's CronJob
    pods: list[PodView]
    failing: list[PodView]
    healthy: list[PodView]
    oom: list[tuple[PodView, ContainerView]] = field(default_factory=list)
    crashes: list[tuple[PodView, ContainerView]] = field(default_factory=list)
    waiting: dict[str, list[tuple[PodView, ContainerView]]] = field(default_factory=dict)
    pending: list[PodView] = field(default_factory=list)
    evicted: list[PodView] = field(default_factory=list)
    events: list[EventView] = field(default_factory=list)
    stale_events: list[EventView] = field(default_factory=list)
    errors: list[ErrorLine] = field(default_factory=list)
    rollout: RolloutView | None = None
    rollout_recent: bool = False
    failing_new: int = 0
    failing_old: int = 0
    healthy_old: int = 0

    def error_lines(self, family: str, include_noise: bool = False) -> list[ErrorLine]:
        return [e for e in self.errors if family in e.families and (include_noise or not e.healthy_pod)]

    def connection_errors(self) -> list[ErrorLine]:
        """Lines saying a connection failed (a certificate or credentials refused by a peer that
        was reached are causes of their own)."""
        return [e for e in self.error_lines("dependency") if not e.families & {"certificate", "credentials"}]

    def key_lines(self, families: tuple[str, ...], limit: int = 3) -> list[ErrorLine]:
        """The most telling error lines of the pods in trouble: lines of `families` first, then
        other error-level lines; one per shape (numbers ignored), so a repeated line shows once."""
        ranked = [e for f in families for e in self.error_lines(f)] + [
            e for e in self.errors if not e.healthy_pod and not (e.families - {"startup_timeout"})]
        chosen, shapes = [], set()
        for line in ranked:
            shape = re.sub(r"\d+", "#", line.line)[:200]
            if shape not in shapes:
                shapes.add(shape)
                chosen.append(line)
        return chosen[:limit]

    def warning_events(self, *reasons: str) -> list[EventView]:
        return [e for e in self.events if e.type == "Warning" and (not reasons or e.reason in reasons)]

    @property
    def containers_in_trouble(self) -> list[tuple[PodView, ContainerView]]:
        return [(p, c) for p in self.failing for c in p.containers]


def _recent_termination(c: ContainerView, since: datetime) -> tuple[str | None, int | None, datetime | None]:
    """The termination that matters now: the current one, else the last one if recent."""
    if c.state == "terminated":
        return c.reason, c.exit_code, c.finished_at
    if c.last_reason and (c.last_finished_at is None or c.last_finished_at >= since - timedelta(hours=1)):
        return c.last_reason, c.last_exit_code, c.last_finished_at
    return None, None, None


def _related_refs(ctx: Context, ref: ObjectRef, pods: list[PodView]) -> set[ObjectRef]:
    refs = {ref} | {p.ref for p in pods} | {p.owner for p in pods if p.owner}
    rollout = ctx.rollout(ref)
    if rollout is not None:
        refs |= {ObjectRef("ReplicaSet", ref.namespace, r.name) for r in rollout.revisions}
    refs |= {w.ref for w in ctx.workloads if w.ref.kind == "Job" and controller_of(w.raw) == ref}
    return refs


def _errors(ctx: Context, pods: list[PodView], healthy: set[ObjectRef]) -> list[ErrorLine]:
    names = {p.ref for p in pods}
    found: list[ErrorLine] = []
    seen: set[tuple] = set()
    for view in ctx.logs:
        if view.pod not in names:
            continue
        last_at = None
        for line in view.lines:
            parsed = parse_line(line, ctx.now.year)
            last_at = parsed.at or last_at
            families = classify(line)
            # what a program logs at info level is not an error, whatever words it holds
            if parsed.level == "info" or (not families and parsed.level != "error"):
                continue
            if last_at and last_at < ctx.incident_start - timedelta(hours=1):
                continue  # old noise, long before the trouble
            key = (view.pod, view.container, line)
            if key in seen:
                continue
            seen.add(key)
            found.append(ErrorLine(view.pod, view.container, view.previous, line, frozenset(families),
                                   view.pod in healthy, last_at))
    return found


def workload_findings(ctx: Context, ref: ObjectRef) -> WorkloadFindings:
    view = ctx.workload(ref)
    pods = [p for p in focus_pods(ctx, [ref]) if p.workload == ref or p.owner == ref]
    failing = [p for p in pods if pod_unhealthy(p, ctx.incident_start)]
    healthy = [p for p in pods if p not in failing and p.phase in ("Running", "Succeeded")]
    found = WorkloadFindings(ref=ref, view=view, owner=controller_of(view.raw) if view else None, pods=pods,
                             failing=failing, healthy=healthy)
    waiting: dict[str, list] = defaultdict(list)
    for pod in pods:
        if pod.reason == "Evicted" or (pod.phase == "Failed" and pod.reason in ("Evicted", "Preempting")):
            found.evicted.append(pod)
        if pod.phase == "Pending" and pod.conditions.get("PodScheduled", ("True",))[0] == "False":
            found.pending.append(pod)
        for c in pod.containers:
            if c.state == "waiting" and c.reason:
                waiting[c.reason].append((pod, c))
            reason, code, _at = _recent_termination(c, ctx.incident_start)
            if reason == "OOMKilled":  # exit 137 alone is any SIGKILL (a liveness kill too): a crash
                found.oom.append((pod, c))
            elif reason and reason != "Completed" and (code or 0) != 0:
                found.crashes.append((pod, c))
    found.waiting = dict(waiting)
    refs = _related_refs(ctx, ref, pods)
    for event in ctx.events:
        if event.involved in refs:
            old = event.stale or superseded(event, ctx.events)
            (found.stale_events if old else found.events).append(event)
    # a healthy pod printing the same error marks it as noise, but only when others fail
    found.errors = _errors(ctx, pods, {p.ref for p in healthy} if failing else set())
    _rollout_split(ctx, found)
    return found


def superseded(event: EventView, events: list[EventView]) -> bool:
    """A failure whose step later succeeded for the same object (scheduled after
    FailedScheduling, attached after FailedAttachVolume, pulled after a failed pull)."""
    successes = SUPERSEDED_BY.get(event.reason)
    if not successes or event.type != "Warning" or event.last_at is None:
        return False
    return any(other.involved == event.involved and other.reason in successes and other.last_at
               and other.last_at > event.last_at for other in events)


def _rollout_split(ctx: Context, found: WorkloadFindings) -> None:
    rollout = ctx.rollout(found.ref)
    found.rollout = rollout
    if rollout is None or rollout.current is None or rollout.previous is None:
        return
    created = rollout.current.created_at
    found.rollout_recent = bool(created and created >= ctx.incident_start - ROLLOUT_WINDOW)
    current = rollout.current
    for pod in found.pods:
        new = of_revision(pod, current) if current.hash else True
        if pod in found.failing:
            if new:
                found.failing_new += 1
            else:
                found.failing_old += 1
        elif not new and pod.ready:
            found.healthy_old += 1


def of_revision(pod: PodView, revision) -> bool:
    """Whether the pod belongs to `revision`: Deployments label pods with the template hash, a
    StatefulSet with its ControllerRevision's whole name, a DaemonSet with the bare hash."""
    label = pod.revision_hash
    return bool(label) and label in (revision.hash, revision.name) or bool(
        label and revision.hash and label.endswith("-" + revision.hash))


def lowered_limit(found: WorkloadFindings, resource: str) -> tuple[str, str] | None:
    """A recent rollout that lowered a container's `resource` limit: (before, after) as written."""
    rollout = found.rollout
    if rollout is None or not found.rollout_recent or rollout.previous is None or rollout.current is None:
        return None

    def limits(template: dict) -> dict:
        return {c.get("name"): ((c.get("resources") or {}).get("limits") or {}).get(resource)
                for c in (template.get("spec") or {}).get("containers") or []}
    before, after = limits(rollout.previous.template), limits(rollout.current.template)
    for name, new in after.items():
        old = before.get(name)
        if old and new and (parse_quantity(str(new)) or 0) < (parse_quantity(str(old)) or 0):
            return str(old), str(new)
    return None


def all_findings(ctx: Context) -> list[WorkloadFindings]:
    return [workload_findings(ctx, ref) for ref in ctx.focus]


def fix_target(found: WorkloadFindings) -> ObjectRef:
    """The object whose spec must change: a CronJob's Job is fixed in the CronJob."""
    if found.ref.kind == "Job" and found.owner is not None and found.owner.kind == "CronJob":
        return found.owner
    return found.ref


def short(text: str, limit: int = 220) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class NodeLocalErrors:
    """Connection errors that only the workload's pods on one node log, while its pods on other
    nodes, whose logs were read and run through the trouble, log none: what they cannot reach
    answers the others, so the trouble may be on that node's side (its network, conntrack, DNS
    path), not the dependency's."""

    nodes: tuple[str, ...]
    reporting: int
    clean: int


def node_local_connection_errors(ctx: Context, found: WorkloadFindings) -> NodeLocalErrors | None:
    reporting = {e.pod for e in found.connection_errors()}
    by_ref = {p.ref: p for p in found.pods}
    bad = [by_ref[ref] for ref in reporting if ref in by_ref]
    clean = [by_ref[view.pod] for view in ctx.logs
             if view.pod in by_ref and view.pod not in reporting and by_ref[view.pod].phase == "Running"
             and _logged_since(view.lines, ctx.incident_start, ctx.now.year)]
    if not bad or not clean or any(p.node is None for p in bad + clean):
        return None
    nodes = {p.node for p in bad}
    if len(nodes) != 1 or nodes & {p.node for p in clean}:
        return None  # errors on several nodes are not one node's trouble
    return NodeLocalErrors(tuple(sorted(nodes)), len(bad), len({p.ref for p in clean}))


def _logged_since(lines: list[str], start: datetime, year: int) -> bool:
    """Whether a log tail covers the trouble: a line stamped after `start` (a tail without
    stamps is taken as current)."""
    stamps = [at for at in (parse_line(line, year).at for line in lines[-50:]) if at is not None]
    return bool(lines) and (not stamps or max(stamps) >= start)
