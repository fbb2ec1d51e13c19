"""Typed evidence: what the gatherers found, as plain data the analyzers read.

Invariants:
- every fact keeps the words the cluster used (reasons, messages, quantities such as "512Mi"
  exactly as written in the manifest), so the RCA can quote them;
- text that came from the cluster (event messages, log lines, annotations) is untrusted: it is
  stored as data, never interpreted, and redacted before it leaves the process;
- a gatherer that could not check something says so in `Gap` instead of failing: "checked and
  found nothing" (an empty list) and "could not check" (a gap) are never confused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, order=True)
class ObjectRef:
    """A Kubernetes object: `Kind/namespace/name`, or `Kind/name` when cluster-scoped."""

    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Gap:
    """Something a gatherer could not check, and why (timeout, forbidden, not found, down)."""

    what: str
    why: str


@dataclass(frozen=True)
class AlertView:
    name: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None = None


@dataclass(frozen=True)
class ContainerView:
    """One container of a pod: spec and status together."""

    name: str
    image: str
    init: bool
    ready: bool
    restarts: int
    state: str  # running | waiting | terminated | unknown
    reason: str | None  # waiting or terminated reason of the current state
    message: str | None
    exit_code: int | None
    started_at: datetime | None
    finished_at: datetime | None
    last_reason: str | None  # lastState.terminated
    last_exit_code: int | None
    last_message: str | None
    last_started_at: datetime | None
    last_finished_at: datetime | None
    limits: dict[str, str]
    requests: dict[str, str]
    mounts: dict[str, str]  # mount path -> volume name


@dataclass(frozen=True)
class VolumeView:
    name: str
    kind: str  # secret | configMap | persistentVolumeClaim | emptyDir | projected | hostPath | other
    source: str | None  # the secret / configmap / claim name


@dataclass
class PodView:
    ref: ObjectRef
    phase: str
    reason: str | None  # status.reason, e.g. Evicted
    message: str | None
    node: str | None
    owner: ObjectRef | None  # the controller (ReplicaSet, Job, StatefulSet, DaemonSet, Node)
    workload: ObjectRef | None  # the top owner (Deployment, StatefulSet, DaemonSet, CronJob, Job)
    revision_hash: str | None  # pod-template-hash or controller-revision-hash
    created_at: datetime | None
    deleting: bool
    conditions: dict[str, tuple[str, str | None, str | None]]  # type -> (status, reason, message)
    containers: list[ContainerView]
    volumes: list[VolumeView]
    labels: dict[str, str]
    spec: dict[str, Any]
    ip: str | None = None

    @property
    def ready(self) -> bool:
        return self.conditions.get("Ready", ("False", None, None))[0] == "True"


@dataclass
class WorkloadView:
    """A Deployment, StatefulSet, DaemonSet, Job or CronJob."""

    ref: ObjectRef
    desired: int | None
    ready: int | None
    available: int | None
    updated: int | None
    conditions: dict[str, tuple[str, str | None, str | None]]
    created_at: datetime | None
    template: dict[str, Any]  # the pod template (metadata + spec)
    selector: dict[str, str]
    annotations: dict[str, str]
    raw: dict[str, Any]


@dataclass(frozen=True)
class TemplateChange:
    """One difference between the previous and the current pod template."""

    path: str  # e.g. "containers[api].image", "containers[api].env.SETTLEMENT_REGION"
    before: Any
    after: Any


@dataclass(frozen=True)
class Revision:
    number: int
    name: str  # the ReplicaSet or ControllerRevision
    hash: str | None
    created_at: datetime | None
    template: dict[str, Any]
    replicas: int
    ready: int


@dataclass
class RolloutView:
    workload: ObjectRef
    revisions: list[Revision]  # oldest first
    current: Revision | None
    previous: Revision | None
    changes: list[TemplateChange]
    in_progress: bool

    def image_of(self, revision: Revision | None) -> list[str]:
        if revision is None:
            return []
        return [c.get("image", "") for c in revision.template.get("spec", {}).get("containers", [])]


@dataclass(frozen=True)
class EventView:
    involved: ObjectRef
    type: str
    reason: str
    message: str
    count: int
    first_at: datetime | None
    last_at: datetime | None
    stale: bool  # last seen well before the incident began


@dataclass(frozen=True)
class LogTemplate:
    template: str
    count: int
    example: str
    level: str  # error | warn | info | other
    recent: int  # occurrences in the incident window
    baseline: int  # occurrences before it
    jumped: bool


@dataclass
class LogView:
    pod: ObjectRef
    container: str
    previous: bool
    lines: list[str]  # the kept tail, redacted
    templates: list[LogTemplate]
    truncated: bool


@dataclass
class NodeView:
    name: str
    conditions: dict[str, tuple[str, str | None, str | None, datetime | None]]  # type -> (status, reason, msg, since)
    taints: list[dict[str, Any]]
    unschedulable: bool
    allocatable: dict[str, str]
    labels: dict[str, str]
    addresses: list[str] = field(default_factory=list)  # status.addresses (InternalIP, Hostname, ...)

    @property
    def ready(self) -> bool:
        return self.conditions.get("Ready", ("Unknown", None, None, None))[0] == "True"


@dataclass
class ClaimView:
    ref: ObjectRef
    phase: str
    storage_class: str | None
    storage_class_exists: bool | None  # None: could not check
    expandable: bool | None
    requested: str | None
    capacity: str | None
    volume: str | None


@dataclass
class QuotaView:
    ref: ObjectRef
    hard: dict[str, str]
    used: dict[str, str]


@dataclass
class LimitRangeView:
    ref: ObjectRef
    limits: list[dict[str, Any]]


@dataclass
class HpaView:
    ref: ObjectRef
    target: ObjectRef | None
    min_replicas: int | None
    max_replicas: int | None
    current: int | None
    desired: int | None
    conditions: dict[str, tuple[str, str | None, str | None]]


@dataclass
class ServiceView:
    ref: ObjectRef
    selector: dict[str, str]
    ports: list[int]
    ready_endpoints: int | None  # None: could not check
    not_ready_endpoints: int | None
    external_name: str | None = None
    cluster_ip: str | None = None
    target_ports: dict[int, int | str] = field(default_factory=dict)  # port -> targetPort (number or name)


@dataclass
class DependencyView:
    """Something the workload's error lines say it could not reach."""

    host: str
    port: int | None
    mentions: int  # error lines naming it
    example: str  # one such line (redacted)
    pods: list[ObjectRef]  # the pods whose logs name it
    service: ObjectRef | None = None  # the in-cluster Service the host resolves to, when it does
    ready_endpoints: int | None = None
    backends: list[ObjectRef] = field(default_factory=list)  # workloads behind the Service


@dataclass
class NetworkPolicyView:
    """A NetworkPolicy as written: which pods it selects and what it lets through."""

    ref: ObjectRef
    pod_selector: dict[str, Any]  # {matchLabels, matchExpressions}; empty selects every pod
    policy_types: list[str]  # Ingress and/or Egress (as the API server defaults them)
    ingress: list[dict[str, Any]]  # rules: {from: [peers], ports: [...]}
    egress: list[dict[str, Any]]  # rules: {to: [peers], ports: [...]}
    created_at: datetime | None


@dataclass(frozen=True)
class WebhookView:
    """One admission webhook of a Validating/MutatingWebhookConfiguration."""

    configuration: ObjectRef  # cluster-scoped: Kind/name
    name: str
    failure_policy: str
    service: ObjectRef | None


@dataclass(frozen=True)
class ApiServiceView:
    """An aggregated API (apiregistration.k8s.io APIService) and the Service behind it."""

    name: str
    service: ObjectRef | None
    available: tuple[str, str | None, str | None] | None  # (status, reason, message)


@dataclass(frozen=True)
class ChangePoint:
    at: datetime
    before: float
    after: float

    @property
    def ratio(self) -> float:
        return self.after / self.before if self.before else float("inf") if self.after else 1.0


@dataclass
class Signal:
    """One key metric around the alert: a PromQL query and what it returned."""

    key: str  # e.g. "memory_vs_limit", "error_ratio"
    title: str
    query: str
    unit: str  # "ratio", "bytes", "count", "seconds", "per_second", "replicas"
    points: list[tuple[datetime, float]]
    labels: dict[str, str] = field(default_factory=dict)
    change: ChangePoint | None = None
    subject: ObjectRef | None = None  # the workload it was asked about (None: not one workload's)

    @property
    def latest(self) -> float | None:
        return self.points[-1][1] if self.points else None

    @property
    def peak(self) -> float | None:
        return max((v for _, v in self.points), default=None)

    @property
    def lowest(self) -> float | None:
        return min((v for _, v in self.points), default=None)


@dataclass
class Subject:
    """What the alerts are about."""

    namespaces: list[str]
    pods: list[ObjectRef]
    workloads: list[ObjectRef]
    nodes: list[str]
    claims: list[ObjectRef]
    other: list[ObjectRef]
    heartbeat: bool = False
    # labels that name no Kubernetes object by convention but may lead to one (`service`, `job`,
    # `app`, `instance`...): label -> values, read by `bot.context.locate`
    hints: dict[str, list[str]] = field(default_factory=dict)
    located: list[str] = field(default_factory=list)  # how hints were mapped, in words

    @property
    def empty(self) -> bool:
        return not (self.namespaces or self.pods or self.workloads or self.nodes or self.claims or self.other)

    @property
    def names_objects(self) -> bool:
        """The alerts name an object (not only a namespace)."""
        return bool(self.pods or self.workloads or self.nodes or self.claims or self.other)

    @property
    def investigable(self) -> bool:
        return not self.empty or bool(self.hints)


@dataclass
class Context:
    """Everything one investigation gathered."""

    now: datetime
    cluster: str | None
    alerts: list[AlertView]
    subject: Subject
    incident_start: datetime
    focus: list[ObjectRef] = field(default_factory=list)  # the workloads the investigation is about
    pods: list[PodView] = field(default_factory=list)
    workloads: list[WorkloadView] = field(default_factory=list)
    rollouts: list[RolloutView] = field(default_factory=list)
    events: list[EventView] = field(default_factory=list)
    logs: list[LogView] = field(default_factory=list)
    nodes: list[NodeView] = field(default_factory=list)
    claims: list[ClaimView] = field(default_factory=list)
    quotas: list[QuotaView] = field(default_factory=list)
    limit_ranges: list[LimitRangeView] = field(default_factory=list)
    hpas: list[HpaView] = field(default_factory=list)
    services: list[ServiceView] = field(default_factory=list)
    dependencies: list[DependencyView] = field(default_factory=list)
    api_services: list[ApiServiceView] = field(default_factory=list)
    network_policies: list[NetworkPolicyView] | None = None  # None: could not be read
    webhooks: list[WebhookView] = field(default_factory=list)  # read when a create failed calling one
    config_maps: dict[ObjectRef, dict[str, str]] = field(default_factory=dict)
    storage_classes: dict[str, dict[str, Any]] | None = None  # None: could not be read
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)  # the namespaces read
    upstream: list[ObjectRef] = field(default_factory=list)  # dependency workloads the focus' errors lead to
    secret_names: set[ObjectRef] | None = None  # None: not read (no RBAC for Secrets by design)
    signals: list[Signal] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def workload(self, ref: ObjectRef | None) -> WorkloadView | None:
        return next((w for w in self.workloads if w.ref == ref), None)

    def rollout(self, ref: ObjectRef | None) -> RolloutView | None:
        return next((r for r in self.rollouts if r.workload == ref), None)

    def node(self, name: str | None) -> NodeView | None:
        return next((n for n in self.nodes if n.name == name), None)

    def signal(self, key: str, workload: ObjectRef | None = None) -> list[Signal]:
        """Signals of `key`; with `workload`, only its own and those of no one workload."""
        return [s for s in self.signals if s.key == key and (workload is None or s.subject in (None, workload))]

    def events_for(self, ref: ObjectRef) -> list[EventView]:
        return [e for e in self.events if e.involved == ref]

    def logs_for(self, pod: ObjectRef) -> list[LogView]:
        return [log for log in self.logs if log.pod == pod]
