"""Defaulting and validation of writes, as the real API server's registry strategies do them.

`prepare_create` and `prepare_update` take the object a client sent and return the object that
would be stored, or raise `ApiError` with the status a real API server answers: 400 for a
mismatched name/namespace or a resourceVersion on create, 409 for a stale resourceVersion, 422
for invalid fields (selector not matching the template labels, negative replicas, immutable
fields, a Job copied with its old selector, a PVC shrink), 403 for resizing a PVC whose
StorageClass does not allow expansion. What is stored is what a real API server stores: container
resource quantities in canonical form (`quantity`: `1024Mi` reads back `1Gi`), a Node's false
`spec.unschedulable` left out.

Invariants kept for every kind: uid and creationTimestamp are the server's; `metadata.generation`
increases exactly when something outside metadata and status changes; a write to the main
resource of a kind with a status subresource keeps the stored status, and a write to `/status`
changes nothing but the status.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

from bot.sandbox.kube.errors import ApiError, bad_request, conflict, invalid
from bot.sandbox.kube.quantity import canonical_resources
from bot.sandbox.kube.resources import ResourceType
from bot.sandbox.kube.selectors import match_label_selector
from bot.sandbox.kube.store import Naming

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_WORKLOADS = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"})
_JOB_LABELS = (
    "batch.kubernetes.io/controller-uid",
    "controller-uid",
    "batch.kubernetes.io/job-name",
    "job-name",
)
_POD_MUTABLE_MESSAGE = (
    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def _generation_tracked(obj: dict[str, Any]) -> bool:
    return any(key not in ("apiVersion", "kind", "metadata", "status") for key in obj)


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}


def _check_name(rt: ResourceType, name: str) -> None:
    if len(name) > 253 or not _NAME_RE.match(name):
        raise invalid(
            rt,
            name,
            "metadata.name",
            f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
            "characters, '-' or '.', and must start and end with an alphanumeric character",
        )


def prepare_create(
    rt: ResourceType,
    body: Any,
    namespace: str | None,
    naming: Naming,
    now: str,
    name_taken: Callable[[str], bool],
) -> dict[str, Any]:
    """The object to store for a create request (system fields filled, defaults applied)."""
    if not isinstance(body, dict):
        raise bad_request("the body of the request must be a JSON object")
    obj = copy.deepcopy(body)
    if obj.get("kind") not in (None, rt.kind):
        raise bad_request(
            f"the kind in the data ({obj.get('kind')}) does not match the expected kind ({rt.kind})"
        )
    if obj.get("apiVersion") not in (None, rt.api_version) and rt.builtin:
        group = str(obj.get("apiVersion")).rpartition("/")[0]
        if group != rt.group:
            raise bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) does not match the expected API version ({rt.api_version})"
            )
    obj["apiVersion"] = obj.get("apiVersion") or rt.api_version
    obj["kind"] = rt.kind
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    if meta.get("resourceVersion"):
        raise bad_request("resourceVersion should not be set on objects to be created")
    if not meta.get("name"):
        prefix = meta.get("generateName")
        if not prefix:
            raise invalid(rt, "", "metadata.name", "Required value: name or generateName is required")
        while True:
            candidate = f"{prefix}{naming.suffix()}"
            if not name_taken(candidate):
                meta["name"] = candidate
                break
    _check_name(rt, meta["name"])
    if rt.namespaced:
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    meta["uid"] = naming.uid()
    meta["creationTimestamp"] = now
    for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"):
        meta.pop(field, None)
    if _generation_tracked(obj):
        meta["generation"] = 1
    else:
        meta.pop("generation", None)
    if rt.builtin and "status" in rt.subresources:
        obj.pop("status", None)
    _default_and_validate(rt, obj, None)
    return obj


def prepare_update(
    rt: ResourceType,
    current: dict[str, Any],
    body: Any,
    subresource: str | None,
    storage_class: Callable[[str], dict[str, Any] | None],
) -> dict[str, Any]:
    """The object to store for an update (PUT, or the result of a patch) of `current`."""
    if not isinstance(body, dict):
        raise bad_request("the body of the request must be a JSON object")
    cur_meta = current.get("metadata") or {}
    name = cur_meta.get("name", "")
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    if meta.get("name") not in (None, name):
        raise bad_request(
            f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
        )
    if rt.namespaced and meta.get("namespace") not in (None, "", cur_meta.get("namespace")):
        raise bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    if meta.get("uid") not in (None, "", cur_meta.get("uid")):
        raise ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {rt.qualified} "{name}": Precondition failed: '
            f"UID in precondition: {meta.get('uid')}, UID in object meta: {cur_meta.get('uid')}",
            {"name": name, "kind": rt.plural},
        )
    if meta.get("resourceVersion") not in (None, "") and str(meta["resourceVersion"]) != str(
        cur_meta.get("resourceVersion")
    ):
        raise conflict(rt, name)
    if subresource == "status":
        obj = copy.deepcopy(current)
        obj["status"] = copy.deepcopy(body.get("status"))
        if obj["status"] is None:
            obj.pop("status")
        return obj
    obj = copy.deepcopy(body)
    obj["apiVersion"] = current.get("apiVersion") or rt.api_version
    obj["kind"] = rt.kind
    new_meta = obj.setdefault("metadata", {})
    for field in (
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "generation",
        "resourceVersion",
    ):
        if field in cur_meta:
            new_meta[field] = copy.deepcopy(cur_meta[field])
        else:
            new_meta.pop(field, None)
    if rt.builtin and "status" in rt.subresources:
        if "status" in current:
            obj["status"] = copy.deepcopy(current["status"])
        else:
            obj.pop("status", None)
    _validate_transition(rt, current, obj, storage_class)
    _default_and_validate(rt, obj, current)
    if _content(obj) != _content(current):
        if "generation" in new_meta:
            new_meta["generation"] = int(new_meta["generation"]) + 1
        elif rt.kind in _WORKLOADS or rt.kind in ("Job", "CronJob") or not rt.builtin:
            new_meta["generation"] = 2
    return obj


# Kind-specific rules -----------------------------------------------------------------------------


def _default_and_validate(rt: ResourceType, obj: dict[str, Any], current: dict[str, Any] | None) -> None:
    if not rt.builtin:
        return
    name = obj["metadata"].get("name", "")
    spec = obj.get("spec")
    if rt.kind in _WORKLOADS or rt.kind == "Job":
        if not isinstance(spec, dict):
            raise invalid(rt, name, "spec", "Required value")
        if rt.kind == "Job":
            _default_job(rt, obj, current)
        else:
            _default_workload(rt, obj)
        _validate_pod_template(rt, name, spec.get("template"), "spec.template")
    elif rt.kind == "Pod":
        if not isinstance(spec, dict):
            raise invalid(rt, name, "spec", "Required value")
        _validate_pod_spec(rt, name, spec, "spec")
    elif rt.kind == "Namespace":
        obj.setdefault("metadata", {}).setdefault("labels", {})["kubernetes.io/metadata.name"] = name
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {"phase": "Active"})
    elif rt.kind == "Node" and isinstance(spec, dict) and spec.get("unschedulable") is False:
        del spec["unschedulable"]  # omitempty: a real API server never returns it false
    elif rt.kind == "CronJob" and isinstance(spec, dict):
        spec.setdefault("suspend", False)
        spec.setdefault("concurrencyPolicy", "Allow")


def _default_workload(rt: ResourceType, obj: dict[str, Any]) -> None:
    spec = obj["spec"]
    name = obj["metadata"].get("name", "")
    if rt.kind != "DaemonSet":
        spec.setdefault("replicas", 1)
        if not isinstance(spec["replicas"], int) or spec["replicas"] < 0:
            raise invalid(
                rt,
                name,
                "spec.replicas",
                f"Invalid value: {spec['replicas']}: must be greater than or equal to 0",
            )
    spec.setdefault("revisionHistoryLimit", 10)
    if rt.kind == "Deployment":
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxSurge", "25%")
            rolling.setdefault("maxUnavailable", "25%")
    elif rt.kind == "StatefulSet":
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    selector = spec.get("selector")
    if not selector:
        raise invalid(rt, name, "spec.selector", "Required value")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not match_label_selector(selector, labels):
        raise invalid(
            rt,
            name,
            "spec.template.metadata.labels",
            f"Invalid value: {labels}: `selector` does not match template `labels`",
        )


def _default_job(rt: ResourceType, obj: dict[str, Any], current: dict[str, Any] | None) -> None:
    spec = obj["spec"]
    meta = obj["metadata"]
    name = meta.get("name", "")
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("completions") is None and current is None:
        spec["completions"] = 1
    if current is not None or spec.get("manualSelector"):
        return
    uid = meta["uid"]
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    labels = template_meta.setdefault("labels", {})
    labels.update({_JOB_LABELS[0]: uid, _JOB_LABELS[1]: uid, _JOB_LABELS[2]: name, _JOB_LABELS[3]: name})
    generated = {"matchLabels": {_JOB_LABELS[0]: uid}}
    if spec.get("selector") is None:
        spec["selector"] = generated
    elif spec["selector"] != generated:
        raise invalid(
            rt, name, "spec.selector", f"Invalid value: {spec['selector']}: `selector` not auto-generated"
        )
    restart = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
    if restart not in ("Never", "OnFailure"):
        raise invalid(
            rt, name, "spec.template.spec.restartPolicy", 'Required value: valid values: "OnFailure", "Never"'
        )


def _validate_pod_template(rt: ResourceType, name: str, template: Any, field: str) -> None:
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
        raise invalid(rt, name, f"{field}.spec", "Required value")
    _validate_pod_spec(rt, name, template["spec"], f"{field}.spec")


def _validate_pod_spec(rt: ResourceType, name: str, spec: dict[str, Any], field: str) -> None:
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise invalid(rt, name, f"{field}.containers", "Required value")
    seen: set[str] = set()
    for index, container in enumerate(containers + list(spec.get("initContainers") or [])):
        if not isinstance(container, dict) or not container.get("name"):
            raise invalid(rt, name, f"{field}.containers[{index}].name", "Required value")
        if container["name"] in seen:
            raise invalid(
                rt, name, f"{field}.containers[{index}].name", f'Duplicate value: "{container["name"]}"'
            )
        seen.add(container["name"])
        if not container.get("image") and rt.kind not in _WORKLOADS and rt.kind != "Job":
            raise invalid(rt, name, f"{field}.containers[{index}].image", "Required value")
        for key in ("requests", "limits"):
            for resource, quantity in ((container.get("resources") or {}).get(key) or {}).items():
                try:
                    parse_quantity(quantity)
                except ValueError as exc:
                    raise invalid(
                        rt,
                        name,
                        f"{field}.containers[{index}].resources.{key}[{resource}]",
                        f'Invalid value: "{quantity}": quantities must match the regular expression',
                    ) from exc
        canonical_resources(container.get("resources"))  # stored as a real API server stores them


def _quantity(value: Any) -> Decimal | None:
    try:
        return Decimal(parse_quantity(value)) if value is not None else None
    except ValueError:
        return None


def _validate_transition(
    rt: ResourceType,
    current: dict[str, Any],
    new: dict[str, Any],
    storage_class: Callable[[str], dict[str, Any] | None],
) -> None:
    """Rules about what an update may change."""
    if not rt.builtin:
        return
    name = current["metadata"].get("name", "")
    old_spec, new_spec = current.get("spec") or {}, new.get("spec") or {}
    if rt.kind in _WORKLOADS and old_spec.get("selector") != new_spec.get("selector"):
        raise invalid(
            rt, name, "spec.selector", f"Invalid value: {new_spec.get('selector')}: field is immutable"
        )
    if rt.kind == "Job":
        for field in ("selector", "template"):
            if old_spec.get(field) != new_spec.get(field):
                raise invalid(rt, name, f"spec.{field}", "Invalid value: field is immutable")
    if rt.kind == "Pod":
        _validate_pod_update(rt, name, old_spec, new_spec)
    if rt.kind == "PersistentVolumeClaim":
        _validate_pvc_update(rt, name, current, new, storage_class)


def _without_images(spec: dict[str, Any]) -> dict[str, Any]:
    clean = copy.deepcopy(spec)
    for field in ("containers", "initContainers"):
        for container in clean.get(field) or []:
            container.pop("image", None)
    for field in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        clean.pop(field, None)
    return clean


def _validate_pod_update(
    rt: ResourceType, name: str, old_spec: dict[str, Any], new_spec: dict[str, Any]
) -> None:
    if _without_images(old_spec) != _without_images(new_spec):
        raise invalid(rt, name, "spec", _POD_MUTABLE_MESSAGE)
    old_tolerations = old_spec.get("tolerations") or []
    new_tolerations = new_spec.get("tolerations") or []
    if any(t not in new_tolerations for t in old_tolerations):
        raise invalid(rt, name, "spec.tolerations", _POD_MUTABLE_MESSAGE)


def _validate_pvc_update(
    rt: ResourceType,
    name: str,
    current: dict[str, Any],
    new: dict[str, Any],
    storage_class: Callable[[str], dict[str, Any] | None],
) -> None:
    old_spec, new_spec = current.get("spec") or {}, new.get("spec") or {}
    old_size = ((old_spec.get("resources") or {}).get("requests") or {}).get("storage")
    new_size = ((new_spec.get("resources") or {}).get("requests") or {}).get("storage")
    strip = {k: v for k, v in old_spec.items() if k not in ("resources", "volumeAttributesClassName")}
    if strip != {k: v for k, v in new_spec.items() if k not in ("resources", "volumeAttributesClassName")}:
        raise invalid(
            rt,
            name,
            "spec",
            "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        )
    if old_size == new_size:
        return
    old_q, new_q = _quantity(old_size), _quantity(new_size)
    if new_q is None:
        raise invalid(
            rt,
            name,
            "spec.resources.requests[storage]",
            f'Invalid value: "{new_size}": quantities must match the regular expression',
        )
    if old_q is not None and new_q < old_q:
        raise invalid(
            rt,
            name,
            "spec.resources.requests.storage",
            "Forbidden: field can not be less than status.capacity",
        )
    class_name = new_spec.get("storageClassName")
    sc = storage_class(class_name) if class_name else None
    if (current.get("status") or {}).get("phase") == "Bound" and not (sc and sc.get("allowVolumeExpansion")):
        raise ApiError(
            403,
            "Forbidden",
            f'persistentvolumeclaims "{name}" is forbidden: only dynamically provisioned pvc can be resized and '
            "the storageclass that provisions the pvc must support resize",
            {"name": name, "kind": "persistentvolumeclaims"},
        )
