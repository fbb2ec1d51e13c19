"""certificate_expired: an expired or not-yet-valid TLS certificate stops the workload.

Explicit evidence: log lines saying the certificate has expired (x509, OpenSSL, Java, Node
phrasings), blackbox exporter's `probe_ssl_earliest_cert_expiry` in the past, events that
mention it. The object to fix is the Secret holding the certificate: the one mounted at the
path the error names, else the pod's TLS-looking secret volume; when the error is about a peer
(a host the workload calls), the Secret mounted by the workloads behind that host's Service.
Restarting or rolling back does not renew a certificate.
"""

from __future__ import annotations

import re
from datetime import timedelta

from bot.context.dependencies import backends_of, service_for
from bot.context.log_signals import FAMILIES, hosts_in, paths_in
from bot.context.model import Context, ObjectRef, PodView
from bot.diagnosis import evidence as ev
from bot.diagnosis.findings import WorkloadFindings, fix_target
from bot.diagnosis.model import Evidence, Hypothesis

_TLS_NAME = re.compile(r"tls|cert|ssl|x509|pki|mtls|crt", re.I)
_PEER = re.compile(r"remote error|failed to verify|verify(?:ing)? certificate|certificate verify failed|"
                   r"CERTIFICATE_VERIFY_FAILED|PKIX path|handshake|Get \"https|dial tcp|"
                   r"x509: certificate has expired or is not yet valid|unable to get|peer", re.I)
_NOT_AFTER = re.compile(r"(?:not_after|notAfter|NotAfter|is after|expired on|expiry)[=: ]+\s*([0-9T:\-+Z. ]{10,30})")


def secret_for(pod: PodView, paths: list[str]) -> str | None:
    """The secret mounted at one of `paths`, else the pod's TLS-looking secret volume."""
    secrets = {v.name: v.source for v in pod.volumes if v.kind == "secret" and v.source}
    for container in pod.containers:
        for mount, volume in sorted(container.mounts.items(), key=lambda item: -len(item[0])):
            if volume in secrets and any(p == mount or p.startswith(mount.rstrip("/") + "/") for p in paths):
                return secrets[volume]
    tls = [name for volume, name in secrets.items() if _TLS_NAME.search(name) or _TLS_NAME.search(volume)]
    if tls:
        return tls[0]
    projected_tls = [s.get("secret", {}).get("name") for v in pod.spec.get("volumes") or []
                     for s in (v.get("projected") or {}).get("sources") or [] if s.get("secret")]
    return next((n for n in projected_tls if n and _TLS_NAME.search(n)), None)


# the client itself refused the peer's chain (its trust store decides), not the peer refusing ours
_VERIFYING = re.compile(r"certificate verify failed|CERTIFICATE_VERIFY_FAILED|failed to verify|PKIX path|"
                        r"unable to get local issuer|x509: certificate has expired or is not yet valid", re.I)
_CA_NAME = re.compile(r"ca[-_.]?(?:bundle|cert|certs|crt)?\b|bundle|trust|cacert|root|pki|tls|cert", re.I)


def ca_bundle_for(pod: PodView, paths: list[str]) -> str | None:
    """The ConfigMap mounted at one of `paths`, else one whose name says it holds CA certificates:
    where a client's trust store lives when the certificate it refuses is a peer's chain."""
    maps = {v.name: v.source for v in pod.volumes if v.kind == "configMap" and v.source}
    for container in pod.containers:
        for mount, volume in sorted(container.mounts.items(), key=lambda item: -len(item[0])):
            if volume in maps and any(p == mount or p.startswith(mount.rstrip("/") + "/") for p in paths):
                return maps[volume]
    return next((name for volume, name in maps.items() if _CA_NAME.search(name) or _CA_NAME.search(volume)), None)


def _peer_secret(ctx: Context, line: str, namespace: str | None) -> ObjectRef | None:
    for mention in hosts_in(line):
        service = service_for(mention.host, namespace)
        view = next((s for s in ctx.services if s.ref == service), None) if service else None
        if view is None or not view.selector:
            continue
        for pod in ctx.pods:
            if pod.ref.namespace == view.ref.namespace and all(pod.labels.get(k) == v for k, v in view.selector.items()):
                name = secret_for(pod, [])
                if name:
                    return ObjectRef("Secret", pod.ref.namespace, name)
    return None


def _refused_by_clients(ctx: Context, found: WorkloadFindings) -> list[Evidence]:
    """Clients that refuse this workload's certificate: an aggregated API served by it whose
    availability check fails with an expired certificate (the API server is the client)."""
    evidence = []
    for api in ctx.api_services:
        service = next((s for s in ctx.services if s.ref == api.service), None)
        message = (api.available or ("", None, ""))[2] or ""
        if service is not None and found.ref in backends_of(ctx, service) and FAMILIES["certificate"].search(message):
            evidence.append(Evidence(f"APIService {api.name} (served by {service.ref}) is unavailable: "
                                     f"{message[:400]}", "kubernetes", f"APIService {api.name} status.conditions"))
    return evidence


KUBELET_CERTIFICATE_ALERTS = ("KubeletClientCertificateExpiration", "KubeletServerCertificateExpiration",
                              "KubeletClientCertificateRenewalErrors", "KubeletServerCertificateRenewalErrors")


def _kubelet_certificates(ctx: Context) -> list[Hypothesis]:
    """A node's kubelet certificate expiring or failing to renew: the node is what to fix."""
    hypotheses = []
    for alert in ctx.alerts:
        node = alert.labels.get("node") or alert.labels.get("instance")
        if alert.name not in KUBELET_CERTIFICATE_ALERTS or alert.status != "firing" or not node:
            continue
        which = "client" if "Client" in alert.name else "server"
        renewal = "Renewal" in alert.name
        said = alert.annotations.get("description") or alert.annotations.get("summary") or alert.name
        hypotheses.append(Hypothesis(
            "certificate_expired", ObjectRef("Node", None, node), 0.85 if alert.labels.get("severity") == "critical"
            else 0.7, f"The kubelet {which} certificate on node {node} "
                      + ("fails to renew" if renewal else "is about to expire") + f": {said[:200]}",
            [Evidence(f"{alert.name}: {said[:300]}", "alert", f"Alert {alert.name} node={node}")], [], True,
            action=f"Check the kubelet's certificate rotation on {node} (CSR approval, the kubelet log); "
                   "a kubelet whose client certificate expires drops out of the cluster."))
    return hypotheses


def analyze(ctx: Context, findings: list[WorkloadFindings]) -> list[Hypothesis]:
    hypotheses = _kubelet_certificates(ctx)
    expired_probes = [s for s in ctx.signal("certificate_expiry") if s.latest is not None and s.latest <= 0]
    for found in findings:
        lines = found.error_lines("certificate", include_noise=not found.healthy)
        events = [e for e in found.events if re.search(r"x509|certificate", e.message, re.I) and e.type == "Warning"]
        callers = _refused_by_clients(ctx, found)
        if not lines and not events and not callers and not (expired_probes and found.failing):
            continue
        supporting = [ev.log_line(e) for e in lines[:3]] + [ev.event(e, ctx.now) for e in events[:1]] + callers
        for probe in expired_probes[:1]:
            expired_at = ctx.now + timedelta(seconds=probe.latest or 0)
            supporting.append(ev.signal(probe, f"the TLS certificate of {probe.labels.get('instance', '?')} expired "
                                               f"{ev.ago(expired_at, ctx.now)} (blackbox probe)"))
        pods = {p.ref: p for p in found.pods}
        secret = None
        for line in lines:
            pod = pods.get(line.pod)
            paths = paths_in(line.line)
            own = secret_for(pod, paths) if pod else None
            is_peer = bool(_PEER.search(line.line))
            peer = _peer_secret(ctx, line.line, found.ref.namespace) if is_peer else None
            # a peer outside the cluster: what we can fix is the trust bundle the client verifies with
            verifying = bool(_VERIFYING.search(line.line)) and "remote error" not in line.line.lower()
            bundle = ca_bundle_for(pod, paths) if pod and verifying and peer is None else None
            chosen = peer or (ObjectRef("ConfigMap", found.ref.namespace, bundle) if bundle else None) or \
                (ObjectRef("Secret", found.ref.namespace, own) if own else None)
            if chosen:
                secret = chosen
                break
        if secret is None and found.pods:
            name = secret_for(found.pods[0], [])
            secret = ObjectRef("Secret", found.ref.namespace, name) if name else None
        when = next((m.group(1).strip() for e in lines for m in [_NOT_AFTER.search(e.line)] if m), None)
        target = fix_target(found)
        resource = secret or target
        summary = (f"The TLS certificate in {secret} has expired" if secret and secret.kind == "Secret" else
                   f"A certificate in the trust bundle {secret} has expired" if secret else
                   f"A TLS certificate {target} depends on has expired")
        if when:
            summary += f" (not after {when})"
        summary += f", so {target} " + ("cannot start" if found.crashes or found.waiting else
                                        "is refused by its clients" if callers else "fails its TLS connections")
        confidence = 0.92 if (lines or callers) else 0.75
        hypotheses.append(Hypothesis(
            "certificate_expired", resource, confidence, summary + ".", supporting,
            [], explicit=True, action=f"Renew the certificate in {secret or 'the secret it is loaded from'} "
                                      "(cert-manager: check the Certificate and its issuer), then restart the pods "
                                      "that load it at start-up.", signal_key="restarts"))
        if secret is not None:
            hypotheses.append(Hypothesis("certificate_expired", target, confidence - 0.15, summary + ".", supporting,
                                         [], True, action=hypotheses[-1].action))
    return hypotheses
