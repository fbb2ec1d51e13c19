"""The expiring-credentials digest: what expires within the window, what already expired, and
cert-manager Certificates that are not Ready; each with who owns it and how it is renewed.

Sources, per cluster: PEM certificates in Secrets and ConfigMaps (`bot.digests.certificates`),
cert-manager `Certificate` objects (status.notAfter, renewalTime, the Ready condition,
issuerRef), the kubelets' and API servers' certificates as Prometheus exposes them (the metrics
kubernetes-mixin alerts on), and any object read that carries a declared expiry annotation.

Invariants:
- A failure (API server down, RBAC forbids listing Secrets, Prometheus unreachable, a value
  that does not parse) is a line in `problems`; the other sources still report.
- A Secret that a Certificate manages (its spec.secretName, or the
  `cert-manager.io/certificate-name` annotation naming a Certificate that exists) is reported
  once, as the Certificate; CAs in it that expire before its leaf are still their own findings.
- The same certificate in several objects (`kube-root-ca.crt` is in every namespace) is
  reported once, on the first object in (Secrets first, namespace, name, key) order.
- No key material and no Secret value reaches a finding: only public certificate fields.
- Keys are `credentials/<cluster>/<Kind>/<namespace or ->/<name>[/<item>]`, stable across runs;
  `since` is None (the store dates a finding by the first run that saw it). Findings are sorted
  by section (Expired, Expiring within N days, Not ready), then soonest first.
- A cert-manager Certificate that expired or expires within the window carries the
  `renew-certificate` fix with the notAfter it had, which the runbook's verification compares to.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict, Field

from bot.digests import certificates as pem
from bot.digests.model import DigestContext, DigestReport, Finding, Fix, Severity

NAME, TITLE = "credentials", "Expiring credentials"
DEFAULT_EXPIRY_ANNOTATIONS: tuple[str, ...] = ("opsbot.io/expires-at",)
OWNER_KEYS: tuple[str, ...] = ("opsbot.io/owner", "owner", "team", "app.kubernetes.io/team")
MANAGER_KEY = "app.kubernetes.io/managed-by"
CERTIFICATE_NAME_ANNOTATION = "cert-manager.io/certificate-name"
ISSUER_NAME_ANNOTATION, ISSUER_KIND_ANNOTATION = "cert-manager.io/issuer-name", "cert-manager.io/issuer-kind"
CERT_MANAGER_API = ("cert-manager.io", "v1", "certificates")
RENEW_RUNBOOK = "renew-certificate"
SECTION_EXPIRED, SECTION_EXPIRING, SECTION_NOT_READY = "Expired", "Expiring within {days} days", "Not ready"
CRITICAL_WITHIN_DAYS = 7.0  # expiring this soon (or expired) is critical; later in the window a warning
DEFAULT_CLUSTER_LABEL = "default"
# what the headline says was checked: (one, several), by the counter's id
CHECKED_NOUNS: dict[str, tuple[str, str]] = {
    "certmanager": ("cert-manager Certificate", "cert-manager Certificates"),
    "pem": ("certificate in a Secret or ConfigMap", "certificates in Secrets and ConfigMaps"),
    "kubelet": ("kubelet certificate", "kubelet certificates"),
    "apiserver": ("API server's client-certificate histogram", "API servers' client-certificate histograms"),
}
UNKNOWN_OWNER = "owner unknown (no owner label or annotation, no issuer, no owner reference)"


class CredentialsConfig(BaseModel):
    """What the credentials digest checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    within_days: int = Field(21, ge=1, le=365, description="report what expires within this many days")
    clusters: list[str] = Field(default_factory=list,
                                description="cluster names from OPSBOT_CLUSTERS; empty: the default cluster")
    namespaces: list[str] | None = Field(None, description="only these namespaces; None: every namespace")
    expiry_annotations: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXPIRY_ANNOTATIONS),
        description="annotations whose value (RFC 3339 or YYYY-MM-DD) says when an object's credential "
                    "expires")
    configmaps: bool = Field(True, description="also read PEM certificates in ConfigMaps (CA bundles)")
    cluster_certificates: bool = Field(
        True, description="kubelet and API server client certificates from Prometheus (cluster-wide)")
    apiserver_lookback_minutes: int = Field(
        60, ge=5, le=1440, description="window of the API server's client-certificate histogram")
    request_timeout_seconds: float = Field(20.0, gt=0, le=300,
                                           description="each Kubernetes or Prometheus request")


@dataclass(frozen=True)
class Expiry:
    """One credential and when it ends. `not_after` None: unknown (a Certificate never issued)."""

    kind: str
    namespace: str | None
    name: str
    item: str | None
    what: str
    not_after: datetime | None
    owner: str
    renewal: str
    fix: Fix | None = None
    not_ready: str | None = None  # why a cert-manager Certificate is not Ready
    subject: str | None = None  # how a person names it, when not "<Kind> <ns>/<name> <item>"


@dataclass
class Scan:
    """What one cluster yielded."""

    expiries: list[Expiry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    def count(self, what: str, n: int) -> None:
        self.checked[what] = self.checked.get(what, 0) + n


# -- small readers --------------------------------------------------------------------------------

def parse_time(text: Any) -> datetime | None:
    """RFC 3339 (`2026-09-30T12:00:00Z`) or a date (`2026-09-30`, midnight UTC); None if neither."""
    if not isinstance(text, str) or not text.strip():
        return None
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1] in "Zz" else value)
    except ValueError:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return None
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def owner_of(obj: dict, issuer: str | None = None) -> str:
    """Who owns the object: an owner label or annotation, its manager, its cert-manager issuer,
    its owner references; `UNKNOWN_OWNER` when none says."""
    meta = _meta(obj)
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    parts = []
    key = next((k for k in OWNER_KEYS if labels.get(k) or annotations.get(k)), None)
    if key:
        parts.append(f"owner {labels.get(key) or annotations.get(key)} ({key})")
    manager = labels.get(MANAGER_KEY) or annotations.get(MANAGER_KEY)
    if manager:
        parts.append(f"managed by {manager}")
    if issuer is None and annotations.get(ISSUER_NAME_ANNOTATION):
        kind = annotations.get(ISSUER_KIND_ANNOTATION) or "Issuer"
        issuer = f"{kind} {annotations[ISSUER_NAME_ANNOTATION]}"
    if issuer:
        parts.append(f"issued by cert-manager {issuer}")
    controllers = [f"{ref.get('kind')} {ref.get('name')}" for ref in meta.get("ownerReferences") or []]
    if controllers:
        parts.append("owned by " + ", ".join(controllers[:2]))
    return "; ".join(parts) if parts else UNKNOWN_OWNER


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _left(not_after: datetime, now: datetime) -> str:
    seconds = (not_after - now).total_seconds()
    span = abs(seconds)
    amount = f"{span / 86400:.0f} days" if span >= 2 * 86400 else f"{span / 3600:.0f} hours"
    if seconds <= 0:
        return f"expired {amount} ago ({_when(not_after)})"
    return f"expires in {amount} ({_when(not_after)})"


# -- Kubernetes -----------------------------------------------------------------------------------

class ReadFailed(Exception):
    def __init__(self, what: str, status: int | None, message: str):
        super().__init__(f"{what}: {message}")
        self.status = status


def _read(what: str, call: Callable[..., Any], *args: Any, timeout: float) -> list[dict]:
    try:
        response = call(*args, _preload_content=False, _request_timeout=timeout)
    except ApiException as exc:
        try:
            message = json.loads(exc.body or "{}").get("message") or exc.reason
        except ValueError:
            message = exc.reason
        raise ReadFailed(what, exc.status, f"{exc.status} {message}") from None
    except Exception as exc:  # noqa: BLE001 - refused, timed out, TLS: all mean "could not read"
        raise ReadFailed(what, None, f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return list(json.loads(response.data or b"{}").get("items") or [])


def _list(what: str, namespaces: list[str] | None, everywhere: Callable[[], list[dict]],
          in_namespace: Callable[[str], list[dict]]) -> list[dict]:
    if namespaces is None:
        return everywhere()
    return [obj for namespace in namespaces for obj in in_namespace(namespace)]


def _certificate_expiry(crt: dict, now: datetime, cluster: str | None) -> Expiry:
    meta, spec, status = _meta(crt), crt.get("spec") or {}, crt.get("status") or {}
    namespace, name = meta.get("namespace"), meta.get("name")
    ref = spec.get("issuerRef") or {}
    issuer = f"{ref.get('kind') or 'Issuer'} {ref.get('name')}"
    names = [str(n) for n in spec.get("dnsNames") or []]
    if not names and spec.get("commonName"):
        names = [str(spec["commonName"])]
    what = ("cert-manager Certificate" + (f" for {', '.join(names[:pem.MAX_SANS_SHOWN])}" if names else "")
            + f" (Secret {spec.get('secretName')}, issuer {issuer})")
    not_after, renewal_time = parse_time(status.get("notAfter")), parse_time(status.get("renewalTime"))
    if renewal_time is None:
        renewal = f"cert-manager renews it when due; if it has not, approve {RENEW_RUNBOOK}"
    elif renewal_time > now:
        renewal = f"cert-manager renews it at {_when(renewal_time)}; if it has not, approve {RENEW_RUNBOOK}"
    else:
        renewal = (f"cert-manager was due to renew it at {_when(renewal_time)} and has not: check the issuer "
                   f"{issuer}, then approve {RENEW_RUNBOOK}")
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    not_ready = None
    if ready is not None and ready.get("status") != "True":
        why = " ".join(str(ready.get(k)) for k in ("reason", "message") if ready.get(k))
        not_ready = f"Ready is {ready.get('status')}" + (f": {why}" if why else "")
    elif ready is None and not_after is None:
        not_ready = "never issued (no Ready condition, no notAfter)"
    fix = None
    if not_after is not None:
        params = {"namespace": namespace, "name": name, "not_after": int(not_after.timestamp())}
        fix = Fix(RENEW_RUNBOOK, params, f"Renew Certificate {namespace}/{name}", cluster)
    return Expiry("Certificate", namespace, name, None, what, not_after, owner_of(crt, issuer), renewal, fix,
                  not_ready)


def _pem_renewal(kind: str, obj: dict, cert: pem.CertInfo, certificate: str | None) -> str:
    meta = _meta(obj)
    manager = (meta.get("labels") or {}).get(MANAGER_KEY) or (meta.get("annotations") or {}).get(MANAGER_KEY)
    if cert.is_ca and certificate:
        return (f"a CA in what cert-manager stores for Certificate {certificate}: renewing the Certificate "
                f"does not renew it; rotate the CA ({cert.subject}) of its issuer")
    if kind == "ConfigMap" and meta.get("name") == "kube-root-ca.crt":
        return "the cluster's CA: rotate it by the cluster's CA rotation procedure (kubeadm, the provider's)"
    if cert.is_ca:
        return "a CA certificate: rotate the CA, then update every bundle and trust store that holds it"
    where = f"through {manager}" if manager else "by hand"
    source = "make a new self-signed certificate" if cert.self_signed \
        else f"issue a new certificate from {cert.issuer}"
    return (f"no cert-manager Certificate manages it: {source} and replace the value {where}, or let a "
            "cert-manager Certificate manage this Secret")


def _annotated(kind: str, obj: dict, wanted: list[str], problems: list[str]) -> list[Expiry]:
    meta = _meta(obj)
    found = []
    for key in wanted:
        value = (meta.get("annotations") or {}).get(key)
        if value is None:
            continue
        moment = parse_time(value)
        if moment is None:
            problems.append(f"{kind} {meta.get('namespace')}/{meta.get('name')}: annotation {key} is not a "
                            "date (RFC 3339 or YYYY-MM-DD)")
            continue
        found.append(Expiry(kind, meta.get("namespace"), meta.get("name"), key,
                            f"a credential dated by {key}", moment, owner_of(obj),
                            f"renew it where it was issued, then update {key}"))
    return found


def _scan_certificates(custom: k8s.CustomObjectsApi, config: CredentialsConfig, now: datetime,
                       cluster: str | None, scan: Scan) -> list[dict]:
    timeout = config.request_timeout_seconds
    try:
        found = _list("Certificates", config.namespaces,
                      lambda: _read("list Certificates", custom.list_cluster_custom_object, *CERT_MANAGER_API,
                                    timeout=timeout),
                      lambda ns: _read(f"list Certificates in {ns}", custom.list_namespaced_custom_object,
                                       CERT_MANAGER_API[0], CERT_MANAGER_API[1], ns, CERT_MANAGER_API[2],
                                       timeout=timeout))
    except ReadFailed as exc:
        if exc.status is None:
            raise  # the API server is unreachable: nothing else will read either
        if exc.status == 404:
            scan.notes.append("cert-manager Certificates: cert-manager.io/v1 is not served by this cluster")
        else:
            scan.problems.append(f"cert-manager Certificates not checked: {exc}")
        return []
    for crt in found:
        scan.expiries.append(_certificate_expiry(crt, now, cluster))
        scan.expiries += _annotated("Certificate", crt, config.expiry_annotations, scan.problems)
    scan.count("certmanager", len(found))
    return found


def _holders(core: k8s.CoreV1Api, config: CredentialsConfig, scan: Scan) -> list[tuple[str, dict]]:
    timeout = config.request_timeout_seconds
    sources = [("Secret", core.list_secret_for_all_namespaces, core.list_namespaced_secret)]
    if config.configmaps:
        sources.append(("ConfigMap", core.list_config_map_for_all_namespaces,
                        core.list_namespaced_config_map))
    holders: list[tuple[str, dict]] = []
    for kind, everywhere, in_namespace in sources:
        try:
            holders += [(kind, obj) for obj in _list(
                kind, config.namespaces, lambda e=everywhere, k=kind: _read(f"list {k}s", e, timeout=timeout),
                lambda ns, n=in_namespace, k=kind: _read(f"list {k}s in {ns}", n, ns, timeout=timeout))]
        except ReadFailed as exc:
            hint = f" (the bot's ClusterRole does not grant list on {kind.lower()}s)" \
                if exc.status == 403 else ""
            scan.problems.append(f"certificates in {kind}s not checked: {exc}{hint}")
    return sorted(holders, key=lambda h: (h[0] != "Secret", _meta(h[1]).get("namespace") or "",
                                          _meta(h[1]).get("name") or ""))


def _scan_kubernetes(api: k8s.ApiClient, config: CredentialsConfig, now: datetime, cluster: str | None,
                     scan: Scan) -> None:
    try:
        certificates = _scan_certificates(k8s.CustomObjectsApi(api), config, now, cluster, scan)
    except ReadFailed as exc:
        scan.problems.append(f"Kubernetes API unreachable ({exc}): Secrets, ConfigMaps and cert-manager "
                             "Certificates not checked")
        return
    existing = {(_meta(c).get("namespace"), _meta(c).get("name")) for c in certificates}
    managed = {(_meta(c).get("namespace"), (c.get("spec") or {}).get("secretName")): _meta(c).get("name")
               for c in certificates}
    holders = _holders(k8s.CoreV1Api(api), config, scan)
    if holders and not pem.AVAILABLE:
        scan.problems.append("certificates in Secrets and ConfigMaps not read: the cryptography package is "
                             "missing")
    reported: set[str] = set()
    counted = 0
    for kind, obj in holders:
        meta = _meta(obj)
        scan.expiries += _annotated(kind, obj, config.expiry_annotations, scan.problems)
        if not pem.AVAILABLE:
            continue
        items, problems = pem.certificate_items(kind, obj)
        scan.problems += problems
        namespace, name = meta.get("namespace"), meta.get("name")
        by_annotation = (meta.get("annotations") or {}).get(CERTIFICATE_NAME_ANNOTATION)
        certificate = managed.get((namespace, name))
        if certificate is None and (namespace, by_annotation) in existing:
            certificate = by_annotation
        for item in items:
            counted += 1 + len(item.bundle.sooner_cas)
            certs = ([] if certificate else [item.bundle.primary]) + list(item.bundle.sooner_cas)
            for cert in certs:
                if cert.fingerprint in reported:
                    continue
                reported.add(cert.fingerprint)
                sub_item = item.key if cert is item.bundle.primary \
                    else f"{item.key}/ca-{cert.fingerprint[:16]}"
                scan.expiries.append(Expiry(kind, namespace, name, sub_item, cert.describe(), cert.not_after,
                                            owner_of(obj), _pem_renewal(kind, obj, cert, certificate)))
    scan.count("pem", counted)


def _scan_prometheus(url: str | None, config: CredentialsConfig, now: datetime, scan: Scan) -> None:
    found = pem.check_prometheus(url, now, config.within_days, config.apiserver_lookback_minutes,
                                 config.request_timeout_seconds)
    scan.problems += found.problems
    scan.notes += found.notes
    scan.queries += found.queries
    for what, n in found.checked.items():
        scan.count(what, n)
    scan.expiries += [Expiry(c.kind, None, c.name, c.item, c.what, c.not_after, c.owner, c.renewal,
                             subject=c.subject) for c in found.certificates]


def scan_cluster(config: CredentialsConfig, context: DigestContext, name: str | None, now: datetime) -> Scan:
    """Everything one cluster says; problems instead of exceptions."""
    scan = Scan()
    try:
        access = context.clusters.resolve(name)
    except Exception as exc:  # noqa: BLE001 - a broken directory entry is one problem line
        scan.problems.append(f"cluster {name or DEFAULT_CLUSTER_LABEL}: {type(exc).__name__}: {exc}")
        return scan
    if access is None:
        scan.problems.append(f"cluster {name or DEFAULT_CLUSTER_LABEL} is not configured (with several "
                             "clusters in OPSBOT_CLUSTERS, name them in credentials.clusters)")
        return scan
    if access.api_client is None:
        scan.problems.append("Kubernetes is not configured: Secrets, ConfigMaps and Certificates not checked")
    else:
        try:
            api = access.api_client()
        except Exception as exc:  # noqa: BLE001 - a kubeconfig that does not load
            scan.problems.append("Kubernetes not checked: the client could not be made "
                                 f"({type(exc).__name__}: {exc})")
        else:
            try:
                _scan_kubernetes(api, config, now, name, scan)
            finally:
                api.close()
    if config.cluster_certificates:
        _scan_prometheus(access.prometheus_url, config, now, scan)
    return scan


# -- findings -------------------------------------------------------------------------------------

def finding_key(cluster: str, expiry: Expiry) -> str:
    key = f"credentials/{cluster}/{expiry.kind}/{expiry.namespace or '-'}/{expiry.name}"
    return key + (f"/{expiry.item}" if expiry.item else "")


def to_finding(expiry: Expiry, now: datetime, within_days: int, cluster: str,
               name_cluster: bool) -> Finding | None:
    """The finding for one credential, or None when it is fine (valid past the window, Ready)."""
    days_left = (expiry.not_after - now).total_seconds() / 86400 if expiry.not_after else None
    expiring = SECTION_EXPIRING.format(days=within_days)
    severity: Severity
    if days_left is not None and days_left <= 0:
        section, severity = SECTION_EXPIRED, "critical"
    elif days_left is not None and days_left <= within_days:
        section = expiring
        severity = "critical" if days_left <= CRITICAL_WITHIN_DAYS else "warning"
    elif expiry.not_ready:
        section, severity = SECTION_NOT_READY, "warning"
    else:
        return None
    subject = expiry.subject or " ".join(filter(None, (
        expiry.kind, f"{expiry.namespace}/{expiry.name}" if expiry.namespace else expiry.name,
        expiry.item.split("/")[0] if expiry.item else None)))
    if name_cluster:
        subject += f" (cluster {cluster})"
    detail = f"{expiry.what}; " + (_left(expiry.not_after, now) if expiry.not_after
                                   else "no certificate issued yet")
    if expiry.not_ready:
        detail += f"; {expiry.not_ready}"
    detail += f". {expiry.owner[0].upper() + expiry.owner[1:]}. How it is renewed: {expiry.renewal}."
    fix = expiry.fix if section != SECTION_NOT_READY else None
    numbers = {"days_left": round(days_left, 2)} if days_left is not None else {}
    return Finding(finding_key(cluster, expiry), section, subject, detail, severity, None, fix, numbers)


def _order(finding: Finding) -> tuple[int, float, str]:
    rank = 0 if finding.section == SECTION_EXPIRED else 2 if finding.section == SECTION_NOT_READY else 1
    return rank, finding.numbers.get("days_left", float("inf")), finding.key


def headline(findings: list[Finding], checked: dict[str, int], within_days: int, problems: list[str]) -> str:
    expired = sum(1 for f in findings if f.section == SECTION_EXPIRED)
    not_ready = sum(1 for f in findings if f.section == SECTION_NOT_READY)
    expiring = len(findings) - expired - not_ready
    counts = ", ".join(f"{n} {CHECKED_NOUNS.get(what, (what, what))[n != 1]}"
                       for what, n in checked.items() if n) or "nothing could be read"
    failed = f"; {len(problems)} check(s) could not run" if problems else ""
    if not findings:
        return f"Nothing expires within {within_days} days (checked {counts}){failed}"
    parts = ([f"{expired} expired"] if expired else []) + \
        ([f"{expiring} expire within {within_days} days"] if expiring else []) + \
        ([f"{not_ready} cert-manager Certificate(s) not ready"] if not_ready else [])
    return ", ".join(parts) + f" (checked {counts}){failed}"


def build(config: CredentialsConfig, context: DigestContext) -> DigestReport:
    """The digest over every configured cluster; never raises for what a cluster or Prometheus does."""
    now = context.now if context.now.tzinfo else context.now.replace(tzinfo=UTC)
    names: list[str | None] = list(config.clusters) or [None]
    several = len(names) > 1
    findings: dict[str, Finding] = {}
    problems: list[str] = []
    notes = [f"window: {config.within_days} days from {_when(now)}; expired or expiring within "
             f"{CRITICAL_WITHIN_DAYS:g} days is critical"]
    queries: list[str] = []
    checked: dict[str, int] = {}
    for name in names:
        label = name or DEFAULT_CLUSTER_LABEL
        scan = scan_cluster(config, context, name, now)
        prefix = f"cluster {label}: " if several else ""
        problems += [prefix + p for p in scan.problems]
        notes += [prefix + n for n in scan.notes]
        queries += [q for q in scan.queries if q not in queries]
        for what, n in scan.checked.items():
            checked[what] = checked.get(what, 0) + n
        for expiry in scan.expiries:
            finding = to_finding(expiry, now, config.within_days, label, several)
            if finding is not None:
                findings.setdefault(finding.key, finding)
    ordered = sorted(findings.values(), key=_order)
    expired = sum(1 for f in ordered if f.section == SECTION_EXPIRED)
    not_ready = sum(1 for f in ordered if f.section == SECTION_NOT_READY)
    summary = {"expired": float(expired), "expiring": float(len(ordered) - expired - not_ready),
               "not_ready": float(not_ready), "checked": float(sum(checked.values()))}
    return DigestReport(NAME, TITLE, headline(ordered, checked, config.within_days, problems), now,
                        tuple(ordered), tuple(problems), tuple(notes), tuple(queries), summary=summary)
