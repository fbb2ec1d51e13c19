"""The REST verbs on objects: get, list, create, update, patch, delete, deletecollection.

Each function runs under the cluster lock (the caller holds it), validates like a real API server
(`admission`), and on success commits to the store and lets the controllers react before it
returns, so the response and any later read agree. With `dry_run` everything up to the commit
happens and nothing is stored.

Responses are shaped as a real API server shapes them: objects carry apiVersion/kind; list items
of built-in kinds do not (custom resources' do); deleting a pod or a custom resource returns the
object, deleting other kinds returns a `Status`.
"""

from __future__ import annotations

import copy
from typing import Any

from bot.sandbox.kube import admission
from bot.sandbox.kube.cluster import SandboxCluster
from bot.sandbox.kube.errors import (
    ApiError,
    already_exists,
    conflict,
    namespace_not_found,
    not_found,
    unsupported_media_type,
)
from bot.sandbox.kube.patch import STRATEGIC_MERGE_PATCH, apply_patch
from bot.sandbox.kube.resources import ResourceType
from bot.sandbox.kube.selectors import fields_match, labels_match, parse_field_selector, parse_label_selector

_RETURNS_DELETED_OBJECT = frozenset({"Pod", "Namespace"})


def _ns(rt: ResourceType, namespace: str | None) -> str:
    return (namespace or "") if rt.namespaced else ""


def present(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored object as served under `rt` (its apiVersion, or a converted view)."""
    if rt.group == "events.k8s.io":
        return _as_events_v1(obj)
    result = copy.deepcopy(obj)
    result["apiVersion"] = rt.api_version
    result["kind"] = rt.kind
    return result


def _as_events_v1(event: dict[str, Any]) -> dict[str, Any]:
    """The events.k8s.io/v1 view of a core/v1 Event (eventTime falls back to the first timestamp)."""
    source = event.get("source") or {}
    first = event.get("firstTimestamp")
    view: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": copy.deepcopy(event.get("metadata") or {}),
        "eventTime": event.get("eventTime") or _micro(first or event.get("lastTimestamp")),
        "reportingController": event.get("reportingComponent") or source.get("component") or "",
        "reportingInstance": event.get("reportingInstance") or source.get("host") or "",
        "action": event.get("action") or event.get("reason"),
        "reason": event.get("reason"),
        "regarding": copy.deepcopy(event.get("involvedObject") or {}),
        "note": event.get("message"),
        "type": event.get("type"),
        "deprecatedSource": copy.deepcopy(source) or None,
        "deprecatedFirstTimestamp": first,
        "deprecatedLastTimestamp": event.get("lastTimestamp"),
        "deprecatedCount": event.get("count"),
    }
    if event.get("related"):
        view["related"] = copy.deepcopy(event["related"])
    if event.get("series"):
        view["series"] = copy.deepcopy(event["series"])
    return {k: v for k, v in view.items() if v is not None}


def _micro(timestamp: str | None) -> str | None:
    if not timestamp:
        return None
    return timestamp.replace("Z", ".000000Z") if "." not in timestamp else timestamp


def _require(cluster: SandboxCluster, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
    obj = cluster.store.get(rt.storage_key, _ns(rt, namespace), name)
    if obj is None:
        raise not_found(rt, name)
    return obj


def get_object(cluster: SandboxCluster, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
    return present(rt, _require(cluster, rt, namespace, name))


def list_objects(
    cluster: SandboxCluster,
    rt: ResourceType,
    namespace: str | None,
    label_selector: str | None,
    field_selector: str | None,
) -> dict[str, Any]:
    """An `XList` of the matching objects; `namespace` None lists every namespace."""
    labels = parse_label_selector(label_selector)
    fields = parse_field_selector(field_selector, rt.kind)
    items = []
    for obj in cluster.store.items(rt.storage_key, namespace if rt.namespaced else None):
        if not labels_match(labels, (obj.get("metadata") or {}).get("labels")):
            continue
        if not fields_match(fields, obj):
            continue
        item = present(rt, obj)
        if rt.builtin:
            item.pop("apiVersion", None)
            item.pop("kind", None)
        items.append(item)
    return {
        "apiVersion": rt.api_version,
        "kind": f"{rt.kind}List",
        "metadata": {"resourceVersion": str(cluster.store.resource_version)},
        "items": items,
    }


def create_object(
    cluster: SandboxCluster, rt: ResourceType, namespace: str | None, body: Any, dry_run: bool
) -> dict[str, Any]:
    """Create; 409 AlreadyExists when the name is taken, 404 when the namespace does not exist."""
    if rt.namespaced and not cluster.namespace_exists(namespace or ""):
        raise namespace_not_found(namespace or "")
    obj = admission.prepare_create(
        rt,
        body,
        namespace,
        cluster.naming,
        cluster.now_text(),
        lambda candidate: cluster.store.get(rt.storage_key, _ns(rt, namespace), candidate) is not None,
    )
    name = obj["metadata"]["name"]
    if cluster.store.get(rt.storage_key, _ns(rt, namespace), name) is not None:
        raise already_exists(rt, name)
    if dry_run:
        return present(rt, obj)
    cluster.store.put(rt.storage_key, obj)
    cluster.controller.after_write(rt.kind, None, obj)
    return present(rt, obj)


def _storage_class(cluster: SandboxCluster, name: str) -> dict[str, Any] | None:
    return cluster.store.get(("storage.k8s.io", "storageclasses"), "", name)


def commit_update(
    cluster: SandboxCluster,
    rt: ResourceType,
    current: dict[str, Any],
    body: Any,
    subresource: str | None,
    dry_run: bool,
) -> dict[str, Any]:
    """Validate `body` as the new state of `current` and, unless dry-run, store it and reconcile."""
    updated = admission.prepare_update(rt, current, body, subresource, lambda n: _storage_class(cluster, n))
    if dry_run:
        return present(rt, updated)
    old = copy.deepcopy(current)
    cluster.store.put(rt.storage_key, updated)
    if subresource == "status":
        cluster.controller.after_status_write(rt.kind, updated)
    else:
        cluster.controller.after_write(rt.kind, old, updated)
    meta = updated["metadata"]
    return present(
        rt, cluster.store.get(rt.storage_key, meta.get("namespace") or "", meta["name"]) or updated
    )


def update_object(
    cluster: SandboxCluster,
    rt: ResourceType,
    namespace: str | None,
    name: str,
    body: Any,
    subresource: str | None,
    dry_run: bool,
) -> dict[str, Any]:
    """PUT: replace the object (or its status); a stale metadata.resourceVersion is a 409."""
    current = _require(cluster, rt, namespace, name)
    return commit_update(cluster, rt, current, body, subresource, dry_run)


def patch_object(
    cluster: SandboxCluster,
    rt: ResourceType,
    namespace: str | None,
    name: str,
    patch: Any,
    content_type: str,
    subresource: str | None,
    dry_run: bool,
) -> dict[str, Any]:
    """PATCH in any of the three formats; custom resources refuse strategic merge (415) as on a real server."""
    if not rt.builtin and content_type.split(";")[0].strip() == STRATEGIC_MERGE_PATCH:
        raise unsupported_media_type(content_type)
    current = _require(cluster, rt, namespace, name)
    patched = apply_patch(present(rt, current), patch, content_type)
    return commit_update(cluster, rt, current, patched, subresource, dry_run)


def _check_preconditions(rt: ResourceType, obj: dict[str, Any], options: dict[str, Any]) -> None:
    preconditions = options.get("preconditions") or {}
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    if preconditions.get("uid") and preconditions["uid"] != meta.get("uid"):
        raise ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {rt.qualified} "{name}": Precondition failed: '
            f"UID in precondition: {preconditions['uid']}, UID in object meta: {meta.get('uid')}",
            {"name": name, "kind": rt.plural},
        )
    if preconditions.get("resourceVersion") and str(preconditions["resourceVersion"]) != str(
        meta.get("resourceVersion")
    ):
        raise conflict(rt, name)


def _remove(cluster: SandboxCluster, rt: ResourceType, obj: dict[str, Any], propagation: str) -> None:
    """Remove `obj` and, unless orphaning, everything it owns; let controllers react."""
    meta = obj["metadata"]
    cluster.store.remove(rt.storage_key, meta.get("namespace") or "", meta["name"])
    if rt.kind == "Namespace":
        for key in list(cluster.store.storage_keys()):
            for child in list(cluster.store.items(key, meta["name"])):
                child_meta = child["metadata"]
                cluster.store.remove(key, meta["name"], child_meta["name"])
                if key == ("", "pods"):
                    cluster.logs.forget_pod(meta["name"], child_meta["name"])
        return
    for key, dependent in cluster.controller.dependents(obj):
        if propagation == "Orphan":
            dep_meta = dependent["metadata"]
            dep_meta["ownerReferences"] = [
                ref for ref in dep_meta.get("ownerReferences") or [] if ref.get("name") != meta["name"]
            ] or None
            if dep_meta["ownerReferences"] is None:
                dep_meta.pop("ownerReferences")
            cluster.store.put(key, dependent)
            continue
        dep_rt = cluster.registry.for_object(dependent.get("apiVersion", ""), dependent.get("kind", ""))
        if (
            dep_rt is not None
            and cluster.store.get(
                key, dependent["metadata"].get("namespace") or "", dependent["metadata"]["name"]
            )
            is not None
        ):
            _remove(cluster, dep_rt, dependent, propagation)
    cluster.controller.after_delete(rt.kind, obj)


def _deleted_response(
    cluster: SandboxCluster, rt: ResourceType, obj: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    if rt.kind in _RETURNS_DELETED_OBJECT or not rt.builtin:
        result = present(rt, obj)
        if rt.kind == "Pod":
            grace = options.get("gracePeriodSeconds")
            if grace is None:
                grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            result["metadata"]["deletionTimestamp"] = cluster.now_text()
            result["metadata"]["deletionGracePeriodSeconds"] = grace
        if rt.kind == "Namespace":
            result.setdefault("status", {})["phase"] = "Terminating"
            result["metadata"]["deletionTimestamp"] = cluster.now_text()
        return result
    details: dict[str, Any] = {"name": meta.get("name"), "kind": rt.plural, "uid": meta.get("uid")}
    if rt.group:
        details["group"] = rt.group
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def delete_object(
    cluster: SandboxCluster,
    rt: ResourceType,
    namespace: str | None,
    name: str,
    options: dict[str, Any],
    dry_run: bool,
) -> dict[str, Any]:
    """DELETE: immediate removal with garbage collection (Background/Foreground) or orphaning."""
    obj = _require(cluster, rt, namespace, name)
    _check_preconditions(rt, obj, options)
    if rt.kind == "Namespace" and name in ("default", "kube-system", "kube-public"):
        raise ApiError(
            403,
            "Forbidden",
            f'namespaces "{name}" is forbidden: this namespace may not be deleted',
            {"name": name, "kind": "namespaces"},
        )
    response = _deleted_response(cluster, rt, obj, options)
    if not dry_run:
        _remove(cluster, rt, obj, options.get("propagationPolicy") or "Background")
    return response


def delete_collection(
    cluster: SandboxCluster,
    rt: ResourceType,
    namespace: str | None,
    label_selector: str | None,
    field_selector: str | None,
    options: dict[str, Any],
    dry_run: bool,
) -> dict[str, Any]:
    """DELETE on a collection: deletes what the selectors match; answers the list of deleted objects."""
    listing = list_objects(cluster, rt, namespace, label_selector, field_selector)
    if not dry_run:
        for item in listing["items"]:
            meta = item["metadata"]
            obj = cluster.store.get(rt.storage_key, meta.get("namespace") or "", meta["name"])
            if obj is not None:
                _remove(cluster, rt, obj, options.get("propagationPolicy") or "Background")
    return listing


def require(cluster: SandboxCluster, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
    """The stored object or a 404 `ApiError` (for the subresource handlers)."""
    return _require(cluster, rt, namespace, name)


def remove(cluster: SandboxCluster, rt: ResourceType, obj: dict[str, Any]) -> None:
    """Delete with the default propagation (for evictions)."""
    _remove(cluster, rt, obj, "Background")
