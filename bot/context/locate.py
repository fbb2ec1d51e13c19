"""LOCATE: map alerts that name no Kubernetes object to the objects they are about.

Application alerts (`HighErrorRate{service="checkout-api"}`), Prometheus target alerts
(`TargetDown{job="orders", instance="10.42.1.17:8080"}`) and blackbox probes carry labels that
lead to objects without naming them by the mixin's conventions. Each hint is tried the way a
person would, within the namespaces the alerts name (else cluster-wide):

- a name (`service`, `job`, `app`, `app_kubernetes_io_name`, `deployment`, `container`...) →
  a Service of that name (its selector leads to the workloads), a Deployment, StatefulSet or
  DaemonSet of that name, pods labelled `app` / `app.kubernetes.io/name` with it;
- an `instance` → a pod with that IP (`10.42.1.17:8080`), or the Service a cluster DNS name
  resolves to (`orders.shop.svc:8080`); a URL or an outside host maps to nothing.

What is found becomes the subject (namespaces, pods, workloads, Services); every mapping is
recorded in words (`subject.located`) for the RCA, and a hint that maps to nothing is a gap
that says which labels were tried. Names of the monitoring stack's own jobs (kubelet, node
exporter...) are not looked up: they describe the scrape, not the subject. Read-only, bounded
by the reader's deadline, at most MAX_NAMES names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from bot.context import kube_facts as facts
from bot.context.dependencies import service_for
from bot.context.kube_read import KubeReader
from bot.context.model import Context, Gap, ObjectRef
from bot.context.subject import valid_name

MAX_NAMES = 3
MAX_PODS = 5
NAME_LABELS = ("service", "app", "app_kubernetes_io_name", "k8s_app", "application", "service_name", "deployment",
               "job", "container")
# scrape jobs of the monitoring stack itself: the alert is about their target, not about them
MONITORING_JOBS = re.compile(r"^(kubelet|cadvisor|apiserver|kube-apiserver|kube-state-metrics|node-exporter|"
                             r"prometheus.*|alertmanager.*|blackbox.*|kubernetes-.*|serviceMonitor/.*|probe/.*|"
                             r"kube-(?:scheduler|controller-manager|proxy|dns)|coredns)$")
_IP_PORT = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3})(?::\d+)?")
PARALLEL_CALLS = 6


def _names(ctx: Context) -> list[str]:
    names: list[str] = []
    for label in NAME_LABELS:
        for value in ctx.subject.hints.get(label, []):
            if valid_name(value) and not MONITORING_JOBS.match(value) and value not in names:
                names.append(value)
    return names[:MAX_NAMES]


def _instances(ctx: Context) -> tuple[list[str], list[ObjectRef]]:
    """Pod IPs and in-cluster Service names that `instance` labels carry."""
    ips, services = [], []
    for value in ctx.subject.hints.get("instance", []):
        host = urlsplit(value).hostname if "://" in value else value.rsplit(":", 1)[0]
        match = _IP_PORT.fullmatch(value) or (_IP_PORT.fullmatch(host) if host else None)
        if match:
            ips.append(match.group(1))
        elif host and "." in host:
            service = service_for(host, None)
            if service is not None and ".svc" in host:
                services.append(service)
    return ips[:MAX_PODS], services[:MAX_NAMES]


def _reads(reader: KubeReader, ctx: Context, names: list[str], ips: list[str]) -> dict[str, Callable[[], Any]]:
    r = reader
    scope = ctx.subject.namespaces
    reads: dict[str, Callable[[], Any]] = {}

    def listing(what: str, namespaced, everywhere, namespace: str | None, **kwargs) -> Callable[[], Any]:
        if namespace:
            return lambda: r.items(f"{what} in {namespace}", namespaced, namespace, **kwargs)
        return lambda: r.items(f"{what} in all namespaces", everywhere, **kwargs)

    for name in names:
        by_name = {"field_selector": f"metadata.name={name}"}
        for namespace in scope or [None]:
            where = namespace or "*"
            reads[f"Service:{where}:{name}"] = listing(f"services named {name}", r.core.list_namespaced_service,
                                                       r.core.list_service_for_all_namespaces, namespace, **by_name)
            for kind, namespaced, everywhere in (
                    ("Deployment", r.apps.list_namespaced_deployment, r.apps.list_deployment_for_all_namespaces),
                    ("StatefulSet", r.apps.list_namespaced_stateful_set, r.apps.list_stateful_set_for_all_namespaces),
                    ("DaemonSet", r.apps.list_namespaced_daemon_set, r.apps.list_daemon_set_for_all_namespaces)):
                reads[f"{kind}:{where}:{name}"] = listing(f"{kind}s named {name}", namespaced, everywhere, namespace,
                                                          **by_name)
            for label in ("app", "app.kubernetes.io/name"):
                reads[f"Pod:{where}:{label}={name}"] = listing(
                    f"pods labelled {label}={name}", r.core.list_namespaced_pod, r.core.list_pod_for_all_namespaces,
                    namespace, label_selector=f"{label}={name}")
    for ip in ips:
        reads[f"Pod:*:ip={ip}"] = listing(f"pods with IP {ip}", r.core.list_namespaced_pod,
                                          r.core.list_pod_for_all_namespaces, None, field_selector=f"status.podIP={ip}")
    return reads


def locate(ctx: Context, reader: KubeReader) -> None:
    """Fill `ctx.subject` from its hints when the alerts name no object (see the module doc)."""
    subject = ctx.subject
    if subject.names_objects or not subject.hints:
        return
    names = _names(ctx)
    ips, dns_services = _instances(ctx)
    reads = _reads(reader, ctx, names, ips)
    with ThreadPoolExecutor(PARALLEL_CALLS, thread_name_prefix="opsbot-locate") as pool:
        futures = {key: pool.submit(call) for key, call in reads.items()}
        results = {key: future.result() for key, future in futures.items()}
    for service in dns_services:
        found = reader.one(f"Service {service.namespace}/{service.name}", reader.core.read_namespaced_service,
                           service.name, service.namespace, quiet_404=True)
        results[f"Service:{service.namespace}:{service.name}"] = [found] if found else []
    for key, items in results.items():
        kind, _, how = key.split(":", 2)
        for obj in (items or [])[:MAX_PODS]:
            ref = facts.ref_of(obj, kind)
            into = subject.pods if kind == "Pod" else subject.other if kind == "Service" else subject.workloads
            if ref not in into:
                into.append(ref)
                subject.located.append(f"{_hint_words(ctx, how)} → {ref}")
            if ref.namespace not in subject.namespaces:
                subject.namespaces.append(ref.namespace)
    if not subject.names_objects:
        tried = ", ".join(f"{label}={', '.join(values[:2])}" for label, values in subject.hints.items())
        ctx.gaps.append(Gap("which objects the alerts are about",
                            f"their labels ({tried}) match no Service, workload or pod in the cluster"))


def _hint_words(ctx: Context, how: str) -> str:
    """`name` → 'alert label service=name'; `app=x` → 'pods labelled app=x'; `ip=...`."""
    if how.startswith("ip="):
        return f"alert label instance with pod IP {how[3:]}"
    if "=" in how:
        return f"pods labelled {how}"
    labels = [label for label, values in ctx.subject.hints.items() if how in values]
    return f"alert label {labels[0] if labels else 'name'}={how}"
