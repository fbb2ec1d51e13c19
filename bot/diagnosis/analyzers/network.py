"""dependency_unreachable through a broken path: the dependency may be fine, the way to it is not.

The workload's error lines say it cannot reach something (a lookup that times out, a connect
that times out or is refused). Before blaming the dependency, check the path a packet takes
(`bot.context.netpol` for the policy semantics):

- a NetworkPolicy isolates the workload's pods for egress and no rule lets DNS (port 53 to
  kube-dns) or the dependency's pods and port through: the policy is the object to fix;
- a NetworkPolicy isolates the dependency's pods for ingress and no rule admits the workload's
  pods on that port: that policy is the object to fix;
- the dependency's Service selects no pod and no workload template at all (a selector that no
  longer matches after a label change): the Service is the object to fix;
- the Service's numeric targetPort is not a port its pods declare (or a named one no
  container has): the Service is the object to fix;
- pods cannot even be created because the API server's call to an admission webhook fails
  (`failed calling webhook "..."`): the webhook configuration is the object to fix.

Each conclusion quotes the rule it rests on and names the object; "cannot tell" (a selector
on namespace labels not read, a named port) never blames anything. Restarting or rolling back
the workload does not help. The taxonomy has no category of its own for a broken path: a
policy that blocks traffic is first `dependency_unreachable` (the dependency cannot be
reached), a Service that selects or targets nothing first `config_error` (an object written
wrong); each is offered under the other category too (`SECOND_READING`).
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

from bot.context.dependencies import backends_of
from bot.context.model import Context, DependencyView, NetworkPolicyView, ObjectRef, PodView, ServiceView
from bot.context.netpol import DNS, DNS_PORT, Endpoint, allows, isolating
from bot.diagnosis import evidence as ev
from bot.diagnosis.findings import ErrorLine, WorkloadFindings
from bot.diagnosis.model import Evidence, Hypothesis

DNS_FAILURE = re.compile(r"Temporary failure in name resolution|EAI_AGAIN|server misbehaving|:53: .*(?:timeout|refused)|"
                         r"dial udp [^ ]+:53|i/o timeout.*:53|lookup \S+ on \S+: .*timeout|could not resolve|"
                         r"UnknownHostException|no such host|ENOTFOUND|could not translate host name|"
                         r"Name or service not known", re.I)
RECENT_POLICY = timedelta(hours=24)
# confidences: a policy that denies, written shortly before the trouble, is the most telling
POLICY_NEW, POLICY_OLD, SERVICE_BROKEN = 0.92, 0.8, 0.9
SECOND_READING = {"dependency_unreachable": "config_error", "config_error": "dependency_unreachable"}
SECOND_READING_PENALTY = 0.06  # more than the engine's TIE: the same cause read twice is no rival


def _policies(ctx: Context) -> list[NetworkPolicyView]:
    return ctx.network_policies or []


def _endpoint(ctx: Context, pod: PodView) -> Endpoint:
    return Endpoint(pod.ref.namespace, pod.labels, ctx.namespace_labels.get(pod.ref.namespace or ""))


def _service(ctx: Context, ref: ObjectRef | None) -> ServiceView | None:
    return next((s for s in ctx.services if s.ref == ref), None) if ref else None


def _backend_pod(ctx: Context, service: ServiceView) -> PodView | None:
    return next((p for p in ctx.pods if p.ref.namespace == service.ref.namespace and service.selector
                 and all(p.labels.get(k) == v for k, v in service.selector.items())), None)


def _ports(dep: DependencyView, service: ServiceView | None, backend: PodView | None = None) -> set[int | str]:
    """The ports a connection to `dep` uses: the one named, and the Service's targetPort for it
    (a named targetPort resolved through the backend pod's declared ports)."""
    ports: set[int | str] = {dep.port} if dep.port else set()
    if service is not None:
        ports |= {service.target_ports[dep.port]} if dep.port in service.target_ports else \
            set() if ports else set(service.target_ports.values())
    named = {p.get("name"): p.get("containerPort") for c in (backend.spec.get("containers") or [] if backend else [])
             for p in c.get("ports") or []}
    return {named.get(p, p) if isinstance(p, str) else p for p in ports}


def _newest(policies: list[NetworkPolicyView]) -> NetworkPolicyView:
    return max(policies, key=lambda p: (p.created_at is not None, p.created_at or 0, p.ref.name))


def _policy_hypothesis(ctx: Context, found: WorkloadFindings, policy: NetworkPolicyView, what: str,
                       lines: list[ErrorLine], direction: str) -> Hypothesis:
    recent = policy.created_at is not None and policy.created_at >= ctx.incident_start - RECENT_POLICY
    kind = "egress" if direction == "Egress" else "ingress"
    supporting = [Evidence(f"{policy.ref} isolates these pods for {kind} and none of its rules allows {what}"
                           + (f"; it was created {ev.ago(policy.created_at, ctx.now)}" if recent else ""),
                           "kubernetes", f"{policy.ref} spec")]
    supporting += [ev.log_line(e) for e in lines[:3]]
    return Hypothesis(
        "dependency_unreachable", policy.ref, POLICY_NEW if recent else POLICY_OLD,
        f"{policy.ref} blocks {what}, so {found.ref} cannot reach it.", supporting, explicit=True,
        action=f"Add a rule to {policy.ref.name} (or a separate policy) that allows {what}; "
               f"restarting or rolling back {found.ref.name} does not help.", signal_key="error_ratio")


def _egress(ctx: Context, found: WorkloadFindings, pod: PodView, lines: list[ErrorLine],
            deps: list[DependencyView]) -> Hypothesis | None:
    policies = _policies(ctx)
    isolated = isolating(policies, pod.ref.namespace, pod.labels, "Egress")
    if not isolated:
        return None
    dns_lines = [e for e in lines if DNS_FAILURE.search(e.line)]
    if dns_lines and allows(policies, "Egress", _endpoint(ctx, pod), DNS, {DNS_PORT}) is False:
        return _policy_hypothesis(ctx, found, _newest(isolated), "DNS (port 53 to kube-dns)", dns_lines, "Egress")
    for dep in deps:
        service = _service(ctx, dep.service)
        backend = _backend_pod(ctx, service) if service else None
        namespace = dep.service.namespace if dep.service else None
        target = _endpoint(ctx, backend) if backend else \
            Endpoint(namespace, None, ctx.namespace_labels.get(namespace or "") if namespace else None)
        if allows(policies, "Egress", _endpoint(ctx, pod), target, _ports(dep, service, backend)) is False:
            named = [e for e in lines if dep.host in e.line.lower()] or lines
            return _policy_hypothesis(ctx, found, _newest(isolated), f"traffic to {dep.host}"
                                      + (f" port {dep.port}" if dep.port else ""), named, "Egress")
    return None


def _ingress(ctx: Context, found: WorkloadFindings, pod: PodView, lines: list[ErrorLine],
             deps: list[DependencyView]) -> Hypothesis | None:
    policies = _policies(ctx)
    for dep in deps:
        service = _service(ctx, dep.service)
        backend = _backend_pod(ctx, service) if service else None
        if backend is None:
            continue
        isolated = isolating(policies, backend.ref.namespace, backend.labels, "Ingress")
        ports = _ports(dep, service, backend)
        if isolated and allows(policies, "Ingress", _endpoint(ctx, backend), _endpoint(ctx, pod), ports) is False:
            named = [e for e in lines if dep.host in e.line.lower()] or lines
            return _policy_hypothesis(ctx, found, _newest(isolated), f"traffic from {found.ref.name} to "
                                      f"{backend.ref.name} ({dep.host})", named, "Ingress")
    return None


def _declared_ports(pods: list[PodView]) -> tuple[set[int], set[str]]:
    numbers, names = set(), set()
    for pod in pods:
        for container in pod.spec.get("containers") or []:
            for port in container.get("ports") or []:
                if isinstance(port.get("containerPort"), int):
                    numbers.add(port["containerPort"])
                if port.get("name"):
                    names.add(port["name"])
    return numbers, names


def _service_fault(ctx: Context, service: ServiceView, port: int | None, who: str,
                   lines: list[ErrorLine]) -> Hypothesis | None:
    """A Service that selects no pod and no template, or targets a port its pods do not declare."""
    if not service.selector:
        return None
    selector = ", ".join(f"{k}={v}" for k, v in sorted(service.selector.items()))
    if service.ready_endpoints == 0 and not backends_of(ctx, service):
        return Hypothesis(
            "config_error", service.ref, SERVICE_BROKEN, f"Service {service.ref} selects no pod (selector {selector}), "
                                                         f"so {who}.",
            [Evidence(f"no pod and no workload template in {service.ref.namespace} matches the selector {selector} "
                      f"of {service.ref}; it has no endpoints", "kubernetes", f"{service.ref} spec.selector")]
            + [ev.log_line(e) for e in lines[:3]],
            explicit=True, action=f"Fix the selector of {service.ref} (or the pods' labels) so it matches the pods "
                                  "that serve it.", signal_key="error_ratio")
    pods = [p for p in ctx.pods if p.ref.namespace == service.ref.namespace
            and all(p.labels.get(k) == v for k, v in service.selector.items())]
    numbers, names = _declared_ports(pods)
    targets = [service.target_ports[port]] if port in service.target_ports else list(service.target_ports.values())
    wrong = [t for t in targets if (isinstance(t, int) and numbers and t not in numbers)
             or (isinstance(t, str) and pods and t not in names)]
    if not wrong or len(wrong) < len(targets):
        return None
    declared = ", ".join(str(n) for n in sorted(numbers)) or ", ".join(sorted(names)) or "none"
    return Hypothesis(
        "config_error", service.ref, SERVICE_BROKEN,
        f"Service {service.ref} sends traffic to port {wrong[0]}, which its pods do not serve (they declare "
        f"{declared}), so {who}.",
        [Evidence(f"{service.ref} targetPort {wrong[0]}; its pods declare container ports {declared}", "kubernetes",
                  f"{service.ref} spec.ports")] + [ev.log_line(e) for e in lines[:3]],
        explicit=True, action=f"Set the targetPort of {service.ref} to the port the pods listen on.",
        signal_key="error_ratio")


def _service_path(ctx: Context, found: WorkloadFindings, lines: list[ErrorLine],
                  deps: list[DependencyView]) -> Hypothesis | None:
    for dep in deps:
        service = _service(ctx, dep.service)
        named = [e for e in lines if dep.host in e.line.lower()] or lines
        fault = _service_fault(ctx, service, dep.port, f"{found.ref} cannot reach {dep.host}", named) \
            if service is not None else None
        if fault is not None:
            return fault
    return None


def _located_services(ctx: Context) -> list[Hypothesis]:
    """Services the alerts' labels led to (a probe's URL, a `service` label): checked as they are."""
    found = []
    for ref in ctx.subject.other:
        service = _service(ctx, ref) if ref.kind == "Service" else None
        fault = _service_fault(ctx, service, None, "what the alerts probe cannot be reached", []) \
            if service is not None else None
        if fault is not None:
            found.append(fault)
    return found


def _broken_path(ctx: Context, found: WorkloadFindings) -> Hypothesis | None:
    lines = found.connection_errors()
    failing_pods = {e.pod for e in lines}
    client = next((p for p in found.pods if p.ref in failing_pods), None)
    if client is None:
        return None
    deps = [d for d in ctx.dependencies if any(p in failing_pods for p in d.pods)]
    blocked = (_egress(ctx, found, client, lines, deps) or _ingress(ctx, found, client, lines, deps)) \
        if ctx.network_policies else None
    return blocked or _service_path(ctx, found, lines, deps)


_WEBHOOK = re.compile(r'failed calling webhook "([^"]+)"')


def _admission(ctx: Context, found: WorkloadFindings) -> Hypothesis | None:
    """Pods cannot even be created: the API server calls an admission webhook that does not
    answer, and its failurePolicy Fail refuses every create it covers."""
    said = [(e.message, ev.event(e, ctx.now)) for e in found.warning_events("FailedCreate")]
    view = found.view
    said += [(c[2] or "", Evidence(f"{found.ref} condition {name}: {c[2]}", "kubernetes", f"{found.ref} status"))
             for name, c in (view.conditions.items() if view else []) if "failed calling webhook" in (c[2] or "")]
    for message, evidence in said:
        match = _WEBHOOK.search(message)
        hook = next((w for w in ctx.webhooks if match and w.name == match.group(1)), None)
        if hook is None:
            continue
        backend = f" (Service {hook.service})" if hook.service else ""
        return Hypothesis(
            "dependency_unreachable", hook.configuration, 0.88,
            f"Pods of {found.ref} cannot be created: the admission webhook {hook.name}{backend} of "
            f"{hook.configuration} does not answer and its failurePolicy is {hook.failure_policy}.",
            [evidence, Evidence(f"{hook.configuration}: webhook {hook.name}, failurePolicy {hook.failure_policy}, "
                                f"served by {hook.service or 'a URL'}", "kubernetes", f"{hook.configuration}")],
            explicit=True, signal_key="available_replicas",
            action=f"Bring the webhook's backend{backend} back, or relax {hook.configuration.name} (failurePolicy "
                   "Ignore, or a namespaceSelector that leaves out the webhook's own namespace) so it cannot block "
                   "its own recovery.")
    return None


def analyze(ctx: Context, findings: list[WorkloadFindings]) -> list[Hypothesis]:
    hypotheses = []
    admission = [_admission(ctx, found) for found in findings] if ctx.webhooks else []
    for first in [_broken_path(ctx, found) for found in findings] + _located_services(ctx) + admission:
        if first is not None:
            second = replace(first, category=SECOND_READING[first.category],
                             confidence=first.confidence - SECOND_READING_PENALTY, rules=[])
            hypotheses += [first, second]
    return hypotheses
