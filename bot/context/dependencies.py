"""Follow the workload's connection errors to what it could not reach.

Hosts named by error lines of the dependency family (`log_signals`) are resolved the way
cluster DNS resolves them: `name.namespace.svc[.cluster.local]`, `name.namespace`, or a bare
`name` in the pod's own namespace. A Service found is checked for ready endpoints and the
workloads behind its selector; a Service in a namespace not yet read is read completely (at
most EXTRA_NAMESPACES more). Anything else (an external host) is reported as named. The
workloads behind the Services (`ctx.upstream`) are the chain's next link: the gatherer reads
their logs and the engine diagnoses them too (client → Service → endpoints → pods → evidence).
"""

from __future__ import annotations

import re
from collections import defaultdict

from bot.context.kube_gather import add_namespace
from bot.context.kube_read import KubeReader
from bot.context.log_signals import HostMention, classify, hosts_in
from bot.context.model import Context, DependencyView, ObjectRef, ServiceView
from bot.context.subject import valid_name

EXTRA_NAMESPACES = 2
_IP = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
MAX_DEPENDENCIES = 5
MAX_UPSTREAM = 3  # dependency workloads whose own evidence is read (the chain's next link)


def configured_hosts(ctx: Context, pod: ObjectRef) -> list[HostMention]:
    """In-cluster hosts the pod is configured to call: env values (and the ConfigMaps it reads
    with envFrom) shaped like `scheme://host:port` or a `*.svc` name. Used when its connection
    errors do not say where they were going (`The connection attempt failed`)."""
    view = next((p for p in ctx.pods if p.ref == pod), None)
    if view is None:
        return []
    values = []
    for container in view.spec.get("containers") or []:
        values += [str(e.get("value")) for e in container.get("env") or [] if e.get("value")]
        for source in container.get("envFrom") or []:
            name = (source.get("configMapRef") or {}).get("name")
            values += list(ctx.config_maps.get(ObjectRef("ConfigMap", pod.namespace, name), {}).values()) if name else []
    found: list[HostMention] = []
    for value in values:
        for mention in hosts_in(value):
            if ".svc" in mention.host and mention.host not in [m.host for m in found]:
                found.append(mention)
    return found[:3]


def dependency_mentions(ctx: Context) -> list[DependencyView]:
    """Hosts the focus pods' error lines could not reach, most mentioned first; where the lines
    name no host, the in-cluster hosts the pod is configured to call (`configured_hosts`)."""
    found: dict[str, DependencyView] = {}
    counts: dict[str, int] = defaultdict(int)
    for view in ctx.logs:
        for line in view.lines:
            if "dependency" not in classify(line):
                continue
            named = [m for m in hosts_in(line) if m.port != 53] or configured_hosts(ctx, view.pod)
            for mention in named[:2]:  # 53: the resolver, not the target
                counts[mention.host] += 1
                dep = found.get(mention.host)
                if dep is None:
                    found[mention.host] = DependencyView(mention.host, mention.port, 0, line[:400], [view.pod])
                elif view.pod not in dep.pods:
                    dep.pods.append(view.pod)
    for host, dep in found.items():
        dep.mentions = counts[host]
    return sorted(found.values(), key=lambda d: -d.mentions)[:MAX_DEPENDENCIES]


def service_for(host: str, namespace: str | None) -> ObjectRef | None:
    """The Service a host name resolves to inside the cluster, if it has that shape."""
    parts = host.lower().split(".")
    if (len(parts) >= 3 and parts[2] == "svc") or (len(parts) == 2 and not parts[1].isdigit()):
        name, ns = parts[0], parts[1]
    elif len(parts) == 1:
        name, ns = parts[0], namespace
    else:
        return None
    if not ns or not valid_name(name) or not valid_name(ns):
        return None
    return ObjectRef("Service", ns, name)


def fill_dependencies(ctx: Context, reader: KubeReader | None) -> None:
    deps = dependency_mentions(ctx)
    read_namespaces = {s.ref.namespace for s in ctx.services} | set(ctx.subject.namespaces)
    extra = 0
    for dep in deps:
        if _by_ip(ctx, dep):
            continue
        service = service_for(dep.host, dep.pods[0].namespace if dep.pods else None)
        if service is None:
            continue
        if service.namespace not in read_namespaces and reader is not None and extra < EXTRA_NAMESPACES:
            add_namespace(ctx, reader, service.namespace or "")
            read_namespaces.add(service.namespace)
            extra += 1
        view = next((s for s in ctx.services if s.ref == service), None)
        if view is None:
            if len(dep.host.split(".")) == 2:
                continue  # "a.b" may well be an external name, not name.namespace
            dep.service = service
            continue
        dep.service, dep.ready_endpoints = view.ref, view.ready_endpoints
        dep.backends = backends_of(ctx, view)
    ctx.dependencies = deps
    upstream = [b for dep in deps for b in dep.backends if b not in ctx.focus]
    ctx.upstream = list(dict.fromkeys(upstream))[:MAX_UPSTREAM]


def _by_ip(ctx: Context, dep: DependencyView) -> bool:
    """An IP address: the Service with that cluster IP, or the pod with that IP."""
    if not _IP.fullmatch(dep.host):
        return False
    service = next((s for s in ctx.services if s.cluster_ip == dep.host), None)
    if service is not None:
        dep.service, dep.ready_endpoints = service.ref, service.ready_endpoints
        dep.backends = backends_of(ctx, service)
        return True
    pod = next((p for p in ctx.pods if p.ip == dep.host), None)
    if pod is not None and pod.workload:
        dep.backends = [pod.workload]
    return True


def backends_of(ctx: Context, service: ServiceView) -> list[ObjectRef]:
    """The workloads behind a Service: owners of its pods, and workloads whose pod template
    matches its selector (so a StatefulSet scaled to zero still counts)."""
    if not service.selector:
        return []

    def matches(labels: dict) -> bool:
        return all(labels.get(k) == v for k, v in service.selector.items())
    found = {p.workload for p in ctx.pods if p.workload and p.ref.namespace == service.ref.namespace
             and matches(p.labels)}
    found |= {w.ref for w in ctx.workloads if w.ref.namespace == service.ref.namespace and w.ref.kind != "CronJob"
              and matches((w.template.get("metadata") or {}).get("labels") or {})}
    return sorted(found)
