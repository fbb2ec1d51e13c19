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
