"""Certificates as facts for the credentials digest: parsed from PEM values in Kubernetes
object data, or read from what Prometheus knows about the kubelets' and API server's ones.

Invariants:
- Only public fields of a certificate leave this module (`CertInfo`: subject, SANs, issuer,
  validity, whether it is a CA, the SHA-256 fingerprint of the DER). A value is looked at only
  when it holds a PEM `CERTIFICATE` block, and only those blocks are handed to `cryptography`:
  a private key next to a certificate in the same value is never parsed, copied or returned.
- A bundle's primary certificate is its first leaf (not a CA), else its first certificate. The
  primary decides when the item expires; a CA in the bundle that expires before the primary is
  reported on its own (`sooner_cas`), since renewing the leaf does not renew it.
- Prometheus: the metrics kubernetes-mixin alerts on (`kubelet_certificate_manager_*_ttl_seconds`,
  `apiserver_client_certificate_expiration_seconds`). The API server's histogram counts
  requests authenticated with a client certificate by the time left on it: it cannot name the
  certificate or the client, and its buckets only bound the time left, which the text says.
- Bad input is a problem line naming the object and the key, an unreachable Prometheus a
  problem line naming the URL; never an exception. Without the `cryptography` package every
  value is a problem (`AVAILABLE` is False), nothing is guessed.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtensionOID, NameOID

    AVAILABLE = True
except ImportError:  # degrade: the digest says certificates in object data were not read
    AVAILABLE = False

PEM_MARKER = b"-----BEGIN CERTIFICATE-----"
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----")
MAX_SANS_SHOWN = 4


@dataclass(frozen=True)
class CertInfo:
    """The public facts of one certificate."""

    subject: str
    sans: tuple[str, ...]
    issuer: str
    not_before: datetime
    not_after: datetime
    is_ca: bool
    fingerprint: str  # SHA-256 of the DER, hex

    @property
    def self_signed(self) -> bool:
        return self.subject == self.issuer

    def describe(self) -> str:
        """One plain line: what the certificate is for and who issued it."""
        role = "CA certificate" if self.is_ca else "certificate"
        names = ""
        if self.sans:
            shown = ", ".join(self.sans[:MAX_SANS_SHOWN])
            more = len(self.sans) - MAX_SANS_SHOWN
            names = f" for {shown}" + (f" and {more} more" if more > 0 else "")
        issuer = "self-signed" if self.self_signed else f"issued by {self.issuer}"
        return f"{role} {self.subject}{names}, {issuer}"


@dataclass(frozen=True)
class Bundle:
    """The certificates of one data value: the primary one and the CAs that expire before it."""

    primary: CertInfo
    sooner_cas: tuple[CertInfo, ...]


def _name(name: x509.Name) -> str:
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if common:
        return f"CN={common[0].value}"
    return name.rfc4514_string() or "(empty name)"


def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        extension = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return ()
    names = extension.value.get_values_for_type(x509.DNSName)
    addresses = [str(ip) for ip in extension.value.get_values_for_type(x509.IPAddress)]
    return tuple(names) + tuple(addresses)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca)
    except x509.ExtensionNotFound:
        return False


def info(cert: x509.Certificate) -> CertInfo:
    return CertInfo(subject=_name(cert.subject), sans=_sans(cert), issuer=_name(cert.issuer),
                    not_before=cert.not_valid_before_utc.astimezone(UTC),
                    not_after=cert.not_valid_after_utc.astimezone(UTC), is_ca=_is_ca(cert),
                    fingerprint=cert.fingerprint(hashes.SHA256()).hex())


def holds_certificate(raw: bytes) -> bool:
    return PEM_MARKER in raw


def parse_bundle(raw: bytes) -> Bundle:
    """The certificates of a PEM value; ValueError when none parses (with why, no data)."""
    if not AVAILABLE:
        raise ValueError("the cryptography package is not installed")
    certs: list[CertInfo] = []
    for block in _PEM_BLOCK.findall(raw):
        try:
            certs.append(info(x509.load_pem_x509_certificate(block)))
        except ValueError as exc:
            raise ValueError(f"a certificate block does not parse ({type(exc).__name__})") from None
    if not certs:
        raise ValueError("no complete PEM certificate block")
    primary = next((c for c in certs if not c.is_ca), certs[0])
    sooner = tuple(c for c in certs if c is not primary and c.is_ca and c.not_after < primary.not_after)
    return Bundle(primary, sooner)


@dataclass(frozen=True)
class Item:
    """One data value of an object that holds certificates."""

    key: str
    bundle: Bundle


def data_values(kind: str, obj: Mapping) -> Iterator[tuple[str, bytes | None]]:
    """(key, raw bytes) of every data value of a Secret (base64 `.data`) or ConfigMap (`.data`
    text, `.binaryData` base64); raw is None for a value that is not valid base64."""
    encoded = dict(obj.get("data") or {}) if kind == "Secret" else dict(obj.get("binaryData") or {})
    plain = dict(obj.get("data") or {}) if kind == "ConfigMap" else {}
    for key, value in sorted(plain.items()):
        if isinstance(value, str):
            yield key, value.encode()
    for key, value in sorted(encoded.items()):
        try:
            yield key, base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            yield key, None


def certificate_items(kind: str, obj: Mapping) -> tuple[list[Item], list[str]]:
    """The certificate-holding values of a Secret or ConfigMap, and problems (one line each)."""
    meta = obj.get("metadata") or {}
    where = f"{kind} {meta.get('namespace')}/{meta.get('name')}"
    items: list[Item] = []
    problems: list[str] = []
    for key, raw in data_values(kind, obj):
        if raw is None:
            if kind == "Secret" and (obj.get("type") == "kubernetes.io/tls" and key == "tls.crt"):
                problems.append(f"{where}: {key} is not valid base64")
            continue
        if not holds_certificate(raw):
            continue
        try:
            items.append(Item(key, parse_bundle(raw)))
        except ValueError as exc:
            problems.append(f"{where}: {key} holds a PEM certificate that could not be read: {exc}")
    tls_without_certificate = kind == "Secret" and obj.get("type") == "kubernetes.io/tls" \
        and "tls.crt" not in {i.key for i in items}
    if tls_without_certificate and not any(p.startswith(f"{where}: tls.crt") for p in problems):
        problems.append(f"{where}: a kubernetes.io/tls Secret without a certificate in tls.crt")
    return items, problems




# -- what Prometheus knows ------------------------------------------------------------------------

KUBELET_TTL_METRICS: Mapping[str, str] = {
    "client": "kubelet_certificate_manager_client_ttl_seconds",
    "server": "kubelet_certificate_manager_server_ttl_seconds",
}
KUBELET_RENEWAL: Mapping[str, str] = {
    "client": ("the kubelet rotates it itself (rotateCertificates); if it has not, look at the node's "
               "kubelet log and at pending CSRs (kubectl get csr)"),
    "server": ("with serverTLSBootstrap the kubelet requests a new one through a CSR that someone must "
               "approve (kubectl get csr); otherwise replace the kubelet's serving certificate on the node"),
}
APISERVER_HISTOGRAM = "apiserver_client_certificate_expiration_seconds_bucket"
APISERVER_RENEWAL = ("the API server only counts these requests: find the client that presents the "
                     "certificate (the API server's audit log names the user) and renew its credentials")


@dataclass(frozen=True)
class MetricCertificate:
    """A certificate known only through Prometheus. `not_after` is now + the time left; for the
    API server's histogram it is the upper bound of the lowest non-empty bucket."""

    kind: str  # "Node" (a kubelet's) or "APIServer" (client certificates seen by an API server)
    name: str
    item: str
    subject: str
    what: str
    not_after: datetime
    owner: str
    renewal: str


@dataclass
class PrometheusChecks:
    certificates: list[MetricCertificate]
    problems: list[str]
    notes: list[str]
    queries: list[str]
    checked: dict[str, int]


def _instant(client: Any, query: str, now: datetime) -> list[dict]:
    return list(client.custom_query(query, params={"time": f"{now.timestamp():.3f}"}) or [])


def _kubelets(client: Any, now: datetime, found: PrometheusChecks) -> None:
    for role, metric in KUBELET_TTL_METRICS.items():
        query = f"min by (node, instance) ({metric})"
        found.queries.append(query)
        series = _instant(client, query, now)
        if not series:
            found.notes.append(f"kubelet {role} certificates not checked: Prometheus has no {metric}")
            continue
        found.checked["kubelet"] = found.checked.get("kubelet", 0) + len(series)
        for item in series:
            labels, seconds = item.get("metric") or {}, float(item["value"][1])
            node = labels.get("node") or labels.get("instance") or "unknown"
            found.certificates.append(MetricCertificate(
                "Node", node, f"kubelet-{role}", f"Node {node} kubelet {role} certificate",
                f"the kubelet's {role} certificate ({metric})", now + timedelta(seconds=seconds),
                f"the kubelet on node {node}", KUBELET_RENEWAL[role]))


def _apiservers(client: Any, now: datetime, within_days: int, lookback_minutes: int,
                found: PrometheusChecks) -> None:
    query = f"sum by (instance, le) (increase({APISERVER_HISTOGRAM}[{lookback_minutes}m]))"
    found.queries.append(query)
    buckets: dict[str, dict[float, float]] = {}
    for item in _instant(client, query, now):
        labels = item.get("metric") or {}
        try:
            bound = float(labels.get("le", "nan"))
        except ValueError:
            continue
        buckets.setdefault(labels.get("instance") or "unknown", {})[bound] = float(item["value"][1])
    if not buckets:
        found.notes.append("API server client certificates not checked: Prometheus has no "
                           f"{APISERVER_HISTOGRAM}")
        return
    found.checked["apiserver"] = len(buckets)
    window = within_days * 86400.0
    for instance, counts in sorted(buckets.items()):
        bounds = sorted(b for b in counts if b <= window)
        if not bounds or counts[bounds[-1]] <= 0:
            continue
        lowest = next(b for b in bounds if counts[b] > 0)
        requests = round(counts[lowest])
        if lowest <= 0:
            told = f"{requests} request(s) presented a client certificate that had already expired"
        else:
            told = (f"{round(counts[bounds[-1]])} request(s) presented a client certificate that expires "
                    f"within {bounds[-1] / 86400:g} days (the soonest within {lowest / 86400:g} days)")
        found.certificates.append(MetricCertificate(
            "APIServer", instance, "client-certificates", f"API server {instance} client certificates",
            f"{told} in the last {lookback_minutes} minutes; the histogram counts requests by the time left "
            "on the certificate, not certificates, and cannot say which client",
            now + timedelta(seconds=lowest),
            "the clients of the API server (unknown from metrics)", APISERVER_RENEWAL))


def check_prometheus(url: str | None, now: datetime, within_days: int, lookback_minutes: int,
                     timeout_seconds: float) -> PrometheusChecks:
    """The kubelets' and API server's certificates from Prometheus at `url`, at time `now`."""
    found = PrometheusChecks([], [], [], [], {})
    if not url:
        found.problems.append("no Prometheus configured: kubelet and API server client certificates not "
                              "checked")
        return found
    from prometheus_api_client import PrometheusConnect

    client = PrometheusConnect(url=url, disable_ssl=not url.startswith("https"), timeout=timeout_seconds)
    checks = (("kubelet certificates", lambda: _kubelets(client, now, found)),
              ("API server client certificates",
               lambda: _apiservers(client, now, within_days, lookback_minutes, found)))
    unreachable = None
    for what, check in checks:
        if unreachable is not None:
            found.problems.append(f"{what} not checked: Prometheus at {url} is unreachable ({unreachable})")
            continue
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - unreachable, an error answer, a malformed result: one line
            found.problems.append(f"{what} not checked: Prometheus at {url} could not be queried "
                                  f"({type(exc).__name__}: {str(exc)[:200]})")
            if isinstance(exc, requests.exceptions.ConnectionError):
                unreachable = type(exc).__name__
    return found
