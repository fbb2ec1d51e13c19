"""The PagerDuty emulator: signed outbound V3 webhooks, and its REST and Events API rules."""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

import pagerduty
import pytest

from bot.alerts.pagerduty import parse, verify_signature
from bot.pagerduty import PagerDutyLink
from bot.sandbox.pagerduty_emulator import PagerDutyEmulator, WebhookDelivery
from tests.pagerduty.conftest import OLD_WEBHOOK_SECRET, WEBHOOK_SECRET, Receiver, SteppedClock, make_link


def _verified(receiver: Receiver, secrets: list[str]) -> list[dict[str, Any]]:
    """Every received body, parsed, after checking its signature like the webhook route does."""
    out = []
    for item in receiver.received:
        header = item.headers.get("X-PagerDuty-Signature")
        assert verify_signature(secrets, item.body, header), header
        out.append({"headers": item.headers, "batch": parse(item.body)})
    return out


def _event(entry: dict[str, Any]) -> str:
    return entry["batch"].common_annotations["pagerduty_event"]


def test_every_state_change_reaches_the_receiver_signed_and_in_order(receiver: Receiver) -> None:
    with PagerDutyEmulator(webhook_url=receiver.url, webhook_secret=WEBHOOK_SECRET) as pd, make_link(pd) as link:
        key = link.trigger("INC-21", "checkout 5xx", "critical", "prod/checkout", {}, [])
        link.trigger("INC-21", "checkout 5xx", "critical", "prod/checkout", {}, [])  # deduplicated: no webhook
        incident_id = link.find_incident_id(key)
        assert incident_id is not None
        pd.acknowledge(incident_id, by="Alice")
        link.add_note(incident_id, "RCA: connection pool exhausted")
        link.resolve(key)
        deliveries = pd.wait_for_webhooks(timeout=10)
    assert all(d.ok and d.attempts == 1 for d in deliveries)
    received = _verified(receiver, [WEBHOOK_SECRET])
    assert [_event(r) for r in received] == [
        "incident.triggered", "incident.acknowledged", "incident.annotated", "incident.resolved"]
    for entry in received:
        batch = entry["batch"]
        assert batch.group_key == f"pagerduty:{incident_id}"
        assert batch.alerts[0].fingerprint == incident_id
        assert entry["headers"]["User-Agent"] == "PagerDuty-Webhook/V3.0"
        assert entry["headers"]["Content-Type"] == "application/json"
    triggered, acked, noted, resolved = (r["batch"].alerts[0] for r in received)
    assert triggered.labels["opsbot_incident"] == "INC-21"  # the loop breaker
    assert triggered.labels["severity"] == "critical" and triggered.annotations["agent_type"] == "service_reference"
    assert acked.annotations["agent"] == "Alice" and acked.annotations["pagerduty_status"] == "acknowledged"
    assert noted.annotations["note"] == "RCA: connection pool exhausted" and noted.annotations["agent"] == "opsbot"
    assert resolved.status == "resolved" and resolved.ends_at is not None


def test_rotation_signs_with_every_secret(receiver: Receiver) -> None:
    with PagerDutyEmulator(webhook_url=receiver.url, webhook_secret=[OLD_WEBHOOK_SECRET, WEBHOOK_SECRET]) as pd:
        pd.trigger_incident("disk full", incident_key="abc")
        pd.wait_for_webhooks()
    (item,) = receiver.received
    header = item.headers["X-PagerDuty-Signature"]
    assert header.count("v1=") == 2
    assert verify_signature([OLD_WEBHOOK_SECRET], item.body, header)
    assert verify_signature([WEBHOOK_SECRET], item.body, header)
    assert not verify_signature(["someone-else"], item.body, header)


def test_human_actions_in_pagerduty_become_handled_webhooks(receiver: Receiver) -> None:
    with PagerDutyEmulator(webhook_url=receiver.url, webhook_secret=WEBHOOK_SECRET) as pd:
        incident_id = pd.trigger_incident("payments latency", urgency="low")
        pd.reassign(incident_id, to="Bob", by="Alice")
        pd.escalate(incident_id, to="Carol")
        pd.set_priority(incident_id, "P1", by="Alice")
        pd.acknowledge(incident_id, by="Bob")
        pd.unacknowledge(incident_id)
        pd.annotate(incident_id, "customer impact confirmed", by="Carol")
        pd.resolve(incident_id, by="Carol")
        pd.wait_for_webhooks()
    received = _verified(receiver, [WEBHOOK_SECRET])
    assert [_event(r) for r in received] == [
        "incident.triggered", "incident.reassigned", "incident.escalated", "incident.priority_updated",
        "incident.acknowledged", "incident.unacknowledged", "incident.annotated", "incident.resolved"]
    alerts = [r["batch"].alerts[0] for r in received]
    assert alerts[0].labels["severity"] == "warning" and "opsbot_incident" not in alerts[0].labels
    assert alerts[1].annotations["assignees"] == "Bob" and alerts[1].annotations["agent"] == "Alice"
    assert alerts[2].annotations["assignees"] == "Carol" and "agent" not in alerts[2].annotations
    assert alerts[3].labels["severity"] == "critical" and alerts[3].annotations["priority"] == "P1"
    assert alerts[5].annotations["pagerduty_status"] == "triggered"
    assert alerts[6].annotations["note"] == "customer impact confirmed"
    assert alerts[7].status == "resolved"


def test_failed_delivery_is_retried_with_the_same_webhook_id(receiver: Receiver) -> None:
    receiver.statuses = [500, 429]
    with PagerDutyEmulator(webhook_url=receiver.url, webhook_secret=WEBHOOK_SECRET,
                           webhook_retry_seconds=0.01) as pd:
        pd.trigger_incident("x")
        (delivery,) = pd.wait_for_webhooks()
    assert delivery.ok and delivery.attempts == 3
    assert len({item.headers["X-Webhook-Id"] for item in receiver.received}) == 1
    assert len({item.body for item in receiver.received}) == 1


def test_client_errors_are_final_and_recorded_not_raised(receiver: Receiver) -> None:
    receiver.statuses = [401]
    with PagerDutyEmulator(webhook_url=receiver.url, webhook_secret=WEBHOOK_SECRET) as pd:
        pd.trigger_incident("x")
        (delivery,) = pd.wait_for_webhooks()
    assert (delivery.status, delivery.attempts, delivery.ok) == (401, 1, False)
    assert delivery.error and "401" in delivery.error


def test_unreachable_receiver_is_recorded() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    with PagerDutyEmulator(webhook_url=f"http://127.0.0.1:{port}/hook", webhook_secret="s",
                           webhook_max_attempts=2, webhook_retry_seconds=0.01) as pd:
        pd.trigger_incident("x")
        (delivery,) = pd.wait_for_webhooks()
    assert isinstance(delivery, WebhookDelivery)
    assert delivery.status is None and delivery.attempts == 2 and delivery.error


def test_no_subscription_sends_nothing(pd: PagerDutyEmulator, link: PagerDutyLink) -> None:
    link.trigger("INC-1", "s", "critical", "s", {}, [])
    assert pd.wait_for_webhooks() == []


@pytest.fixture
def rest(pd: PagerDutyEmulator):
    client = pagerduty.RestApiV2Client(pd.api_token, default_from="alice@example.com", base_url=pd.rest_url,
                                       verify=pd.client_ssl_context())
    yield client
    client.close()


def test_rest_needs_the_token(pd: PagerDutyEmulator) -> None:
    client = pagerduty.RestApiV2Client("wrong-token-1234", base_url=pd.rest_url, verify=pd.client_ssl_context())
    with pytest.raises(pagerduty.HttpError) as caught:
        client.rget("/incidents")
    assert caught.value.response.status_code == 401
    assert pd.calls[-1].headers["authorization"] == "Token token=…1234"  # recorded, but masked


def test_rest_filters_and_paginates(pd: PagerDutyEmulator, rest: pagerduty.RestApiV2Client) -> None:
    ids = [pd.trigger_incident(f"incident {n}", incident_key=f"key-{n % 2}") for n in range(5)]
    pd.acknowledge(ids[0])
    pd.resolve(ids[1])
    assert [i["id"] for i in rest.list_all("/incidents", page_size=2)] == ids
    assert len([c for c in pd.calls if c.path == "/incidents"]) == 3
    assert [i["id"] for i in rest.list_all("/incidents", params={"incident_key": "key-0"})] == ids[0::2]
    open_ids = [i["id"] for i in rest.list_all("/incidents", params={"statuses": ["triggered", "acknowledged"]})]
    assert open_ids == [ids[0], *ids[2:]]
    incident = rest.rget(f"/incidents/{ids[0]}")
    assert incident["status"] == "acknowledged" and incident["acknowledgements"][0]["acknowledger"]["summary"] == "Alice"
    assert incident["summary"] == "[#1] incident 0"


def test_rest_writes_need_a_known_from_user(pd: PagerDutyEmulator) -> None:
    incident_id = pd.trigger_incident("x")
    anonymous = pagerduty.RestApiV2Client(pd.api_token, base_url=pd.rest_url, verify=pd.client_ssl_context())
    stranger = pagerduty.RestApiV2Client(pd.api_token, default_from="mallory@evil.example", base_url=pd.rest_url,
                                         verify=pd.client_ssl_context())
    for client, reason in ((anonymous, "From"), (stranger, "Requester User Not Found")):
        with pytest.raises(pagerduty.HttpError) as caught:
            client.rput(f"/incidents/{incident_id}", json={"type": "incident_reference", "status": "acknowledged"})
        assert caught.value.response.status_code == 400 and reason in caught.value.response.text
        with pytest.raises(pagerduty.HttpError):
            client.rpost(f"/incidents/{incident_id}/notes", json={"content": "hi"})
    assert pd.incident(incident_id)["status"] == "triggered" and pd.notes(incident_id) == []


def test_rest_status_updates(pd: PagerDutyEmulator, rest: pagerduty.RestApiV2Client) -> None:
    incident_id = pd.trigger_incident("x")
    updated = rest.rput(f"/incidents/{incident_id}", json={"type": "incident_reference", "status": "acknowledged"})
    assert updated["status"] == "acknowledged"
    assert rest.rput(f"/incidents/{incident_id}", json={"type": "incident_reference", "status": "resolved"})[
        "status"] == "resolved"
    with pytest.raises(pagerduty.HttpError, match="Already Resolved"):
        rest.rput(f"/incidents/{incident_id}", json={"type": "incident_reference", "status": "acknowledged"})
    with pytest.raises(pagerduty.HttpError) as caught:
        rest.rget("/incidents/QNOPE")
    assert caught.value.response.status_code == 404
    note = rest.rpost(f"/incidents/{incident_id}/notes", json={"content": "after the fact"})
    assert note["content"] == "after the fact" and note["user"]["summary"] == "Alice"
    assert [n["content"] for n in rest.rget(f"/incidents/{incident_id}/notes")] == ["after the fact"]


@pytest.mark.parametrize(("event", "problem"), [
    ({"event_action": "trigger", "payload": {"source": "s", "severity": "critical"}}, "payload.summary"),
    ({"event_action": "trigger", "payload": {"summary": "s", "source": "s", "severity": "fatal"}}, "payload.severity"),
    ({"event_action": "trigger", "payload": {"summary": "s", "severity": "info"}}, "payload.source"),
    ({"event_action": "trigger", "payload": {"summary": "x" * 1025, "source": "s", "severity": "info"}},
     "payload.summary"),
    ({"event_action": "trigger"}, "'payload'"),
    ({"event_action": "acknowledge"}, "dedup_key"),
    ({"event_action": "snooze", "dedup_key": "k"}, "event_action"),
    ({"event_action": "resolve", "dedup_key": "k" * 256}, "dedup_key"),
])
def test_events_api_refuses_what_pagerduty_refuses(pd: PagerDutyEmulator, event: dict, problem: str) -> None:
    client = pagerduty.EventsApiV2Client(pd.routing_key, base_url=pd.events_url, verify=pd.client_ssl_context())
    response = client.post("/v2/enqueue", json=dict(event))  # routing_key added by the client
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "invalid event" and body["message"] == "Event object is invalid"
    assert any(problem in error for error in body["errors"]), body
    assert pd.incidents() == []


def test_events_api_trigger_without_dedup_key_gets_one(pd: PagerDutyEmulator) -> None:
    client = pagerduty.EventsApiV2Client(pd.routing_key, base_url=pd.events_url, verify=pd.client_ssl_context())
    key = client.trigger("no key given", "prod/api", severity="info")
    assert len(key) == 32 and pd.incidents()[0]["incident_key"] == key
    assert pd.incidents()[0]["urgency"] == "low"


def test_injection_is_consumed_in_order_and_without_effect(pd: PagerDutyEmulator, link: PagerDutyLink) -> None:
    pd.inject("/incidents", status=503, times=1, retry_after=7)
    pd.inject("*", status=429, times=1)
    link.trigger("INC-1", "s", "critical", "s", {}, [])  # 429 once (the "*"), then accepted
    assert link.find_incident_id("opsbot-INC-1") is not None  # 503 once, then answered
    statuses = [(c.api, c.status, c.injected) for c in pd.calls]
    assert statuses == [("events", 429, True), ("events", 202, False), ("rest", 503, True), ("rest", 200, False)]
    assert len(pd.incidents()) == 1
    with pytest.raises(ValueError):
        pd.inject("/x", status=200)


def test_stopping_drops_what_is_still_queued(receiver: Receiver) -> None:
    pd = PagerDutyEmulator(webhook_url=receiver.url, webhook_secret=WEBHOOK_SECRET)  # never started
    pd.trigger_incident("queued, never sent")
    pd.stop()
    assert pd.wait_for_webhooks(timeout=1) == []
    assert receiver.received == []


def test_rest_acknowledge_is_announced_with_the_from_user_as_agent(receiver: Receiver) -> None:
    with PagerDutyEmulator(webhook_url=receiver.url, webhook_secret=WEBHOOK_SECRET) as pd:
        incident_id = pd.trigger_incident("payments 5xx")
        stranger = pagerduty.RestApiV2Client("wrong-token-1234", default_from=pd.from_email, base_url=pd.rest_url,
                                             verify=pd.client_ssl_context())
        with pytest.raises(pagerduty.HttpError) as caught:
            stranger.rput(f"/incidents/{incident_id}", json={"type": "incident_reference", "status": "acknowledged"})
        assert caught.value.response.status_code == 401
        assert pd.incident(incident_id)["status"] == "triggered"
        client = pagerduty.RestApiV2Client(pd.api_token, default_from=pd.from_email, base_url=pd.rest_url,
                                           verify=pd.client_ssl_context())
        client.rput(f"/incidents/{incident_id}", json={"type": "incident_reference", "status": "acknowledged"})
        opsbot = client.find("users", pd.from_email, attribute="email")
        pd.wait_for_webhooks()
    received = _verified(receiver, [WEBHOOK_SECRET])
    assert [_event(r) for r in received] == ["incident.triggered", "incident.acknowledged"]
    acked = received[1]["batch"].alerts[0]
    assert acked.annotations["agent_type"] == "user_reference"
    assert (acked.annotations["agent_id"], acked.annotations["agent"]) == (opsbot["id"], "opsbot")
    assert pd.incident(incident_id)["acknowledgements"][0]["acknowledger"]["id"] == opsbot["id"]


def test_users_are_listed_and_found_by_email(pd: PagerDutyEmulator, rest: pagerduty.RestApiV2Client) -> None:
    users = rest.list_all("/users", page_size=2)
    assert [u["name"] for u in users] == ["Alice", "Bob", "Carol", "opsbot"]
    assert all(u["type"] == "user" and u["email"].endswith("@example.com") for u in users)
    found = rest.find("users", "CAROL@example.com", attribute="email")
    assert found is not None and found["name"] == "Carol"
    assert pd.calls_to("rest", "/users")[-1].query["query"] == ["CAROL@example.com"]
    assert rest.find("users", "mallory@evil.example", attribute="email") is None


def test_a_resolved_incident_reopens_with_its_own_event(receiver: Receiver) -> None:
    clock = SteppedClock()
    with PagerDutyEmulator(webhook_url=receiver.url, webhook_secret=WEBHOOK_SECRET, clock=clock) as pd:
        incident_id = pd.trigger_incident("queue backlog")
        pd.reopen(incident_id, by="Bob")  # still open: nothing to reopen, no webhook
        pd.acknowledge(incident_id, by="Alice")
        clock.advance(60)
        pd.resolve(incident_id, by="Alice")
        clock.advance(60)
        pd.reopen(incident_id, by="Bob")
        pd.wait_for_webhooks()
        assert pd.incident(incident_id)["status"] == "triggered"
        assert pd.incident(incident_id)["acknowledgements"] == []
    received = _verified(receiver, [WEBHOOK_SECRET])
    assert [_event(r) for r in received] == [
        "incident.triggered", "incident.acknowledged", "incident.resolved", "incident.reopened"]
    resolved, reopened = (r["batch"].alerts[0] for r in received[2:])
    assert reopened.status == "firing" and reopened.annotations["agent"] == "Bob"
    assert reopened.annotations["pagerduty_status"] == "triggered"
    assert reopened.starts_at >= resolved.ends_at + timedelta(seconds=60), "fires again from the reopen, not its creation"
