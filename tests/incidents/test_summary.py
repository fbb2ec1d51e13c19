import pytest

from bot.incidents.summary import AlertFacts, summarise


def alert(name="KubePodCrashLooping", status="firing", annotations=None, **labels):
    return AlertFacts(name, status, {"alertname": name, **labels}, annotations or {}, None)


@pytest.mark.parametrize(
    ("labels", "service"),
    [
        ({"service": "checkout", "pod": "x-abcde"}, "checkout"),
        ({"pod": "orders-api-wrvcn6pnr5-mthr2", "container": "api"}, "orders-api"),
        ({"pod": "report-exporter-m2t2nd8ndb-rnz25"}, "report-exporter"),
        ({"pod": "postgres-0"}, "postgres"),
        ({"pod": "standalone", "container": "app"}, "app"),
        ({"deployment": "storefront"}, "storefront"),
        ({}, None),
    ],
)
def test_service_from_labels(labels, service):
    assert summarise([alert(**labels)]).service == service


def test_scope_is_reported_only_when_all_alerts_agree():
    summary = summarise([alert(namespace="a", cluster="c"), alert(namespace="b", cluster="c")])
    assert (summary.namespace, summary.cluster) == (None, "c")


def test_severity_is_the_highest_firing_and_spellings_are_normalised():
    summary = summarise([alert(severity="warning"), alert(severity="page"), alert(severity="critical",
                                                                                   status="resolved")])
    assert summary.severity == "critical"
    assert summarise([alert(severity="warning"), alert(severity="info", status="resolved")]).severity == "warning"
    assert summarise([alert(severity="P1")]).severity == "critical"
    assert summarise([alert(severity="whatever")]).severity == "unknown"


def test_title_names_several_alertnames_and_links_only_http():
    summary = summarise([alert("A"), alert("B"), alert("C")])
    assert summary.title == "A and 2 more"
    one = summarise([alert(annotations={"summary": "x", "runbook_url": "javascript:1"})], "ftp://am")
    assert one.title == "KubePodCrashLooping: x" and one.links == {}


@pytest.mark.parametrize("url", [
    "https://admin:hunter2@grafana.example/d/1",
    "https://runbooks.example/x?token=s3cr3t",
    "https://grafana.example/d/1?api_key=abcdef123456",
])
def test_links_carrying_credentials_are_dropped(url):
    summary = summarise([alert(annotations={"runbook_url": url, "dashboard_url": url})], external_url=url)
    assert summary.links == {}


def test_ordinary_links_are_kept():
    url = "https://grafana.example/d/abc?orgId=1&var-namespace=shop"
    assert summarise([alert(annotations={"dashboard_url": url})]).links == {"dashboard": url}
