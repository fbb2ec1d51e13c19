"""The credentials digest's cluster certificates from a real Prometheus: the kubelets' client and
server certificate TTLs and the API server's client-certificate histogram, backfilled around the
digest's time with the labels kubernetes-mixin's rules use."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from bot.digests.credentials import CredentialsConfig, build
from bot.sandbox.promvalues import SeriesSamples, openmetrics_text
from tests.digests.test_credentials import NOW, cluster, context_for, issue, server, tls  # noqa: F401

pytestmark = pytest.mark.prometheus
MINUTES = 60
DAY = 86400.0
# the API server's bucket bounds (apiserver_client_certificate_expiration_seconds), in seconds
BUCKETS = (
    "0",
    "1800",
    "3600",
    "7200",
    "21600",
    "43200",
    "86400",
    "172800",
    "345600",
    "604800",
    "2592000",
    "7776000",
    "15552000",
    "31104000",
    "+Inf",
)


def _times() -> list[int]:
    start = NOW - timedelta(minutes=MINUTES)
    return [int((start + timedelta(minutes=i)).timestamp() * 1000) for i in range(MINUTES + 1)]


def ttl(metric: str, node: str, seconds_left_at_now: float) -> SeriesSamples:
    """A kubelet TTL gauge counting down to `seconds_left_at_now` at NOW."""
    now_ms = int(NOW.timestamp() * 1000)
    return SeriesSamples(
        metric,
        {"job": "kubelet", "node": node, "instance": f"{node}:10250"},
        [(t, seconds_left_at_now + (now_ms - t) / 1000) for t in _times()],
    )


def histogram(instance: str, seconds_left: float, per_minute: int) -> list[SeriesSamples]:
    """Cumulative buckets of requests whose client certificate has `seconds_left` on it."""
    return [
        SeriesSamples(
            "apiserver_client_certificate_expiration_seconds_bucket",
            {"job": "apiserver", "instance": instance, "le": le},
            [
                (t, float(per_minute * i) if float(le) >= seconds_left else 0.0)
                for i, t in enumerate(_times())
            ],
        )
        for le in BUCKETS
    ]


@pytest.fixture
def prometheus(prometheus_factory):
    series = [
        ttl("kubelet_certificate_manager_client_ttl_seconds", "node-a", 3 * DAY),
        ttl("kubelet_certificate_manager_client_ttl_seconds", "node-b", 200 * DAY),
        ttl("kubelet_certificate_manager_server_ttl_seconds", "node-a", -3600),
        ttl("kubelet_certificate_manager_server_ttl_seconds", "node-b", 300 * DAY),
        *histogram("10.0.0.1:6443", 5 * DAY, 2),
        *histogram("10.0.0.2:6443", 400 * DAY, 5),
    ]
    return prometheus_factory(openmetrics=openmetrics_text(series))


def test_kubelet_and_api_server_certificates_come_from_prometheus(prometheus, cluster, server):  # noqa: F811
    cluster.load([tls("shop", "web-tls", issue("web", 10))])
    report = build(CredentialsConfig(), context_for(server, prometheus.url))
    assert report.problems == ()
    assert [f.key for f in report.findings] == [
        "credentials/default/Node/-/node-a/kubelet-server",
        "credentials/default/Node/-/node-a/kubelet-client",
        "credentials/default/APIServer/-/10.0.0.1:6443/client-certificates",
        "credentials/default/Secret/shop/web-tls/tls.crt",
    ]
    server_cert, client_cert, apiserver, _ = report.findings
    assert (server_cert.section, server_cert.severity, server_cert.subject) == (
        "Expired",
        "critical",
        "Node node-a kubelet server certificate",
    )
    assert server_cert.numbers["days_left"] == pytest.approx(-1 / 24, abs=0.01)
    assert "CSR" in server_cert.detail and "The kubelet on node node-a" in server_cert.detail
    assert (
        client_cert.numbers["days_left"] == pytest.approx(3, abs=0.01) and client_cert.severity == "critical"
    )
    assert "rotateCertificates" in client_cert.detail
    assert apiserver.numbers["days_left"] == pytest.approx(7)
    assert "request(s) presented a client certificate that expires within 7 days" in apiserver.detail
    assert "counts requests" in apiserver.detail and "cannot say which client" in apiserver.detail
    requests_seen = int(re.search(r"(\d+) request\(s\) presented", apiserver.detail).group(1))
    assert 100 <= requests_seen <= 130, "about 2 a minute for an hour"
    assert "min by (node, instance) (kubelet_certificate_manager_client_ttl_seconds)" in report.queries
    assert any(
        "increase(apiserver_client_certificate_expiration_seconds_bucket[60m])" in q for q in report.queries
    )
    assert (
        "4 kubelet certificates" in report.headline and "2 API servers' client-certificate" in report.headline
    )


def test_a_narrower_window_leaves_the_later_ones_out(prometheus, server):  # noqa: F811
    report = build(CredentialsConfig(within_days=2), context_for(server, prometheus.url))
    assert [f.key for f in report.findings] == ["credentials/default/Node/-/node-a/kubelet-server"]
    assert report.headline.startswith("1 expired (checked ")


def test_a_prometheus_without_these_metrics_says_what_it_did_not_check(prometheus_factory, server):  # noqa: F811
    empty = prometheus_factory()
    report = build(CredentialsConfig(), context_for(server, empty.url))
    assert report.findings == () and report.problems == ()
    assert any("kubelet client certificates not checked: Prometheus has no" in n for n in report.notes)
    assert any("API server client certificates not checked" in n for n in report.notes)
