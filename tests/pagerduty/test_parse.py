"""`bot.alerts.pagerduty.parse`: V3 webhook payloads into alert batches."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.alerts.model import PayloadError
from bot.alerts.pagerduty import (
    HANDLED_EVENT_TYPES,
    SOURCE,
    event_type,
    parse,
    severity_for,
    validate_dedup_prefix,
)
from bot.sandbox.pagerduty_webhooks import (
    incident_resource,
    priority_reference,
    service_reference,
    user_reference,
    webhook_event,
)

ALICE = user_reference("PALICE1", "Alice Example")

# PagerDuty's own example (developer docs, webhooks "Overview"), verbatim apart from layout:
# a payload not produced by our builder, so builder and parser cannot drift together.
DOCS_EXAMPLE = """{"event": {"id": "5ac64822-4adc-4fda-ade0-410becf0de4f", "event_type": "incident.priority_updated",
 "resource_type": "incident", "occurred_at": "2020-10-02T18:45:22.169Z",
 "agent": {"html_url": "https://acme.pagerduty.com/users/PLH1HKV", "id": "PLH1HKV",
           "self": "https://api.pagerduty.com/users/PLH1HKV", "summary": "Tenex Engineer", "type": "user_reference"},
 "client": {"name": "PagerDuty"},
 "data": {"id": "PGR0VU2", "type": "incident", "self": "https://api.pagerduty.com/incidents/PGR0VU2",
  "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2", "number": 2, "status": "triggered",
  "incident_key": "d3640fbd41094207a1c11e58e46b1662", "created_at": "2020-04-09T15:16:27Z",
  "title": "A little bump in the road",
  "service": {"html_url": "https://acme.pagerduty.com/services/PF9KMXH", "id": "PF9KMXH",
              "self": "https://api.pagerduty.com/services/PF9KMXH", "summary": "API Service",
              "type": "service_reference"},
  "assignees": [{"html_url": "https://acme.pagerduty.com/users/PTUXL6G", "id": "PTUXL6G",
                 "self": "https://api.pagerduty.com/users/PTUXL6G", "summary": "User 123", "type": "user_reference"}],
  "escalation_policy": {"html_url": "https://acme.pagerduty.com/escalation_policies/PUS0KTE", "id": "PUS0KTE",
                        "self": "https://api.pagerduty.com/escalation_policies/PUS0KTE", "summary": "Default",
                        "type": "escalation_policy_reference"},
  "teams": [{"html_url": "https://acme.pagerduty.com/teams/PFCVPS0", "id": "PFCVPS0",
             "self": "https://api.pagerduty.com/teams/PFCVPS0", "summary": "Engineering", "type": "team_reference"}],
  "priority": {"html_url": "https://acme.pagerduty.com/account/incident_priorities", "id": "PSO75BM",
               "self": "https://api.pagerduty.com/priorities/PSO75BM", "summary": "P1", "type": "priority_reference"},
  "urgency": "high",
  "conference_bridge": {"conference_number": "+1 1234123412,,987654321#", "conference_url": "https://example.com"},
  "resolve_reason": null}}}"""


def _incident(**overrides: Any) -> dict[str, Any]:
    title = overrides.pop("title", "checkout: 5xx ratio above 5%")
    values: dict[str, Any] = dict(
        incident_key="opsbot-INC-12", created_at="2024-05-01T10:00:00Z",
        service=service_reference("PSVC123", "checkout"), urgency="high",
    )
    values.update(overrides)
    return incident_resource("Q1ABCDEF", 42, title, **values)


def _body(event: str, incident: dict[str, Any] | None = None, **kw: Any) -> bytes:
    return json.dumps(webhook_event(event, incident or _incident(), kw.pop("agent", ALICE), **kw)).encode()


def test_docs_example_parses() -> None:
    batch = parse(DOCS_EXAMPLE.encode())
    (alert,) = batch.alerts
    assert batch.source == alert.source == SOURCE
    assert batch.group_key == "pagerduty:PGR0VU2"
    assert batch.status == alert.status == "firing"
    assert alert.fingerprint == "PGR0VU2"
    assert alert.labels == {
        "alertname": "A little bump in the road", "pagerduty_incident": "PGR0VU2", "service": "API Service",
        "pagerduty_service_id": "PF9KMXH", "pagerduty_dedup_key": "d3640fbd41094207a1c11e58e46b1662",
        "urgency": "high", "severity": "critical",
    }
    assert alert.annotations["pagerduty_event"] == "incident.priority_updated"
    assert alert.annotations["agent"] == "Tenex Engineer"
    assert alert.annotations["assignees"] == "User 123"
    assert alert.annotations["priority"] == "P1"
    assert alert.starts_at == datetime(2020, 4, 9, 15, 16, 27, tzinfo=UTC)
    assert alert.ends_at is None
    assert alert.generator_url == batch.external_url == "https://acme.pagerduty.com/incidents/PGR0VU2"
    assert batch.common_annotations["pagerduty_event"] == "incident.priority_updated"


def test_triggered_maps_every_field() -> None:
    batch = parse(_body("incident.triggered", event_id="evt-1"))
    (alert,) = batch.alerts
    assert alert.status == "firing"
    assert alert.labels["alertname"] == "checkout: 5xx ratio above 5%"
    assert alert.labels["service"] == "checkout"
    assert alert.labels["pagerduty_service_id"] == "PSVC123"
    assert alert.labels["pagerduty_dedup_key"] == "opsbot-INC-12"
    assert alert.labels["opsbot_incident"] == "INC-12"
    assert alert.annotations["summary"] == "checkout: 5xx ratio above 5%"
    assert alert.annotations["html_url"].endswith("/incidents/Q1ABCDEF")
    assert alert.annotations["pagerduty_event_id"] == "evt-1"
    assert alert.annotations["pagerduty_status"] == "triggered"
    assert alert.annotations["pagerduty_number"] == "42"
    assert alert.annotations["agent_type"] == "user_reference"
    assert alert.annotations["agent_id"] == "PALICE1"
    assert batch.group_labels == {"pagerduty_incident": "Q1ABCDEF"}
    assert batch.common_labels == alert.labels


@pytest.mark.parametrize("kind", sorted(HANDLED_EVENT_TYPES))
def test_every_handled_type_lands_on_the_same_alert_and_group(kind: str) -> None:
    batch = parse(_body(kind, note="looking into it"))
    (alert,) = batch.alerts
    assert batch.group_key == "pagerduty:Q1ABCDEF"
    assert alert.fingerprint == "Q1ABCDEF"  # also for incident.annotated, which has no incident_key
    assert batch.common_annotations["pagerduty_event"] == kind
    assert alert.labels["alertname"] == "checkout: 5xx ratio above 5%"
    assert batch.status == ("resolved" if kind == "incident.resolved" else "firing")


def test_resolved_ends_at_the_event_time() -> None:
    batch = parse(_body("incident.resolved", _incident(status="resolved"), occurred_at="2024-05-01T10:30:00.250Z"))
    (alert,) = batch.alerts
    assert alert.status == "resolved"
    assert alert.ends_at == datetime(2024, 5, 1, 10, 30, 0, 250000, tzinfo=UTC)
    assert alert.annotations["pagerduty_status"] == "resolved"


def test_acknowledged_names_who_acted() -> None:
    (alert,) = parse(_body("incident.acknowledged", _incident(status="acknowledged"))).alerts
    assert alert.annotations["agent"] == "Alice Example"
    assert alert.annotations["pagerduty_status"] == "acknowledged"


def test_annotated_carries_the_note_and_no_guessed_labels() -> None:
    batch = parse(_body("incident.annotated", note="Rolled back to v41, watching"))
    (alert,) = batch.alerts
    assert alert.annotations["note"] == "Rolled back to v41, watching"
    assert alert.annotations["agent"] == "Alice Example"
    # the note payload knows only the incident's id and title: no service, urgency, severity or key
    for label in ("service", "urgency", "severity", "pagerduty_dedup_key", "opsbot_incident"):
        assert label not in alert.labels
    assert alert.starts_at is None


def test_reassigned_lists_the_new_assignees() -> None:
    incident = _incident(assignees=[user_reference("PBOB", "Bob"), user_reference("PCAROL", "Carol")])
    (alert,) = parse(_body("incident.reassigned", incident)).alerts
    assert alert.annotations["assignees"] == "Bob, Carol"


@pytest.mark.parametrize(("urgency", "priority", "severity"), [
    ("high", None, "critical"), ("low", None, "warning"), ("low", "P1", "critical"), ("high", "P2", "high"),
    ("high", "P3", "warning"), ("high", "P5", "info"), ("low", "SEV-1", "warning"), (None, None, None),
])
def test_severity_from_priority_then_urgency(urgency: str | None, priority: str | None, severity: str | None) -> None:
    assert severity_for(urgency, priority) == severity
    incident = _incident(urgency=urgency, priority=priority_reference("PPRI", priority) if priority else None)
    (alert,) = parse(_body("incident.priority_updated", incident)).alerts
    assert alert.labels.get("severity") == severity


@pytest.mark.parametrize(("key", "reference"), [
    ("opsbot-INC-12", "INC-12"), ("team-b-INC-7", "INC-7"), ("opsbot-", None),
    ("d3640fbd41094207a1c11e58e46b1662", None), ("OPSBOT-INC-1", None), ("opsbot-INC-", None),
    ("opsbot-INC-12x", None), ("-INC-3", None), ("x" * 33 + "-INC-3", None), ("opsbot-foo", None),
])
def test_opsbot_link_only_for_keys_shaped_like_an_opsbot_dedup_key(key: str, reference: str | None) -> None:
    """Any install's prefix is recognised here; whose key it is, the flow decides."""
    (alert,) = parse(_body("incident.triggered", _incident(incident_key=key))).alerts
    assert alert.labels.get("opsbot_incident") == reference


@pytest.mark.parametrize("prefix", ["opsbot", "team-b", "eu1", "a", "x" * 32])
def test_valid_dedup_prefixes(prefix: str) -> None:
    assert validate_dedup_prefix(prefix) == prefix
    (alert,) = parse(_body("incident.triggered", _incident(incident_key=f"{prefix}-INC-4"))).alerts
    assert alert.labels["opsbot_incident"] == "INC-4"


@pytest.mark.parametrize("prefix", ["", "Opsbot", "team_b", "-team", "team-", "x" * 33, "a b", "opsbot-INC-1"])
def test_invalid_dedup_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError, match="lower-case letters, digits or inner hyphens"):
        validate_dedup_prefix(prefix)


def test_reopened_fires_again_from_the_event_time() -> None:
    """Not from the incident's creation: that is before the resolution it follows, and the
    intake flow ignores a firing state that starts before the stored resolution."""
    batch = parse(_body("incident.reopened", _incident(status="triggered"), occurred_at="2024-05-01T11:00:00.125Z",
                        agent=user_reference("PBOB", "Bob")))
    (alert,) = batch.alerts
    assert batch.status == alert.status == "firing"
    assert alert.starts_at == datetime(2024, 5, 1, 11, 0, 0, 125000, tzinfo=UTC)
    assert alert.ends_at is None
    assert (alert.annotations["agent"], alert.annotations["agent_id"]) == ("Bob", "PBOB")
    (acknowledged,) = parse(_body("incident.acknowledged", _incident(status="acknowledged"),
                                  occurred_at="2024-05-01T11:00:00.125Z")).alerts
    assert acknowledged.starts_at == datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)  # the others: created_at


def test_unhandled_event_type_is_named_and_readable_without_validation() -> None:
    body = json.dumps({"event": {"id": "e", "event_type": "service.updated", "resource_type": "service",
                                 "occurred_at": "2021-03-02T13:35:11.682Z", "agent": None, "client": None,
                                 "data": {"id": "PF9KMXH", "type": "service"}}}).encode()
    assert event_type(body) == "service.updated"
    with pytest.raises(PayloadError, match=r"^event\.event_type: 'service\.updated' is not handled"):
        parse(body)


@pytest.mark.parametrize("body", [b"", b"not json", b"[1]", b'{"event": 3}', b'{"event": {"event_type": 7}}',
                                  b"\xff\xfe"])
def test_event_type_of_junk_is_none(body: bytes) -> None:
    assert event_type(body) is None


def _mutated(mutate: Any) -> bytes:
    document = webhook_event("incident.triggered", _incident(), ALICE)
    mutate(document)
    return json.dumps(document).encode()


@pytest.mark.parametrize(("body", "field"), [
    (b"{nope", "body is not valid JSON"),
    (b"[]", "body must be a JSON object"),
    (b"{}", "event: Field required"),
    (_mutated(lambda d: d["event"]["data"].pop("id")), "event.data.id"),
    (_mutated(lambda d: d["event"]["data"].update(id="")), "event.data.id"),
    (_mutated(lambda d: d["event"].update(occurred_at="yesterday")), "event.occurred_at"),
    (_mutated(lambda d: d["event"].update(occurred_at="2024-05-01T10:00:00")), "event.occurred_at"),
    (_mutated(lambda d: d["event"]["data"].update(service="checkout")), "event.data.service"),
    (_mutated(lambda d: d["event"]["data"].update(assignees="Bob")), "event.data.assignees"),
    (_mutated(lambda d: d["event"].update(data=[])), "event.data"),
    (_mutated(lambda d: d["event"].pop("id")), "event.id"),
])
def test_wrong_shapes_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse(body)
    assert str(caught.value).startswith(field)


def test_annotated_without_incident_reference_names_the_field() -> None:
    document = webhook_event("incident.annotated", _incident(), ALICE, note="x")
    del document["event"]["data"]["incident"]
    with pytest.raises(PayloadError, match=r"^event\.data\.incident: Field required"):
        parse(json.dumps(document).encode())


def test_unknown_fields_are_kept_out_but_not_fatal() -> None:
    document = webhook_event("incident.triggered", _incident(), ALICE, brand_new_field={"x": 1})
    document["event"]["data"]["incident_type"] = {"name": "major"}
    document["event"]["data"]["service"]["extra"] = True
    (alert,) = parse(json.dumps(document).encode()).alerts
    assert alert.labels["service"] == "checkout"


def test_nul_characters_are_stripped_and_long_titles_cut() -> None:
    title = "disk\x00 full " + "x" * 400
    (alert,) = parse(_body("incident.triggered", _incident(title=title, incident_key="k\x00ey"))).alerts
    assert "\x00" not in alert.labels["alertname"] and len(alert.labels["alertname"]) == 256
    assert alert.annotations["summary"] == "disk full " + "x" * 400
    assert alert.labels["pagerduty_dedup_key"] == "key"


def test_untitled_incident_still_has_an_alertname() -> None:
    (alert,) = parse(_body("incident.triggered", _incident(title=""))).alerts
    assert alert.labels["alertname"] == "PagerDuty incident 42"
