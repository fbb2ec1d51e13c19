"""The Kubernetes gatherer: a snapshot of what the alerts are about and what surrounds it.

For each namespace the alerts name (at most MAX_NAMESPACES), the objects a diagnosis reads are
listed in parallel: pods, events, workloads and their ReplicaSets / ControllerRevisions, Jobs,
Services and Endpoints, ConfigMaps, PVCs, quotas, limit ranges, HPAs and NetworkPolicies; cluster-wide: nodes,
storage classes and node events; for node alerts, the pods on those nodes. From the snapshot
it decides the *focus*: the workloads (a ReplicaSet that no Deployment owns and a bare pod
count as workloads: they are what a person edits) the investigation is about (named by the alerts, owning
the alerted pods, targeted by an alerted HPA, using an alerted PVC, or, when the alerts name
only a namespace, the workloads with unhealthy pods there).

A pod named by an alert that no longer exists is a gap ("replaced since the alert fired"); the
workload it belonged to is then inferred from its name, as a person would.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bot.context import kube_facts as facts
from bot.context.kube_read import KubeReader
from bot.context.model import ApiServiceView, Context, Gap, ObjectRef, WebhookView
from bot.context.rollout import rollout_from_pods, rollout_view

MAX_NAMESPACES = 3
MAX_EVENTS = 400
PARALLEL_CALLS = 8
CONFIG_VALUE_CHARS = 4000  # enough for an application.yaml; bounded all the same
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet")


def _namespace_reads(reader: KubeReader, ns: str) -> dict[str, Callable[[], Any]]:
    r = reader
    return {
        "pods": lambda: r.items(f"pods in {ns}", r.core.list_namespaced_pod, ns),
        "events": lambda: r.items(f"events in {ns}", r.core.list_namespaced_event, ns),
        "deployments": lambda: r.items(f"deployments in {ns}", r.apps.list_namespaced_deployment, ns),
        "replicasets": lambda: r.items(f"replicasets in {ns}", r.apps.list_namespaced_replica_set, ns),
        "statefulsets": lambda: r.items(f"statefulsets in {ns}", r.apps.list_namespaced_stateful_set, ns),
        "daemonsets": lambda: r.items(f"daemonsets in {ns}", r.apps.list_namespaced_daemon_set, ns),
        "controllerrevisions": lambda: r.items(f"controller revisions in {ns}",
                                               r.apps.list_namespaced_controller_revision, ns),
        "jobs": lambda: r.items(f"jobs in {ns}", r.batch.list_namespaced_job, ns),
        "cronjobs": lambda: r.items(f"cronjobs in {ns}", r.batch.list_namespaced_cron_job, ns),
        "services": lambda: r.items(f"services in {ns}", r.core.list_namespaced_service, ns),
        "endpoints": lambda: r.items(f"endpoints in {ns}", r.core.list_namespaced_endpoints, ns),
        "configmaps": lambda: r.items(f"configmaps in {ns}", r.core.list_namespaced_config_map, ns),
        "pvcs": lambda: r.items(f"persistent volume claims in {ns}",
                                r.core.list_namespaced_persistent_volume_claim, ns),
        "quotas": lambda: r.items(f"resource quotas in {ns}", r.core.list_namespaced_resource_quota, ns),
        "limitranges": lambda: r.items(f"limit ranges in {ns}", r.core.list_namespaced_limit_range, ns),
        "hpas": lambda: r.items(f"horizontal pod autoscalers in {ns}",
                                r.autoscaling.list_namespaced_horizontal_pod_autoscaler, ns),
        "networkpolicies": lambda: r.items(f"network policies in {ns}",
                                           r.networking.list_namespaced_network_policy, ns),
        "namespace": lambda: [obj] if (obj := r.one(f"namespace {ns}", r.core.read_namespace, ns)) else None,
    }


def _cluster_reads(reader: KubeReader, nodes: list[str]) -> dict[str, Callable[[], Any]]:
    r = reader
    reads: dict[str, Callable[[], Any]] = {
        "nodes": lambda: r.items("nodes", r.core.list_node),
        "storageclasses": lambda: r.items("storage classes", r.storage.list_storage_class),
        "node_events": lambda: r.items("node events", r.core.list_event_for_all_namespaces,
                                       field_selector="involvedObject.kind=Node"),
    }
    for node in nodes:
        reads[f"pods_on:{node}"] = (lambda n=node: r.items(f"pods on node {n}", r.core.list_pod_for_all_namespaces,
                                                            field_selector=f"spec.nodeName={n}"))
    return reads


def read_snapshot(reader: KubeReader, namespaces: list[str], nodes: list[str], cluster: bool = True
                  ) -> dict[str, list[dict] | None]:
    """Every read at once (bounded parallelism); keys are `<namespace>:<kind>` or cluster keys."""
    reads: dict[str, Callable[[], Any]] = {}
    for ns in namespaces[:MAX_NAMESPACES]:
        reads.update({f"{ns}:{kind}": call for kind, call in _namespace_reads(reader, ns).items()})
    if cluster:
        reads.update(_cluster_reads(reader, nodes))
    with ThreadPoolExecutor(PARALLEL_CALLS, thread_name_prefix="opsbot-kube") as pool:
        futures = {key: pool.submit(call) for key, call in reads.items()}
        return {key: future.result() for key, future in futures.items()}


def _all(snapshot: dict[str, list[dict] | None], kind: str) -> list[dict]:
    found: list[dict] = []
    for key, items in snapshot.items():
        if key.endswith(":" + kind) and items:
            found.extend(items)
    return found


def _dedupe_pods(pods: list[dict]) -> list[dict]:
    seen, unique = set(), []
    for pod in pods:
        key = ((pod.get("metadata") or {}).get("namespace"), (pod.get("metadata") or {}).get("name"))
        if key not in seen:
            seen.add(key)
            unique.append(pod)
    return unique


def _read_api_services(ctx: Context, reader: KubeReader) -> None:
    """Aggregated APIs the alerts name: their availability, and the Service (so its namespace
    is read too and the workloads behind it become the focus)."""
    for ref in [r for r in ctx.subject.other if r.kind == "APIService"]:
        obj = reader.one(f"APIService {ref.name}", reader.apiregistration.read_api_service, ref.name)
        if obj is None:
            continue
        service = (obj.get("spec") or {}).get("service") or {}
        target = ObjectRef("Service", service["namespace"], service["name"]) \
            if service.get("namespace") and service.get("name") else None
        ctx.api_services.append(ApiServiceView(ref.name, target, facts.conditions_of(obj).get("Available")))
        if target is not None and target.namespace not in ctx.subject.namespaces:
            ctx.subject.namespaces.append(target.namespace)


def fill_kubernetes(ctx: Context, reader: KubeReader) -> None:
    """Read the snapshot for `ctx.subject` and fill the Kubernetes parts of `ctx`."""
    subject = ctx.subject
    _read_api_services(ctx, reader)
    merge_snapshot(ctx, read_snapshot(reader, subject.namespaces, subject.nodes))
    _check_named_pods(ctx)
    _read_webhooks(ctx, reader)
    ctx.gaps.extend(reader.gaps)


def _read_webhooks(ctx: Context, reader: KubeReader) -> None:
    """The admission webhooks, when a create failed calling one (`failed calling webhook`)."""
    said = [e.message for e in ctx.events] + [c[2] or "" for w in ctx.workloads for c in w.conditions.values()]
    if not any("failed calling webhook" in text for text in said):
        return
    for kind, call in (("ValidatingWebhookConfiguration", reader.admission.list_validating_webhook_configuration),
                       ("MutatingWebhookConfiguration", reader.admission.list_mutating_webhook_configuration)):
        for configuration in reader.items(f"{kind}s", call) or []:
            ref = ObjectRef(kind, None, (configuration.get("metadata") or {}).get("name", "?"))
            for hook in configuration.get("webhooks") or []:
                service = (hook.get("clientConfig") or {}).get("service") or {}
                ctx.webhooks.append(WebhookView(
                    ref, hook.get("name", "?"), hook.get("failurePolicy", "Fail"),
                    ObjectRef("Service", service["namespace"], service["name"]) if service.get("name") else None))


def add_namespace(ctx: Context, reader: KubeReader, namespace: str) -> None:
    """Read one more namespace completely (a dependency's) and add it to `ctx`."""
    merge_snapshot(ctx, read_snapshot(reader, [namespace], [], cluster=False))


def merge_snapshot(ctx: Context, snapshot: dict[str, list[dict] | None]) -> None:
    """Add what a snapshot holds to `ctx` (pods, workloads and their histories, events...)."""
    kinds = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets", "Job": "jobs",
             "CronJob": "cronjobs"}
    raw_workloads = []
    for kind, key in kinds.items():
        for obj in _all(snapshot, key):
            obj.setdefault("kind", kind)
            raw_workloads.append(obj)
    replicasets = [dict(rs, kind=rs.get("kind", "ReplicaSet")) for rs in _all(snapshot, "replicasets")]
    revisions = [dict(cr, kind=cr.get("kind", "ControllerRevision")) for cr in _all(snapshot, "controllerrevisions")]
    workload_of: dict[ObjectRef, ObjectRef] = {}
    for item in replicasets + [w for w in raw_workloads if w["kind"] == "Job"]:
        owner = facts.controller_of(item)
        if owner is not None:
            workload_of[facts.ref_of(item, item.get("kind"))] = owner
    known_pods = {p.ref for p in ctx.pods}
    pods = [p for p in _dedupe_pods(_all(snapshot, "pods") + [p for k, v in snapshot.items() if k.startswith("pods_on:")
                                                              for p in v or []])
            if facts.ref_of(p, "Pod") not in known_pods]
    ctx.pods += [facts.pod_view(p, workload_of) for p in pods]
    # what a person edits when no Deployment, Job or other controller stands above: a ReplicaSet
    # created on its own, or a bare pod
    raw_workloads += [rs for rs in replicasets if facts.controller_of(rs) is None]
    raw_workloads += [dict(p, kind="Pod") for p in pods if not (p.get("metadata") or {}).get("ownerReferences")]
    ctx.workloads += [facts.workload_view(w) for w in raw_workloads]
    events = _all(snapshot, "events") + (snapshot.get("node_events") or [])
    views = ctx.events + [facts.event_view(e, ctx.incident_start) for e in events]
    views.sort(key=lambda e: e.last_at or ctx.incident_start, reverse=True)
    ctx.events = views[:MAX_EVENTS]
    if "nodes" in snapshot:
        ctx.nodes = [facts.node_view(n) for n in snapshot.get("nodes") or []]
        classes_raw = snapshot.get("storageclasses")
        ctx.storage_classes = None if classes_raw is None else \
            {(c.get("metadata") or {}).get("name"): c for c in classes_raw}
    ctx.claims += [facts.claim_view(c, ctx.storage_classes) for c in _all(snapshot, "pvcs")]
    ctx.quotas += [facts.quota_view(q) for q in _all(snapshot, "quotas")]
    ctx.limit_ranges += [facts.limit_range_view(x) for x in _all(snapshot, "limitranges")]
    ctx.hpas += [facts.hpa_view(h) for h in _all(snapshot, "hpas")]
    if snapshot_has(snapshot, "networkpolicies"):
        ctx.network_policies = (ctx.network_policies or []) + [facts.network_policy_view(n)
                                                               for n in _all(snapshot, "networkpolicies")]
    for namespace in _all(snapshot, "namespace"):
        meta = namespace.get("metadata") or {}
        ctx.namespace_labels[meta.get("name", "?")] = dict(meta.get("labels") or {})
    endpoints = {facts.ref_of(e, "Endpoints"): e for e in _all(snapshot, "endpoints")}
    known_services = {s.ref for s in ctx.services}
    ctx.services += [facts.service_view(s, endpoints.get(facts.ref_of(s, "Endpoints")) if snapshot_has(
        snapshot, "endpoints") else None) for s in _all(snapshot, "services")
        if facts.ref_of(s, "Service") not in known_services]
    ctx.config_maps.update({facts.ref_of(c, "ConfigMap"): {k: str(v)[:CONFIG_VALUE_CHARS]
                                                           for k, v in (c.get("data") or {}).items()}
                            for c in _all(snapshot, "configmaps")})
    for workload in raw_workloads:
        if workload["kind"] == "Deployment":
            ctx.rollouts.append(rollout_view(workload, replicasets))
        elif workload["kind"] in ("StatefulSet", "DaemonSet"):
            view = rollout_view(workload, revisions)
            if view.current is None:  # no ControllerRevisions readable: the pods tell the history
                ref = facts.ref_of(workload)
                owned = [p for p in pods if facts.controller_of(p) == ref]
                view = rollout_from_pods(workload, owned) or view
            ctx.rollouts.append(view)


def snapshot_has(snapshot: dict[str, list[dict] | None], kind: str) -> bool:
    return any(key.endswith(":" + kind) and value is not None for key, value in snapshot.items())


def _check_named_pods(ctx: Context) -> None:
    """A pod an alert names that is gone: say so, and infer its workload from its name."""
    known = {p.ref for p in ctx.pods}
    namespaces_read = {p.ref.namespace for p in ctx.pods} | {w.ref.namespace for w in ctx.workloads}
    for pod in ctx.subject.pods:
        if pod in known or pod.namespace not in namespaces_read:
            continue
        ctx.gaps.append(Gap(f"pod {pod.namespace}/{pod.name}", "not found: deleted or replaced since the alert fired"))
        guess = infer_workload(ctx, pod)
        if guess is not None and guess not in ctx.subject.workloads:
            ctx.subject.workloads.append(guess)


def infer_workload(ctx: Context, pod: ObjectRef) -> ObjectRef | None:
    """The workload a pod name implies: the longest workload name that prefixes it."""
    candidates = [w.ref for w in ctx.workloads if w.ref.namespace == pod.namespace
                  and w.ref.kind in WORKLOAD_KINDS and pod.name.startswith(w.ref.name + "-")]
    return max(candidates, key=lambda r: len(r.name), default=None)
