"""The credentials digest against the sandbox API server through the real client: Secrets and
ConfigMaps holding real PEM certificates made here with `cryptography` (chosen notAfter),
cert-manager Certificates, expiry annotations, and the failures that must become problem lines."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot.context.clusters import ClusterAccess, ClusterDirectory
from bot.digests.credentials import CredentialsConfig, build, parse_time
from bot.digests.model import DigestContext, DigestReport
from bot.sandbox.kube import KubeApiServer, SandboxCluster, sandbox_api_client
from bot.sandbox.promstack import free_port
from tests.digests.golden import check_digest_golden

NOW = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
NO_PROMETHEUS = CredentialsConfig(cluster_certificates=False)


@dataclass(frozen=True)
class Issued:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey
    pem: bytes

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def issue(
    cn: str, days: float, *, ca: bool = False, sans: tuple[str, ...] = (), signer: Issued | None = None
) -> Issued:
    """A real certificate for `cn` that ends `days` from NOW, self-signed unless `signer` signs it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    not_after = NOW + timedelta(days=days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.name if signer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=400))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    cert = builder.sign(signer.key if signer else key, hashes.SHA256())
    return Issued(subject, key, cert.public_bytes(serialization.Encoding.PEM))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def secret(
    namespace: str,
    name: str,
    data: dict[str, bytes],
    *,
    kind: str = "kubernetes.io/tls",
    labels: dict | None = None,
    annotations: dict | None = None,
) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "data": {k: b64(v) for k, v in data.items()},
    }


def tls(namespace: str, name: str, cert: Issued, chain: bytes = b"", **meta) -> dict:
    return secret(namespace, name, {"tls.crt": cert.pem + chain, "tls.key": cert.key_pem}, **meta)


def certificate(
    namespace: str,
    name: str,
    not_after_days: float | None,
    *,
    secret_name: str,
    renewal_days: float | None = None,
    ready: tuple[str, str, str] = ("True", "Ready", "up to date"),
    issuer: str = "letsencrypt",
) -> dict:
    status: dict = {
        "conditions": [{"type": "Ready", "status": ready[0], "reason": ready[1], "message": ready[2]}]
    }
    if not_after_days is not None:
        status["notAfter"] = (NOW + timedelta(days=not_after_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    if renewal_days is not None:
        status["renewalTime"] = (NOW + timedelta(days=renewal_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "secretName": secret_name,
            "dnsNames": [f"{name}.example.com"],
            "issuerRef": {"name": issuer, "kind": "ClusterIssuer", "group": "cert-manager.io"},
        },
        "status": status,
    }


@pytest.fixture
def cluster() -> SandboxCluster:
    return SandboxCluster(now=NOW)


@pytest.fixture
def server(cluster: SandboxCluster) -> Iterator[KubeApiServer]:
    with KubeApiServer(cluster) as running:
        yield running


def context_for(server: KubeApiServer, prometheus_url: str | None = None) -> DigestContext:
    access = ClusterAccess(None, lambda: sandbox_api_client(server.base_url), prometheus_url)
    return DigestContext(clusters=ClusterDirectory(access), now=NOW)


def run(server: KubeApiServer, config: CredentialsConfig = NO_PROMETHEUS) -> DigestReport:
    return build(config, context_for(server))


def by_key(report: DigestReport) -> dict:
    return {f.key: f for f in report.findings}


def test_tls_secrets_are_reported_by_section_soonest_first_without_key_material(cluster, server):
    soon, later, gone, fine = (
        issue("soon.shop", 5),
        issue("later.shop", 15),
        issue("gone.shop", -2),
        issue("ok", 90),
    )
    bundle = issue("partner-ca", 10, ca=True)
    cluster.load(
        [
            tls("shop", "soon-tls", soon, labels={"team": "payments"}),
            tls("shop", "later-tls", later, annotations={"app.kubernetes.io/managed-by": "Helm"}),
            tls("edge", "gone-tls", gone),
            tls("edge", "fine-tls", fine),
            secret("shop", "partner", {"ca.pem": bundle.pem, "password": b"hunter2"}, kind="Opaque"),
        ]
    )
    report = run(server)
    assert [f.key for f in report.findings] == [
        "credentials/default/Secret/edge/gone-tls/tls.crt",
        "credentials/default/Secret/shop/soon-tls/tls.crt",
        "credentials/default/Secret/shop/partner/ca.pem",
        "credentials/default/Secret/shop/later-tls/tls.crt",
    ]
    gone_f, soon_f, partner_f, later_f = report.findings
    assert (gone_f.section, gone_f.severity) == ("Expired", "critical")
    assert (soon_f.section, soon_f.severity) == ("Expiring within 21 days", "critical")
    assert (later_f.section, later_f.severity) == ("Expiring within 21 days", "warning")
    assert soon_f.numbers["days_left"] == pytest.approx(5, abs=0.01) and gone_f.numbers["days_left"] < 0
    assert "Owner payments (team)" in soon_f.detail and "Managed by Helm" in later_f.detail
    assert "self-signed certificate and replace the value through Helm" in later_f.detail
    assert "Owner unknown" in gone_f.detail
    assert "CA certificate CN=partner-ca" in partner_f.detail and "rotate the CA" in partner_f.detail
    assert soon_f.subject == "Secret shop/soon-tls tls.crt" and all(f.since is None for f in report.findings)
    assert all(f.fix is None for f in report.findings), "no runbook renews a Secret nobody manages"
    everything = repr(report)
    for secret_value in (soon.key_pem.decode().splitlines()[1], b64(soon.key_pem)[:40], "hunter2", "PRIVATE"):
        assert secret_value not in everything
    assert report.headline.startswith("1 expired, 3 expire within 21 days (checked 5 certificates")
    assert report.summary["expired"] == 1 and report.summary["expiring"] == 3 and report.problems == ()


def test_a_ca_in_a_chain_that_expires_before_its_leaf_is_its_own_finding(cluster, server):
    ca = issue("shop-intermediate", 9, ca=True)
    leaf = issue("api.shop", 60, sans=("api.shop.example", "api-internal.shop"), signer=ca)
    longer_ca = issue("shop-root", 400, ca=True)
    cluster.load([tls("shop", "api-tls", leaf, chain=ca.pem + longer_ca.pem)])
    report = run(server)
    (finding,) = report.findings
    assert finding.key.startswith("credentials/default/Secret/shop/api-tls/tls.crt/ca-")
    assert "CA certificate CN=shop-intermediate" in finding.detail and finding.numbers[
        "days_left"
    ] == pytest.approx(9)
    leaf_only = CredentialsConfig(cluster_certificates=False, within_days=90)
    keys = [f.key for f in build(leaf_only, context_for(server)).findings]
    assert keys[1] == "credentials/default/Secret/shop/api-tls/tls.crt"
    assert (
        "for api.shop.example, api-internal.shop, issued by CN=shop-intermediate"
        in build(leaf_only, context_for(server)).findings[1].detail
    )


def test_cert_manager_certificates_stand_for_their_secrets_and_carry_the_renew_fix(cluster, server):
    managed = issue("orders.example.com", 6)
    by_annotation = issue("billing.example.com", 6)
    orphan = issue("old.example.com", 4)
    cluster.load(
        [
            certificate("shop", "orders", 6, secret_name="orders-tls", renewal_days=-1),
            tls("shop", "orders-tls", managed),
            certificate("shop", "billing", 6, secret_name="billing-cert", renewal_days=2),
            tls(
                "shop",
                "billing-tls",
                by_annotation,
                annotations={"cert-manager.io/certificate-name": "billing"},
            ),
            tls(
                "shop",
                "old-tls",
                orphan,
                annotations={"cert-manager.io/certificate-name": "deleted-long-ago"},
            ),
            certificate(
                "shop",
                "broken",
                80,
                secret_name="broken-tls",
                ready=("False", "Failed", "ACME order failed: rate limited"),
            ),
            certificate("shop", "healthy", 80, secret_name="healthy-tls"),
            certificate(
                "shop", "new", None, secret_name="new-tls", ready=("False", "DoesNotExist", "Issuing")
            ),
        ]
    )
    report = run(server)
    found = by_key(report)
    assert set(found) == {
        "credentials/default/Certificate/shop/orders",
        "credentials/default/Certificate/shop/billing",
        "credentials/default/Secret/shop/old-tls/tls.crt",
        "credentials/default/Certificate/shop/broken",
        "credentials/default/Certificate/shop/new",
    }
    orders = found["credentials/default/Certificate/shop/orders"]
    not_after = int(
        parse_time(
            cluster.get("certificates.cert-manager.io", "shop", "orders")["status"]["notAfter"]
        ).timestamp()
    )
    assert orders.fix is not None and orders.fix.runbook == "renew-certificate"
    assert dict(orders.fix.params) == {"namespace": "shop", "name": "orders", "not_after": not_after}
    assert "was due to renew it at" in orders.detail and "approve renew-certificate" in orders.detail
    assert "Issued by cert-manager ClusterIssuer letsencrypt" in orders.detail
    billing = found["credentials/default/Certificate/shop/billing"]
    assert (
        "cert-manager renews it at" in billing.detail
        and "; if it has not, approve renew-certificate" in billing.detail
    )
    broken = found["credentials/default/Certificate/shop/broken"]
    assert (broken.section, broken.fix) == ("Not ready", None)
    assert "Ready is False: Failed ACME order failed: rate limited" in broken.detail
    assert "no certificate issued yet" in found["credentials/default/Certificate/shop/new"].detail
    assert [f.section for f in report.findings] == ["Expiring within 21 days"] * 3 + ["Not ready"] * 2
    assert report.findings[0].key.endswith("Secret/shop/old-tls/tls.crt"), "soonest first"
    in_shop = build(CredentialsConfig(cluster_certificates=False, namespaces=["shop"]), context_for(server))
    assert [f.key for f in in_shop.findings] == [f.key for f in report.findings]
    elsewhere = build(CredentialsConfig(cluster_certificates=False, namespaces=["edge"]), context_for(server))
    assert elsewhere.findings == () and elsewhere.problems == ()
    check_digest_golden("digest_credentials", report, mask_numbers=True)  # issued relative to now


def test_the_same_certificate_in_many_objects_is_reported_once_and_annotations_date_others(cluster, server):
    root = issue("kubernetes", 12, ca=True)
    config_maps = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt", "namespace": ns},
            "data": {"ca.crt": root.pem.decode()},
        }
        for ns in ("default", "shop", "edge")
    ]
    token = secret(
        "shop",
        "vendor-token",
        {"token": b"opaque"},
        kind="Opaque",
        annotations={
            "opsbot.io/expires-at": (NOW + timedelta(days=3)).date().isoformat(),
            "owner": "integrations",
        },
    )
    bad = secret(
        "shop", "bad-date", {"token": b"x"}, kind="Opaque", annotations={"opsbot.io/expires-at": "soon"}
    )
    cluster.load([*config_maps, token, bad])
    report = run(server)
    found = by_key(report)
    assert set(found) == {
        "credentials/default/ConfigMap/default/kube-root-ca.crt/ca.crt",
        "credentials/default/Secret/shop/vendor-token/opsbot.io/expires-at",
    }
    assert "the cluster's CA" in found["credentials/default/ConfigMap/default/kube-root-ca.crt/ca.crt"].detail
    dated = found["credentials/default/Secret/shop/vendor-token/opsbot.io/expires-at"]
    assert "Owner integrations (owner)" in dated.detail and dated.severity == "critical"
    assert report.problems == (
        "Secret shop/bad-date: annotation opsbot.io/expires-at is not a date (RFC 3339 or YYYY-MM-DD)",
    )
    only_shop = build(CredentialsConfig(cluster_certificates=False, namespaces=["edge"]), context_for(server))
    assert [f.key for f in only_shop.findings] == [
        "credentials/default/ConfigMap/edge/kube-root-ca.crt/ca.crt"
    ]


def test_nothing_to_report_says_so_with_what_was_checked(cluster, server):
    cluster.load(
        [tls("shop", "web-tls", issue("web", 120)), certificate("shop", "web", 120, secret_name="web-tls")]
    )
    report = run(server)
    assert report.findings == () and report.problems == () and report.clean
    assert report.headline == (
        "Nothing expires within 21 days (checked 1 cert-manager Certificate, "
        "1 certificate in a Secret or ConfigMap)"
    )


def test_what_cannot_be_read_is_a_problem_line_and_the_rest_still_reports(cluster, server):
    cluster.load(
        [
            tls("shop", "web-tls", issue("web", 3)),
            certificate("shop", "api", 2, secret_name="api-tls"),
            secret(
                "shop",
                "broken",
                {"tls.crt": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
                kind="Opaque",
            ),
        ]
    )
    cluster.deny("list", "secrets")
    closed = f"http://127.0.0.1:{free_port()}"
    report = build(CredentialsConfig(), context_for(server, prometheus_url=closed))
    assert [f.key for f in report.findings] == ["credentials/default/Certificate/shop/api"]
    assert any(
        "certificates in Secrets not checked" in p and "403" in p and "ClusterRole" in p
        for p in report.problems
    )
    assert any("kubelet certificates not checked: Prometheus at " + closed in p for p in report.problems)
    assert any("API server client certificates not checked" in p for p in report.problems)
    assert "check(s) could not run" in report.headline
    down = DigestContext(
        clusters=ClusterDirectory(ClusterAccess(None, lambda: sandbox_api_client(closed), None)), now=NOW
    )
    report = build(CredentialsConfig(), down)
    assert report.findings == () and not report.clean
    assert any(p.startswith("Kubernetes API unreachable") for p in report.problems)
    assert any("no Prometheus configured" in p for p in report.problems)
    assert report.headline.startswith("Nothing expires within 21 days (checked nothing could be read)")


def test_a_value_that_only_looks_like_a_certificate_is_a_problem_not_a_crash(cluster, server):
    garbage = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    cluster.load(
        [secret("shop", "junk", {"tls.crt": garbage, "tls.key": b"k"}), tls("shop", "ok", issue("ok", 2))]
    )
    report = run(server)
    assert [f.key for f in report.findings] == ["credentials/default/Secret/shop/ok/tls.crt"]
    assert report.problems == (
        "Secret shop/junk: tls.crt holds a PEM certificate that could not be read: a "
        "certificate block does not parse (ValueError)",
    )


def test_an_unknown_cluster_is_a_problem(server):
    directory = ClusterDirectory(
        None, {"eu": ClusterAccess("eu", lambda: sandbox_api_client(server.base_url), None)}
    )
    report = build(
        CredentialsConfig(clusters=["us"], cluster_certificates=False),
        DigestContext(clusters=directory, now=NOW),
    )
    assert report.problems == (
        "cluster us is not configured (with several clusters in OPSBOT_CLUSTERS, name them "
        "in credentials.clusters)",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-09-30T12:00:00Z", datetime(2026, 9, 30, 12, tzinfo=UTC)),
        ("2026-09-30", datetime(2026, 9, 30, tzinfo=UTC)),
        ("2026-09-30T14:00:00+02:00", datetime(2026, 9, 30, 12, tzinfo=UTC)),
        ("next tuesday", None),
        ("", None),
        (None, None),
    ],
)
def test_expiry_times_are_rfc3339_or_dates(text, expected):
    assert parse_time(text) == expected
