"""LOCATE: map alerts that name no Kubernetes object to the objects they are about.

Application alerts (`HighErrorRate{service="checkout-api"}`), Prometheus target alerts
(`TargetDown{job="orders", instance="10.42.1.17:8080"}`) and blackbox probes carry labels that
lead to objects without naming them by the mixin's conventions. Each hint is tried the way a
person would, within the namespaces the alerts name (else cluster-wide):

- a name (`service`, `job`, `app`, `app_kubernetes_io_name`, `deployment`, `container`...) →
  a Service of that name (its selector leads to the workloads), a Deployment, StatefulSet or
  DaemonSet of that name, pods labelled `app` / `app.kubernetes.io/name` with it;
- an `instance` (or `target`, `url`) → a pod with that IP (`10.42.1.17:8080`), the Service a
  cluster DNS name resolves to (`orders.shop.svc:8080`), or the Services behind the Ingress
  rules for a URL's host (`https://shop.example.com/healthz`);
- nothing in the cluster: a prometheus-operator job name (`probe/monitoring/edge`) still names
  the object that declares the target, as the place to look first.

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
NAME_LABELS = ("service", "app", "app_kubernetes_io_name", "k8s_app", "application", "service_name", "sloth_service",
               "k8s_deployment_name", "destination_workload", "destination_service_name", "deployment", "job",
               "container")
URL_LABELS = ("instance", "target", "url")
# prometheus-operator names scrape jobs after the object that declares them
OPERATOR_JOB = re.compile(r"^(probe|serviceMonitor|podMonitor)/([a-z0-9][-a-z0-9]*)/([a-z0-9][-a-z0-9.]*)(?:/\d+)?$")
OPERATOR_KINDS = {"probe": "Probe", "serviceMonitor": "ServiceMonitor", "podMonitor": "PodMonitor"}
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


def _instances(ctx: Context) -> tuple[list[str], list[ObjectRef], list[str]]:
    """Pod IPs, in-cluster Service names and outside host names that `instance`-like labels
    carry (an outside host may be an Ingress rule's host)."""
    ips, services, hosts = [], [], []
    for value in [v for label in URL_LABELS for v in ctx.subject.hints.get(label, [])]:
        host = urlsplit(value).hostname if "://" in value else value.rsplit(":", 1)[0]
        match = _IP_PORT.fullmatch(value) or (_IP_PORT.fullmatch(host) if host else None)
        if match:
            ips.append(match.group(1))
        elif host and ".svc" in host and (service := service_for(host, None)) is not None:
            services.append(service)
        elif host and "." in host:
            hosts.append(host.lower())
    return ips[:MAX_PODS], services[:MAX_NAMES], hosts[:MAX_NAMES]


def _ingress_backends(reader: KubeReader, hosts: list[str]) -> list[ObjectRef]:
    """The Services behind Ingress rules for `hosts` (one cluster-wide list of Ingresses)."""
    if not hosts:
        return []
    ingresses = reader.items("ingresses in all namespaces", reader.networking.list_ingress_for_all_namespaces) or []
    found = []
    for ingress in ingresses:
        namespace = (ingress.get("metadata") or {}).get("namespace")
        for rule in (ingress.get("spec") or {}).get("rules") or []:
            if (rule.get("host") or "").lower() not in hosts:
                continue
            for path in (rule.get("http") or {}).get("paths") or []:
                name = ((path.get("backend") or {}).get("service") or {}).get("name")
                if name and ObjectRef("Service", namespace, name) not in found:
                    found.append(ObjectRef("Service", namespace, name))
    return found[:MAX_NAMES]


def _declared_by(ctx: Context, reader: KubeReader) -> list[ObjectRef]:
    """The prometheus-operator object that declares the alert's target: named by the job
    (`probe/monitoring/edge`), else a Probe whose jobName is the job or whose static targets
    hold the instance."""
    refs = []
    for value in ctx.subject.hints.get("job", []):
        match = OPERATOR_JOB.match(value)
        if match:
            refs.append(ObjectRef(OPERATOR_KINDS[match.group(1)], match.group(2), match.group(3)))
    if refs or not (ctx.subject.hints.get("job") or ctx.subject.hints.get("instance")):
        return refs
    jobs, targets = set(ctx.subject.hints.get("job", [])), set(ctx.subject.hints.get("instance", []))
    probes = reader.items("prometheus-operator Probes", reader.custom.list_cluster_custom_object,
                          "monitoring.coreos.com", "v1", "probes", quiet_404=True) or []
    for probe in probes:
        spec = probe.get("spec") or {}
        static = (((spec.get("targets") or {}).get("staticConfig") or {}).get("static")) or []
        if spec.get("jobName") in jobs or targets & set(static):
            refs.append(facts.ref_of(probe, "Probe"))
    return refs[:MAX_NAMES]


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
    ips, dns_services, hosts = _instances(ctx)
    behind_ingress = [ref for ref in _ingress_backends(reader, hosts) if ref not in dns_services]
    reads = _reads(reader, ctx, names, ips)
    with ThreadPoolExecutor(PARALLEL_CALLS, thread_name_prefix="opsbot-locate") as pool:
        futures = {key: pool.submit(call) for key, call in reads.items()}
        results = {key: future.result() for key, future in futures.items()}
    for service in dns_services + behind_ingress:
        found = reader.one(f"Service {service.namespace}/{service.name}", reader.core.read_namespaced_service,
                           service.name, service.namespace, quiet_404=True)
        how = f"ingress={', '.join(hosts)}" if service in behind_ingress else f"dns={service.name}"
        results[f"Service:{service.namespace}:{how}"] = [found] if found else []
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
        for ref in _declared_by(ctx, reader):  # nothing in the cluster: the object that declares the target
            subject.other.append(ref)
            subject.located.append(f"alert labels job/instance → {ref}, which declares the probed target")
    if not subject.names_objects or all(r.kind in OPERATOR_KINDS.values() for r in subject.other) and not (
            subject.pods or subject.workloads):
        tried = ", ".join(f"{label}={', '.join(values[:2])}" for label, values in subject.hints.items())
        ctx.gaps.append(Gap("which objects the alerts are about",
                            f"their labels ({tried}) match no Service, workload or pod in the cluster"))


def _hint_words(ctx: Context, how: str) -> str:
    """`name` → 'alert label service=name'; `app=x` → 'pods labelled app=x'; `ip=...`."""
    if how.startswith("ip="):
        return f"alert label instance with pod IP {how[3:]}"
    if how.startswith("ingress="):
        return f"the Ingress rule for {how[8:]}"
    if how.startswith("dns="):
        return f"alert label instance naming Service {how[4:]}"
    if "=" in how:
        return f"pods labelled {how}"
    labels = [label for label, values in ctx.subject.hints.items() if how in values]
    return f"alert label {labels[0] if labels else 'name'}={how}"
