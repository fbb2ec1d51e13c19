"""`PagerDutyLink` through the real `pagerduty` clients, against the loopback emulator."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta

import pytest

from bot.pagerduty import PagerDutyLink, PagerDutyRejected, PagerDutyUnavailable
from bot.sandbox.pagerduty_emulator import PagerDutyEmulator
from tests.pagerduty.conftest import make_link


def _enqueued(pd: PagerDutyEmulator) -> list[dict]:
    return [c.body for c in pd.calls_to("events", "/v2/enqueue") if c.status == 202]


def test_trigger_opens_one_incident_per_dedup_key(pd: PagerDutyEmulator, link: PagerDutyLink) -> None:
    first = link.trigger("INC-12", "checkout 5xx", "critical", "prod/checkout", {"rps": 120}, [])
    again = link.trigger("INC-12", "checkout 5xx (still)", "critical", "prod/checkout", {}, [])
    other = link.trigger("INC-13", "payments latency", "warning", "prod/payments", {}, [])
    assert first == again == link.dedup_key("INC-12") == "opsbot-INC-12"
    assert other == "opsbot-INC-13"
    incidents = pd.incidents()
    assert [i["incident_key"] for i in incidents] == ["opsbot-INC-12", "opsbot-INC-13"]
    assert incidents[0]["alert_counts"]["all"] == 2  # the retry folded into the open incident
    assert incidents[0]["title"] == "checkout 5xx"
    assert incidents[0]["urgency"] == "high" and incidents[1]["urgency"] == "low"


def test_trigger_payload_is_mapped_cut_and_redacted(pd: PagerDutyEmulator, link: PagerDutyLink) -> None:
    summary = "db password=hunter2 leaked; " + "x" * 3000
    link.trigger("INC-1", summary, "high", "prod/db", {
        "log": "Authorization: Bearer abcdefghijklmnop", "nested": {"api_key": "plain-looking-value"},
        "count": 3, "when": time.struct_time((2024, 1, 1, 0, 0, 0, 0, 1, 0)),
    }, [{"href": "https://grafana.example/d/abc", "text": "dashboard"}, {"text": "no href, dropped"}])
    (event,) = _enqueued(pd)
    payload = event["payload"]
    assert event["routing_key"] == pd.routing_key and event["event_action"] == "trigger"
    assert event["dedup_key"] == "opsbot-INC-1"
    assert payload["severity"] == "error"  # opsbot "high" is the Events API's "error"
    assert len(payload["summary"]) == 1024 and "hunter2" not in payload["summary"]
    assert payload["source"] == "prod/db"
    details = payload["custom_details"]
    assert "abcdefghijklmnop" not in details["log"]
    assert details["nested"]["api_key"] == "[REDACTED]"
    assert details["count"] == 3
    assert event["links"] == [{"href": "https://grafana.example/d/abc", "text": "dashboard"}]


@pytest.mark.parametrize(("severity", "expected"), [
    ("critical", "critical"), ("high", "error"), ("warning", "warning"), ("info", "info"), ("unknown", "warning"),
    ("CRITICAL", "critical"), ("bogus", "warning"),
])
def test_severity_mapping(pd: PagerDutyEmulator, link: PagerDutyLink, severity: str, expected: str) -> None:
    link.trigger("INC-1", "s", severity, "src", {}, [])
    assert _enqueued(pd)[0]["payload"]["severity"] == expected


def test_acknowledge_and_resolve_follow_the_dedup_key(pd: PagerDutyEmulator, link: PagerDutyLink) -> None:
    key = link.trigger("INC-2", "queue backlog", "warning", "prod/worker", {}, [])
    link.acknowledge(key)
    assert pd.incident_by_key(key)["status"] == "acknowledged"
    link.resolve(key)
    assert pd.incident_by_key(key)["status"] == "resolved"
    link.acknowledge(key)  # PagerDuty accepts and ignores it: no exception, still resolved
    assert pd.incident_by_key(key)["status"] == "resolved"
    link.trigger("INC-2", "queue backlog again", "warning", "prod/worker", {}, [])
    assert [i["status"] for i in pd.incidents()] == ["resolved", "triggered"]


def test_find_incident_id_prefers_the_open_incident(pd: PagerDutyEmulator, link: PagerDutyLink) -> None:
    assert link.find_incident_id("opsbot-INC-404") is None
    key = link.trigger("INC-3", "first", "critical", "s", {}, [])
    first = link.find_incident_id(key)
    assert first == pd.incident_by_key(key)["id"]
    link.resolve(key)
    assert link.find_incident_id(key) == first  # resolved, but still the incident of that key
    link.trigger("INC-3", "re-opened", "critical", "s", {}, [])
    second = link.find_incident_id(key)
    assert second != first and pd.incident(second)["status"] == "triggered"
    assert pd.calls_to("rest", "/incidents")[-1].query["incident_key"] == [key]
    # a newer but resolved incident with the same key (say, opened by hand) does not win
    newer = pd.trigger_incident("same key, by hand", incident_key=key,
                                created_at=datetime.now(UTC) + timedelta(hours=1))
    pd.resolve(newer)
    assert link.find_incident_id(key) == second


def test_add_note_posts_as_the_from_user(pd: PagerDutyEmulator, link: PagerDutyLink) -> None:
    key = link.trigger("INC-5", "s", "critical", "s", {}, [])
    incident_id = link.find_incident_id(key)
    assert incident_id is not None
    link.add_note(incident_id, "RCA: bad deploy v42; token=abc123 in the logs")
    (note,) = pd.notes(incident_id)
    assert note["user"]["summary"] == "opsbot"
    assert note["content"].startswith("RCA: bad deploy v42") and "abc123" not in note["content"]
    (call,) = pd.calls_to("rest", f"/incidents/{incident_id}/notes")
    assert call.headers["from"] == pd.from_email and call.status == 201


def test_rest_calls_need_configuration(pd: PagerDutyEmulator) -> None:
    with make_link(pd, api_key=None) as no_rest:
        assert not no_rest.rest_enabled and not no_rest.notes_enabled
        with pytest.raises(PagerDutyRejected, match="no PagerDuty REST API key"):
            no_rest.find_incident_id("opsbot-INC-1")
        with pytest.raises(PagerDutyRejected):
            no_rest.add_note("Q1ABC", "x")
    with make_link(pd, from_email=None) as no_from:
        assert no_from.rest_enabled and not no_from.notes_enabled
        with pytest.raises(PagerDutyRejected, match="From"):
            no_from.add_note("Q1ABC", "x")
    assert pd.calls == []  # refused before anything was sent


def test_note_on_unknown_incident_is_rejected(link: PagerDutyLink) -> None:
    with pytest.raises(PagerDutyRejected) as caught:
        link.add_note("QNOSUCHINCIDENT", "x")
    assert caught.value.status == 404
    with pytest.raises(ValueError):
        link.add_note("../users", "x")  # never a path of our choosing


def test_rate_limit_once_is_retried_by_the_client(pd: PagerDutyEmulator, link: PagerDutyLink) -> None:
    pd.inject("/v2/enqueue", status=429, times=1)
    assert link.trigger("INC-6", "s", "critical", "s", {}, []) == "opsbot-INC-6"
    assert [c.status for c in pd.calls] == [429, 202]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_persistent_429_or_5xx_is_unavailable(pd: PagerDutyEmulator, link: PagerDutyLink, status: int) -> None:
    pd.inject("/v2/enqueue", status=status, times=5)
    started = time.monotonic()
    with pytest.raises(PagerDutyUnavailable) as caught:
        link.trigger("INC-7", "s", "critical", "s", {}, [])
    assert caught.value.status == status
    assert len(pd.calls) == 2  # one bounded retry, never the client's unlimited 429 loop
    assert time.monotonic() - started < 2
    assert pd.incidents() == []


@pytest.mark.parametrize("status", [429, 502])
def test_rest_429_or_5xx_is_unavailable(pd: PagerDutyEmulator, link: PagerDutyLink, status: int) -> None:
    pd.inject("/incidents", status=status, times=5)
    with pytest.raises(PagerDutyUnavailable):
        link.find_incident_id("opsbot-INC-1")


def test_unreachable_pagerduty_is_unavailable(pd: PagerDutyEmulator) -> None:
    with make_link(pd) as link:
        pd.stop()
        with pytest.raises(PagerDutyUnavailable, match="unreachable"):
            link.acknowledge("opsbot-INC-1")


def test_bad_routing_key_is_rejected_with_the_reason(pd: PagerDutyEmulator) -> None:
    with make_link(pd, routing_key="Z" * 32) as link, pytest.raises(PagerDutyRejected) as caught:
        link.trigger("INC-8", "s", "critical", "s", {}, [])
    assert caught.value.status == 400 and "Invalid routing key" in str(caught.value)
    assert "Z" * 32 not in str(caught.value)
    with make_link(pd, routing_key="short") as link, pytest.raises(PagerDutyRejected, match="32 characters"):
        link.resolve("opsbot-INC-8")
    assert pd.incidents() == []


def test_bad_api_key_is_rejected(pd: PagerDutyEmulator) -> None:
    with make_link(pd, api_key="wrong") as link, pytest.raises(PagerDutyRejected) as caught:
        link.find_incident_id("opsbot-INC-1")
    assert caught.value.status == 401


def test_plain_http_urls_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="https"):
        PagerDutyLink("k" * 32, None, None, events_url="http://127.0.0.1:1")


def test_dedup_key_needs_a_reference(link: PagerDutyLink) -> None:
    with pytest.raises(ValueError):
        link.dedup_key("  ")
    with pytest.raises(ValueError):
        link.dedup_key("x" * 300)


def test_retry_after_is_passed_on(pd: PagerDutyEmulator, link: PagerDutyLink) -> None:
    pd.inject("/v2/enqueue", status=429, times=5, retry_after=30)
    with pytest.raises(PagerDutyUnavailable) as caught:
        link.resolve("opsbot-INC-1")
    assert caught.value.retry_after_seconds == 30


def test_a_silent_server_times_out_as_unavailable(pd: PagerDutyEmulator) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers the TLS handshake
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"https://127.0.0.1:{silent.getsockname()[1]}"
        with make_link(pd, events_url=url, timeout_seconds=0.2) as link:
            started = time.monotonic()
            with pytest.raises(PagerDutyUnavailable):
                link.trigger("INC-9", "s", "critical", "s", {}, [])
            assert time.monotonic() - started < 2  # two attempts of 0.2 s, not the client's 60 s default


def test_acknowledge_incident_acts_on_a_foreign_incident_as_the_from_user(pd: PagerDutyEmulator,
                                                                          link: PagerDutyLink) -> None:
    incident_id = pd.trigger_incident("payments 5xx", incident_key="from-another-integration")
    link.acknowledge(link.dedup_key("INC-1"))  # the Events API only reaches opsbot's own keys
    assert pd.incident(incident_id)["status"] == "triggered"
    link.acknowledge_incident(incident_id)
    incident = pd.incident(incident_id)
    assert incident["status"] == "acknowledged"
    assert incident["acknowledgements"][0]["acknowledger"]["summary"] == "opsbot"
    (put,) = [c for c in pd.calls_to("rest", f"/incidents/{incident_id}") if c.method == "PUT"]
    assert put.headers["from"] == pd.from_email and put.body["incident"]["status"] == "acknowledged"
    link.acknowledge_incident(incident_id)  # again: PagerDuty changes nothing, no error
    pd.resolve(incident_id)
    with pytest.raises(PagerDutyRejected, match="Already Resolved") as caught:
        link.acknowledge_incident(incident_id)
    assert caught.value.status == 400
    with pytest.raises(ValueError):
        link.acknowledge_incident("../users")


def test_acting_user_is_the_from_user_looked_up_once(pd: PagerDutyEmulator, link: PagerDutyLink) -> None:
    user = link.acting_user()
    assert user.name == "opsbot"
    incident_id = pd.trigger_incident("x")
    link.acknowledge_incident(incident_id)
    assert pd.incident(incident_id)["acknowledgements"][0]["acknowledger"]["id"] == user.id
    assert link.acting_user() == user
    assert len(pd.calls_to("rest", "/users")) == 1
    with make_link(pd, from_email="nobody@example.org") as stranger, pytest.raises(PagerDutyRejected, match="no user"):
        stranger.acting_user()


def test_rest_writes_need_a_key_and_a_from_email(pd: PagerDutyEmulator) -> None:
    with make_link(pd, api_key=None) as no_rest:
        for call in (lambda: no_rest.acknowledge_incident("Q1ABC"), no_rest.acting_user):
            with pytest.raises(PagerDutyRejected, match="no PagerDuty REST API key"):
                call()
    with make_link(pd, from_email=None) as no_from:
        for call in (lambda: no_from.acknowledge_incident("Q1ABC"), no_from.acting_user):
            with pytest.raises(PagerDutyRejected, match="From"):
                call()
    assert pd.calls == []


def test_the_dedup_prefix_is_per_install(pd: PagerDutyEmulator) -> None:
    with make_link(pd, dedup_prefix="team-a") as team_a, make_link(pd) as default:
        assert team_a.trigger("INC-1", "disk full", "warning", "s", {}, []) == "team-a-INC-1"
        assert default.trigger("INC-1", "disk full", "warning", "s", {}, []) == "opsbot-INC-1"
        team_a.resolve(team_a.dedup_key("INC-1"))
        # a key recorded before a prefix change keeps its incident whole
        assert team_a.trigger("INC-2", "s", "info", "s", {}, [], dedup_key="opsbot-INC-2") == "opsbot-INC-2"
    assert [(i["incident_key"], i["status"]) for i in pd.incidents()] == [
        ("team-a-INC-1", "resolved"), ("opsbot-INC-1", "triggered"), ("opsbot-INC-2", "triggered")]
    for bad in ("", "Team", "team_a", "-team", "team-", "x" * 33, "a.b"):
        with pytest.raises(ValueError, match="lower-case letters"):
            make_link(pd, dedup_prefix=bad)


def test_on_call_emails_are_read_per_schedule_or_escalation_policy(pd: PagerDutyEmulator,
                                                                   link: PagerDutyLink) -> None:
    pd.put_on_call("PSCHED1", "Carol")
    pd.put_on_call("PSCHED2", "Bob", "Dave@Example.com", escalation_policy_id="PEPOL02")
    assert link.on_call_emails(["PSCHED1"]) == {"carol@example.com"}
    assert link.on_call_emails(escalation_policy_ids=["PEPOL02"]) == {"bob@example.com", "dave@example.com"}
    assert link.on_call_emails(["PSCHED1", "PSCHED2"]) == {"carol@example.com", "bob@example.com",
                                                           "dave@example.com"}
    pd.put_on_call("PSCHED1", "Alice")  # the rotation moved on
    assert link.on_call_emails(["PSCHED1"]) == {"alice@example.com"}
    (call, *_) = pd.calls_to("rest", "/oncalls")
    assert call.query["include[]"] == ["users"] and call.query["schedule_ids[]"] == ["PSCHED1"]


def test_on_call_needs_an_id_and_rest(pd: PagerDutyEmulator, link: PagerDutyLink) -> None:
    with pytest.raises(ValueError, match="at least one"):
        link.on_call_emails()  # unfiltered would be everyone on call anywhere
    with pytest.raises(ValueError, match="not a PagerDuty"):
        link.on_call_emails(["PS/../users"])
    with make_link(pd, api_key=None) as no_rest, pytest.raises(PagerDutyRejected, match="REST API key"):
        no_rest.on_call_emails(["PSCHED1"])
    assert pd.calls_to("rest", "/oncalls") == []


def test_schedules_and_escalation_policies_add_up(pd: PagerDutyEmulator, link: PagerDutyLink) -> None:
    pd.put_on_call("PSCHED1", "Carol")
    pd.put_on_call("PSCHED2", "Bob", escalation_policy_id="PEPOL02")
    assert link.on_call_emails(["PSCHED1"], ["PEPOL02"]) == {"carol@example.com", "bob@example.com"}


def test_a_rest_only_link_reads_on_call_and_mirrors_nothing(pd: PagerDutyEmulator) -> None:
    pd.put_on_call("PSCHED1", "Carol")
    with make_link(pd, routing_key=None) as rest_only:
        assert not rest_only.events_enabled and rest_only.on_call_emails(["PSCHED1"]) == {"carol@example.com"}
        with pytest.raises(PagerDutyRejected, match="no PagerDuty routing key"):
            rest_only.trigger("INC-1", "x", "critical", "src", {}, [])
    assert pd.calls_to("events") == []
    with pytest.raises(ValueError, match="routing key or REST API key"):
        make_link(pd, routing_key=None, api_key=None)
