"""The operation registry: every change the bot can make, as a typed Python function.

A runbook step names an operation and gives it typed input (validated by the operation's own
model; a value that does not fit is refused before anything runs). `plan` reads the current
object and works out the change: the diff a person approves, the blast radius the policy
checks, and the undo (the reverse patch of exactly the fields it changes), which is captured
before the write and is what `restore.captured` applies when verification fails. `apply`
sends the change, with `dry_run=True` first. No operation takes a command string: inputs are
names, numbers and quantities, never shell.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.context.kube_facts import controller_of, parse_quantity
from bot.context.model import ObjectRef
from bot.context.rollout import REVISION_ANNOTATION
from bot.remediation.kube_write import JSON_PATCH, MERGE, STRATEGIC, KubeWriter, WriteError

NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Named(_Input):
    namespace: str = Field(pattern=NAME, max_length=63)
    name: str = Field(pattern=NAME)


class RollbackInput(Named):
    to_revision: int | None = Field(None, ge=1)


class ScaleInput(Named):
    replicas: int = Field(ge=0, le=1000)


class ResourceInput(Named):
    kind: str
    container: str = Field(pattern=NAME, max_length=63)
    limit: str = Field(pattern=QUANTITY)

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in WORKLOAD_KINDS:
            raise ValueError(f"kind must be one of {', '.join(WORKLOAD_KINDS)}")
        return value


class NodeInput(_Input):
    name: str = Field(pattern=NAME)


class ExpandInput(Named):
    size: str = Field(pattern=QUANTITY)


@dataclass
class Plan:
    operation: str
    target: ObjectRef
    summary: str
    diff: list[tuple[str, Any, Any]]
    pods_affected: int
    replica_factor: float | None = None
    undo: dict[str, Any] | None = None
    write: Callable[[KubeWriter, bool], Any] = field(repr=False, default=lambda writer, dry_run: None)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Operation:
    name: str
    mutating: bool
    input_model: type[BaseModel]
    plan: Callable[[KubeWriter, Any], Plan]
    description: str


def _replicas(obj: dict) -> int:
    return int((obj.get("spec") or {}).get("replicas", 1) or 0)


# -- deployment.rollback ---------------------------------------------------------------------------

def _plan_rollback(writer: KubeWriter, inp: RollbackInput) -> Plan:
    deployment = writer.get("Deployment", inp.namespace, inp.name)
    ref = ObjectRef("Deployment", inp.namespace, inp.name)
    sets = writer.list(f"replicasets of {ref}", writer.apps.list_namespaced_replica_set, inp.namespace)
    owned = [rs for rs in sets if controller_of(rs) == ref]
    current = int(((deployment.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, 0) or 0)
    revisions = {int(((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, 0) or 0): rs
                 for rs in owned}
    wanted = inp.to_revision or max((r for r in revisions if r < current), default=None)
    if wanted is None or wanted not in revisions:
        raise WriteError("invalid", f"{ref} has no revision {wanted or 'before ' + str(current)} to roll back to")
    template = copy.deepcopy((revisions[wanted].get("spec") or {}).get("template") or {})
    ((template.get("metadata") or {}).get("labels") or {}).pop("pod-template-hash", None)
    before = (deployment.get("spec") or {}).get("template") or {}
    images = lambda t: [c.get("image") for c in (t.get("spec") or {}).get("containers") or []]  # noqa: E731
    patch = [{"op": "replace", "path": "/spec/template", "value": template}]
    undo = {"method": "patch", "kind": "Deployment", "namespace": inp.namespace, "name": inp.name,
            "content_type": JSON_PATCH, "body": [{"op": "replace", "path": "/spec/template", "value": before}]}
    return Plan("deployment.rollback", ref, f"roll {ref} back from revision {current} to revision {wanted}",
                [("spec.template (images)", images(before), images(template))], _replicas(deployment),
                undo=undo, write=lambda w, dry: w.patch("Deployment", inp.namespace, inp.name, patch, JSON_PATCH, dry))


# -- deployment.restart ----------------------------------------------------------------------------

def _plan_restart(writer: KubeWriter, inp: Named) -> Plan:
    deployment = writer.get("Deployment", inp.namespace, inp.name)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
    ref = ObjectRef("Deployment", inp.namespace, inp.name)
    return Plan("deployment.restart", ref, f"rolling restart of {ref}",
                [("spec.template.metadata.annotations.kubectl.kubernetes.io/restartedAt", None, stamp)],
                _replicas(deployment), write=lambda w, dry: w.patch("Deployment", inp.namespace, inp.name, patch,
                                                                    STRATEGIC, dry))


# -- deployment.scale ------------------------------------------------------------------------------

def _plan_scale(writer: KubeWriter, inp: ScaleInput) -> Plan:
    """Scale the Deployment; when an HPA drives it, raise (or lower) the HPA's bounds instead,
    since the HPA would undo a direct change at its next sync."""
    deployment = writer.get("Deployment", inp.namespace, inp.name)
    ref = ObjectRef("Deployment", inp.namespace, inp.name)
    current = _replicas(deployment)
    hpas = writer.list(f"HPAs in {inp.namespace}", writer.autoscaling.list_namespaced_horizontal_pod_autoscaler,
                       inp.namespace)
    hpa = next((h for h in hpas if ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("name") == inp.name
                and ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("kind") == "Deployment"), None)
    factor = inp.replicas / current if current else float(inp.replicas or 1)
    affected = abs(inp.replicas - current)
    if hpa is not None:
        spec = hpa.get("spec") or {}
        name = (hpa.get("metadata") or {}).get("name")
        old_max, old_min = spec.get("maxReplicas"), spec.get("minReplicas", 1)
        new_min = min(old_min or 1, inp.replicas)
        patch = {"spec": {"maxReplicas": max(inp.replicas, 1), "minReplicas": max(new_min, 1)}}
        undo = {"method": "patch", "kind": "HorizontalPodAutoscaler", "namespace": inp.namespace, "name": name,
                "content_type": MERGE, "body": {"spec": {"maxReplicas": old_max, "minReplicas": old_min}}}
        return Plan("deployment.scale", ref, f"let HPA {name} scale {ref} to {inp.replicas} replicas "
                                             f"(maxReplicas {old_max} → {inp.replicas})",
                    [(f"HorizontalPodAutoscaler {name} spec.maxReplicas", old_max, inp.replicas)], affected,
                    replica_factor=inp.replicas / old_max if old_max else None, undo=undo,
                    write=lambda w, dry: w.patch("HorizontalPodAutoscaler", inp.namespace, name, patch, MERGE, dry))
    undo = {"method": "scale", "kind": "Deployment", "namespace": inp.namespace, "name": inp.name,
            "replicas": current}
    return Plan("deployment.scale", ref, f"scale {ref} from {current} to {inp.replicas} replicas",
                [("spec.replicas", current, inp.replicas)], affected, replica_factor=factor, undo=undo,
                write=lambda w, dry: w.scale("Deployment", inp.namespace, inp.name, inp.replicas, dry))


# -- container.set_memory / container.set_cpu -----------------------------------------------------

def _plan_resource(resource: str) -> Callable[[KubeWriter, ResourceInput], Plan]:
    def plan(writer: KubeWriter, inp: ResourceInput) -> Plan:
        obj = writer.get(inp.kind, inp.namespace, inp.name)
        ref = ObjectRef(inp.kind, inp.namespace, inp.name)
        containers = ((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
        container = next((c for c in containers if c.get("name") == inp.container), None)
        if container is None:
            raise WriteError("invalid", f"{ref} has no container {inp.container}")
        resources = container.get("resources") or {}
        old_limit = (resources.get("limits") or {}).get(resource)
        old_request = (resources.get("requests") or {}).get(resource)
        new_limit = inp.limit
        if old_limit and (parse_quantity(new_limit) or 0) <= (parse_quantity(str(old_limit)) or 0):
            raise WriteError("invalid", f"{inp.limit} is not above the current {resource} limit {old_limit}")
        change: dict[str, Any] = {"limits": {resource: new_limit}}
        diff = [(f"containers[{inp.container}].resources.limits.{resource}", old_limit, new_limit)]
        if old_request and (parse_quantity(str(old_request)) or 0) > (parse_quantity(new_limit) or 0):
            change["requests"] = {resource: new_limit}
            diff.append((f"containers[{inp.container}].resources.requests.{resource}", old_request, new_limit))
        patch = {"spec": {"template": {"spec": {"containers": [{"name": inp.container, "resources": change}]}}}}
        restore = {"limits": {resource: old_limit}}
        if "requests" in change:
            restore["requests"] = {resource: old_request}
        undo = {"method": "patch", "kind": inp.kind, "namespace": inp.namespace, "name": inp.name,
                "content_type": STRATEGIC,
                "body": {"spec": {"template": {"spec": {"containers": [{"name": inp.container,
                                                                        "resources": restore}]}}}}}
        pods = _replicas(obj) if inp.kind != "DaemonSet" else int((obj.get("status") or {}).get(
            "desiredNumberScheduled") or 0)
        return Plan(f"container.set_{resource}", ref,
                    f"set the {resource} limit of {inp.container} in {ref} to {new_limit} (was {old_limit or 'unset'})",
                    diff, pods, undo=undo,
                    write=lambda w, dry: w.patch(inp.kind, inp.namespace, inp.name, patch, STRATEGIC, dry))
    return plan


# -- pod.delete ------------------------------------------------------------------------------------

def _plan_delete_pod(writer: KubeWriter, inp: Named) -> Plan:
    pod = writer.get("Pod", inp.namespace, inp.name)
    owner = controller_of(pod)
    if owner is None:
        raise WriteError("invalid", f"pod {inp.namespace}/{inp.name} has no controller to replace it")
    ref = ObjectRef("Pod", inp.namespace, inp.name)
    return Plan("pod.delete", ref, f"delete pod {inp.namespace}/{inp.name} ({owner.kind} {owner.name} replaces it)",
                [("pod", inp.name, None)], 1, write=lambda w, dry: w.delete_pod(inp.namespace, inp.name, dry))


# -- node.cordon / node.drain ----------------------------------------------------------------------

def _node_pods(writer: KubeWriter, name: str) -> list[dict]:
    pods = writer.list(f"pods on {name}", writer.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={name}")
    movable = []
    for pod in pods:
        owner = controller_of(pod)
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        if owner is None or owner.kind == "DaemonSet" or "kubernetes.io/config.mirror" in annotations:
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        movable.append(pod)
    return movable


def _cordon_patch(value: bool) -> dict:
    return {"spec": {"unschedulable": value}}


def _plan_cordon(writer: KubeWriter, inp: NodeInput) -> Plan:
    node = writer.get("Node", None, inp.name)
    was = bool((node.get("spec") or {}).get("unschedulable"))
    undo = {"method": "patch", "kind": "Node", "namespace": None, "name": inp.name, "content_type": MERGE,
            "body": _cordon_patch(was)}
    return Plan("node.cordon", ObjectRef("Node", None, inp.name), f"cordon node {inp.name} (no new pods)",
                [("spec.unschedulable", was, True)], 0, undo=undo,
                write=lambda w, dry: w.patch("Node", None, inp.name, _cordon_patch(True), MERGE, dry))


def _plan_drain(writer: KubeWriter, inp: NodeInput) -> Plan:
    node = writer.get("Node", None, inp.name)
    was = bool((node.get("spec") or {}).get("unschedulable"))
    pods = _node_pods(writer, inp.name)
    names = [f"{(p.get('metadata') or {}).get('namespace')}/{(p.get('metadata') or {}).get('name')}" for p in pods]

    def write(w: KubeWriter, dry: bool) -> dict:
        w.patch("Node", None, inp.name, _cordon_patch(True), MERGE, dry)
        evicted, refused = [], []
        for pod in pods:
            meta = pod.get("metadata") or {}
            try:
                w.evict(meta.get("namespace"), meta.get("name"), dry)
                evicted.append(meta.get("name"))
            except WriteError as exc:
                if exc.kind != "refused":
                    raise
                refused.append(f"{meta.get('name')}: {exc}")
        if refused:
            raise WriteError("refused", "PodDisruptionBudgets refused evictions: " + "; ".join(refused[:5]))
        return {"evicted": evicted}
    undo = {"method": "patch", "kind": "Node", "namespace": None, "name": inp.name, "content_type": MERGE,
            "body": _cordon_patch(was)}
    return Plan("node.drain", ObjectRef("Node", None, inp.name),
                f"cordon node {inp.name} and evict its {len(pods)} pod(s), respecting PodDisruptionBudgets",
                [("spec.unschedulable", was, True), ("pods evicted", names[:10], [])], len(pods), undo=undo,
                write=write, notes=["DaemonSet and mirror pods stay"])


# -- pvc.expand ------------------------------------------------------------------------------------

def _plan_expand(writer: KubeWriter, inp: ExpandInput) -> Plan:
    claim = writer.get("PersistentVolumeClaim", inp.namespace, inp.name)
    current = ((claim.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")
    if current and (parse_quantity(inp.size) or 0) <= (parse_quantity(str(current)) or 0):
        raise WriteError("invalid", f"{inp.size} is not larger than the claim's {current}: volumes only grow")
    patch = {"spec": {"resources": {"requests": {"storage": inp.size}}}}
    ref = ObjectRef("PersistentVolumeClaim", inp.namespace, inp.name)
    return Plan("pvc.expand", ref, f"grow {ref} from {current} to {inp.size}",
                [("spec.resources.requests.storage", current, inp.size)], 0,
                write=lambda w, dry: w.patch("PersistentVolumeClaim", inp.namespace, inp.name, patch, MERGE, dry),
                notes=["a volume cannot shrink again: there is no undo"])


# -- job.rerun -------------------------------------------------------------------------------------

_JOB_GENERATED = ("controller-uid", "batch.kubernetes.io/controller-uid", "job-name", "batch.kubernetes.io/job-name")


def _plan_rerun(writer: KubeWriter, inp: Named) -> Plan:
    job = writer.get("Job", inp.namespace, inp.name)
    spec = copy.deepcopy(job.get("spec") or {})
    spec.pop("selector", None)
    spec.pop("manualSelector", None)
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    for key in _JOB_GENERATED:
        labels.pop(key, None)
    suffix = datetime.now(UTC).strftime("%H%M%S")
    name = f"{inp.name[:63 - 13]}-rerun-{suffix}"
    body = {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": inp.namespace,
                         "labels": {k: v for k, v in ((job.get("metadata") or {}).get("labels") or {}).items()
                                    if k not in _JOB_GENERATED},
                         "annotations": {"opsbot.io/rerun-of": inp.name}},
            "spec": spec}
    ref = ObjectRef("Job", inp.namespace, inp.name)
    return Plan("job.rerun", ref, f"create Job {inp.namespace}/{name} from the template of {ref}",
                [("job", None, name)], int(spec.get("parallelism", 1) or 1),
                write=lambda w, dry: w.create_job(inp.namespace, body, dry))


# -- certificate.renew ----------------------------------------------------------------------------

CERT_MANAGER_CERTIFICATES = ("cert-manager.io", "v1", "certificates")
RENEWAL_REASON = "ManuallyTriggered"  # the reason `cmctl renew` writes; cert-manager then issues anew
RENEWAL_MESSAGE = "Renewal requested through opsbot (runbook renew-certificate)"


class RenewInput(Named):
    not_after: int | None = Field(None, ge=0, description="epoch seconds of the notAfter the step was proposed "
                                                          "for; a Certificate already past it needs no renewal")


def _certificates_api(writer: KubeWriter) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(writer.core.api_client)


def _epoch_of(text: Any) -> int | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def _plan_renew(writer: KubeWriter, inp: RenewInput) -> Plan:
    """`cmctl renew`: set the Certificate's Issuing condition (True, ManuallyTriggered) through the
    status subresource; cert-manager then issues a new certificate into its Secret. Idempotent:
    a Certificate already being issued, or already renewed past `not_after`, gets no write."""
    group, version, plural = CERT_MANAGER_CERTIFICATES
    ref = ObjectRef("Certificate", inp.namespace, inp.name)
    crt = writer._call(f"read {ref}", _certificates_api(writer).get_namespaced_custom_object, group, version,
                       inp.namespace, plural, inp.name)
    status, meta = crt.get("status") or {}, crt.get("metadata") or {}
    conditions = [dict(c) for c in status.get("conditions") or [] if isinstance(c, dict)]
    issuing = next((c for c in conditions if c.get("type") == "Issuing"), None)
    before = f"{issuing.get('status')} ({issuing.get('reason')})" if issuing else None
    current = _epoch_of(status.get("notAfter"))
    notes = [f"notAfter now {status.get('notAfter') or 'unset'}; there is no undo: a certificate once issued "
             "stays issued", "pods that read the certificate only at start-up keep the old one until restarted"]
    if inp.not_after is not None and current is not None and current > inp.not_after:
        return Plan("certificate.renew", ref, f"nothing to do: {ref} was already renewed (notAfter "
                                              f"{status.get('notAfter')})", [], 0, notes=notes)
    if issuing is not None and issuing.get("status") == "True":
        return Plan("certificate.renew", ref, f"nothing to do: cert-manager is already issuing {ref} "
                                              f"({issuing.get('reason')})", [], 0, notes=notes)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"type": "Issuing", "status": "True", "reason": RENEWAL_REASON, "message": RENEWAL_MESSAGE,
                 "lastTransitionTime": stamp}
    if meta.get("generation") is not None:
        condition["observedGeneration"] = meta["generation"]
    body = {"metadata": {"resourceVersion": meta.get("resourceVersion")},  # a concurrent status write: 409
            "status": {"conditions": [c for c in conditions if c.get("type") != "Issuing"] + [condition]}}

    def write(w: KubeWriter, dry: bool) -> dict[str, Any]:
        return w._call(f"patch {ref} status", _certificates_api(w).patch_namespaced_custom_object_status, group,
                       version, inp.namespace, plural, inp.name, body, _content_type=MERGE,
                       **({"dry_run": "All"} if dry else {}))
    return Plan("certificate.renew", ref, f"ask cert-manager to renew {ref} now (Issuing condition, as cmctl renew)",
                [("status.conditions[Issuing]", before, f"True ({RENEWAL_REASON})")], 0, write=write, notes=notes)


REGISTRY: dict[str, Operation] = {op.name: op for op in (
    Operation("deployment.rollback", True, RollbackInput, _plan_rollback,
              "replace a Deployment's pod template with a previous revision's"),
    Operation("deployment.restart", True, Named, _plan_restart, "rolling restart of a Deployment"),
    Operation("deployment.scale", True, ScaleInput, _plan_scale,
              "change a Deployment's replicas (its HPA's bounds when it has one)"),
    Operation("container.set_memory", True, ResourceInput, _plan_resource("memory"),
              "raise one container's memory limit"),
    Operation("container.set_cpu", True, ResourceInput, _plan_resource("cpu"), "raise one container's CPU limit"),
    Operation("pod.delete", True, Named, _plan_delete_pod, "delete one pod so that its controller replaces it"),
    Operation("node.cordon", True, NodeInput, _plan_cordon, "mark a node unschedulable"),
    Operation("node.drain", True, NodeInput, _plan_drain, "cordon a node and evict its pods (PDBs respected)"),
    Operation("pvc.expand", True, ExpandInput, _plan_expand, "grow a PersistentVolumeClaim"),
    Operation("job.rerun", True, Named, _plan_rerun, "create a fresh Job from a failed Job's template"),
    Operation("certificate.renew", True, RenewInput, _plan_renew,
              "ask cert-manager to renew a Certificate now (its Issuing condition, as cmctl renew)"),
)}
RESTORE = "restore.captured"  # a rollback that applies the undo captured before the step


class InputError(ValueError):
    pass


def validate_input(operation: str, values: dict[str, Any], registry: dict[str, Any] | None = None) -> BaseModel:
    """The operation's typed input, or InputError naming what does not fit. `registry`: another
    family's operations with the same `input_model` (`sql_operations.REGISTRY`)."""
    op = (REGISTRY if registry is None else registry).get(operation)
    if op is None:
        raise InputError(f"unknown operation {operation!r}")
    try:
        return op.input_model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"{operation}: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def plan(writer: KubeWriter, operation: str, values: dict[str, Any]) -> Plan:
    return REGISTRY[operation].plan(writer, validate_input(operation, values))


def apply_undo(writer: KubeWriter, undo: dict[str, Any], dry_run: bool = False) -> Any:
    """Apply a captured undo (see `Plan.undo`)."""
    if undo["method"] == "scale":
        return writer.scale(undo["kind"], undo["namespace"], undo["name"], int(undo["replicas"]), dry_run)
    return writer.patch(undo["kind"], undo["namespace"], undo["name"], undo["body"], undo["content_type"], dry_run)
