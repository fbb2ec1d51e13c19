"""PagerDuty V3 webhooks into an `AlertBatch`: signature check and parsing.

Delivery: PagerDuty POSTs `{"event": {"id", "event_type", "resource_type", "occurred_at",
"agent", "client", "data"}}` with `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]`, one
HMAC-SHA256 of the raw body per subscription secret (several during a secret rotation).
`verify_signature` must run on the raw bytes before anything else.

Mapping (one PagerDuty incident is one alert and one opsbot incident):

- `group_key` = `"pagerduty:" + <PD incident id>`; `external_url` = the incident's `html_url`.
- the alert's `fingerprint` = the PD incident id, for every event type. The incident's
  `incident_key` (the Events API `dedup_key`) is the label `pagerduty_dedup_key`. The id, not
  the key, is the identity because `incident.annotated` payloads carry the incident only as
  a reference (id and title, no `incident_key`): keyed on the dedup key, a note would create
  a second alert that never resolves.
- `status` = `resolved` for `incident.resolved`, otherwise `firing`; `ends_at` = `occurred_at`
  when resolved; `generator_url` = `html_url`. `starts_at` = `data.created_at`, except for
  `incident.reopened`, where it is `occurred_at`: the incident fires again from that moment,
  and a firing state that starts before the stored resolution would be taken for an older,
  stale state by the intake flow.
- labels: `alertname` (the title, cut to 256), `service`, `pagerduty_incident`,
  `pagerduty_service_id`, `pagerduty_dedup_key`, `urgency`, `severity` (`P1` critical, `P2`
  high, `P3` warning, `P4`/`P5` info; without such a priority: high urgency critical, low
  urgency warning), and `opsbot_incident` (see below). A label is present only when the
  payload carries its value: an annotation event knows neither service nor urgency, and must
  not overwrite them.
- annotations: `summary` (title), `html_url`, `pagerduty_event` (the event type),
  `pagerduty_event_id`, `pagerduty_status`, `pagerduty_number`, `agent`, `agent_id` and
  `agent_type` (who acted, e.g. `user_reference`; a `service_reference` agent is an
  integration such as the Events API), `assignees`, `priority`, and `note` (the content, for
  `incident.annotated`).

Contract with the incident flow: `batch.common_annotations["pagerduty_event"]` is always the
event type, so the flow writes the right timeline entry (acknowledged, reassigned, annotated,
...). `incident.annotated` is informational: it says nothing about the incident's state and
its alert is `firing` only because an alert must have a status; the flow should record the
note, not re-open anything. When the PD incident's `incident_key` has the shape of an opsbot
dedup key, `<prefix>-<REF>` (`opsbot-INC-12`, or another install's `acme-INC-12`, see
`validate_dedup_prefix`), the label `opsbot_incident` is `<REF>` (e.g. `INC-12`). The label
only says "some opsbot opened this": the parser does not know this install's prefix, so the
flow attaches the event to INC-12 only when INC-12's recorded dedup key equals the whole
`incident_key` (no loop, and another install's incident stays foreign). `event_type(body)`
reads the type without validation, so the caller can answer unhandled types
202-and-ignore; `parse` refuses them with `PayloadError`.

Hostile input: every string of the document is made storable before validation (NUL
removed, a lone surrogate replaced by U+FFFD, see `bot.alerts.model.clean_text`), an
`occurred_at` outside `PLAUSIBLE_TIMES` is refused (it orders state changes, so it cannot be
unknown) and an implausible `created_at` is unknown. The batch carries the event's `id` and
`occurred_at` for the replay guard and the ordering of state changes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from bot.alerts.fingerprints import bounded_fingerprint
from bot.alerts.model import (
    MAX_FINGERPRINT,
    MAX_NAME,
    PLAUSIBLE_TIMES,
    AlertBatch,
    AlertStatus,
    NormalizedAlert,
    PayloadError,
    clean_text,
    load_object,
    plausible_time,
)

SOURCE = "pagerduty"
SIGNATURE_HEADER = "X-PagerDuty-Signature"
GROUP_KEY_PREFIX = "pagerduty:"
DEFAULT_DEDUP_PREFIX = "opsbot"
MAX_DEDUP_PREFIX_CHARS = 32

HANDLED_EVENT_TYPES: frozenset[str] = frozenset({
    "incident.triggered",
    "incident.acknowledged",
    "incident.unacknowledged",
    "incident.resolved",
    "incident.reassigned",
    "incident.annotated",
    "incident.escalated",
    "incident.priority_updated",
    "incident.reopened",
})

# More signatures than this in one header is not a rotation, it is garbage or an attack.
MAX_SIGNATURES = 16
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_PRIORITY_SEVERITY = {"P1": "critical", "P2": "high", "P3": "warning", "P4": "info", "P5": "info"}
_URGENCY_SEVERITY = {"high": "critical", "low": "warning"}
# An install's dedup key prefix: lower-case letters, digits and inner hyphens, 1 to 32 characters.
_DEDUP_PREFIX = rf"[a-z0-9](?:[a-z0-9-]{{0,{MAX_DEDUP_PREFIX_CHARS - 2}}}[a-z0-9])?"
_OPSBOT_KEY = re.compile(rf"(?P<prefix>{_DEDUP_PREFIX})-(?P<reference>INC-[1-9][0-9]{{0,17}})")


def verify_signature(secrets: Sequence[str], body: bytes, header: str | None) -> bool:
    """True when any `v1=` signature in `header` equals HMAC-SHA256(secret, body) for any
    configured (non-empty) secret.

    False for a missing or malformed header and when no secret is configured: an empty secret
    is a configuration mistake, never "accept everything". Comparisons are constant-time.
    Other signature versions are ignored, as PagerDuty's reference verifier does.
    """
    if not header or not isinstance(body, bytes | bytearray):
        return False
    if isinstance(secrets, str):  # one secret, not a sequence of one-character secrets
        secrets = [secrets]
    keys = [secret for secret in secrets if secret]
    if not keys:
        return False
    offered: list[bytes] = []
    for part in header.split(","):
        version, _, value = part.strip().partition("=")
        if version == "v1" and _HEX_SHA256.fullmatch(value):
            offered.append(bytes.fromhex(value))
            if len(offered) > MAX_SIGNATURES:
                return False
    if not offered:
        return False
    matched = False
    for key in keys:
        expected = hmac.new(key.encode("utf-8"), bytes(body), hashlib.sha256).digest()
        for candidate in offered:
            # no early exit: the time taken does not depend on which signature matched
            matched |= hmac.compare_digest(expected, candidate)
    return matched


def event_type(body: bytes) -> str | None:
    """`event.event_type` of a delivery, or None when the body is not shaped enough to say.

    Does not validate anything else: it lets the webhook route tell an unhandled event type
    (answer 2xx and ignore, or PagerDuty retries) from a malformed body (answer 400).
    """
    return _event_field(body, "event_type")


def event_id(body: bytes) -> str | None:
    """`event.id` of a delivery (None when it has none): the webhook route answers a replay
    of an event already applied without storing it again (see `bot.incidents.pagerduty_flow`)."""
    return _event_field(body, "id")


def _event_field(body: bytes, name: str) -> str | None:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    event = document.get("event") if isinstance(document, dict) else None
    value = event.get(name) if isinstance(event, dict) else None
    return clean_text(value) if isinstance(value, str) else None  # as `parse` reads it


class _Reference(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    summary: str | None = None
    type: str | None = None
    html_url: str | None = None


class _Incident(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    type: str | None = None
    html_url: str | None = None
    number: int | None = None
    status: str | None = None
    incident_key: str | None = None
    created_at: AwareDatetime | None = None
    title: str | None = None
    service: _Reference | None = None
    assignees: list[_Reference] = Field(default_factory=list)
    priority: _Reference | None = None
    urgency: str | None = None


class _IncidentReference(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    summary: str | None = None
    html_url: str | None = None


class _Note(BaseModel):
    model_config = ConfigDict(extra="allow")

    incident: _IncidentReference
    id: str | None = None
    content: str | None = None


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    event_type: str
    resource_type: str | None = None
    occurred_at: AwareDatetime
    agent: _Reference | None = None
    client: dict[str, Any] | None = None
    data: dict[str, Any]


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="allow")

    event: _Event


def _first_error(exc: ValidationError, prefix: str = "") -> str:
    error = exc.errors()[0]
    parts = ([prefix] if prefix else []) + [str(part) for part in error["loc"]]
    location = ".".join(parts) or "body"
    message = error["msg"].removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    return f"{location}: {message}" + (f" (and {more} more problems)" if more else "")


def severity_for(urgency: str | None, priority: str | None) -> str | None:
    """opsbot severity from PagerDuty's priority (`P1`..`P5`, when the account uses the
    standard names) or else its urgency; None when neither says anything."""
    if priority:
        mapped = _PRIORITY_SEVERITY.get(priority.strip().upper())
        if mapped:
            return mapped
    return _URGENCY_SEVERITY.get((urgency or "").strip().lower())


def validate_dedup_prefix(prefix: str) -> str:
    """`prefix` when it can start an opsbot dedup key (`<prefix>-INC-N`), else ValueError.

    Short and plain on purpose: it is compared exactly, shown in PagerDuty, and must not be
    mistaken for part of the reference that follows it.
    """
    if not isinstance(prefix, str) or not re.fullmatch(_DEDUP_PREFIX, prefix):
        raise ValueError(f"must be 1 to {MAX_DEDUP_PREFIX_CHARS} lower-case letters, digits or inner hyphens "
                         f"(like '{DEFAULT_DEDUP_PREFIX}' or 'opsbot-eu')")
    return prefix


def opsbot_reference(incident_key: str | None) -> str | None:
    """`INC-12` for an incident key shaped like an opsbot dedup key (`opsbot-INC-12`, also
    another install's `acme-INC-12`), else None. Whose key it is, is the flow's question."""
    match = _OPSBOT_KEY.fullmatch(incident_key or "")
    return match["reference"] if match else None


def parse(body: bytes) -> AlertBatch:
    """Validate and normalise one V3 webhook delivery; raise `PayloadError` naming the field.

    Unknown fields are kept out of the batch but never fatal (the raw delivery keeps them).
    Event types outside `HANDLED_EVENT_TYPES` raise `PayloadError` on `event.event_type`.
    """
    document = load_object(body, "a PagerDuty V3 webhook payload")
    try:
        envelope = _Envelope.model_validate(document)
    except ValidationError as exc:
        raise PayloadError(_first_error(exc)) from None
    event = envelope.event
    if plausible_time(event.occurred_at) is None:
        raise PayloadError(f"event.occurred_at: {event.occurred_at.isoformat()} is not a plausible time "
                           f"(between {PLAUSIBLE_TIMES[0].year} and {PLAUSIBLE_TIMES[1].year})")
    if event.event_type not in HANDLED_EVENT_TYPES:
        raise PayloadError(f"event.event_type: {event.event_type!r} is not handled "
                           f"(opsbot reads {', '.join(sorted(HANDLED_EVENT_TYPES))})")
    try:
        if event.event_type == "incident.annotated":
            note = _Note.model_validate(event.data)
            incident = _Incident(id=note.incident.id, title=note.incident.summary, html_url=note.incident.html_url)
            note_text = note.content
        else:
            incident = _Incident.model_validate(event.data)
            note_text = None
    except ValidationError as exc:
        raise PayloadError(_first_error(exc, "event.data")) from None
    return _batch(event, incident, note_text)


def _batch(event: _Event, incident: _Incident, note: str | None) -> AlertBatch:
    occurred_at = plausible_time(event.occurred_at)
    status: AlertStatus = "resolved" if event.event_type == "incident.resolved" else "firing"
    title = (incident.title or "").strip()
    name = title[:MAX_NAME] or f"PagerDuty incident {incident.number or incident.id}"
    priority = incident.priority.summary if incident.priority else None
    service = incident.service
    labels = _present({
        "alertname": name,
        "pagerduty_incident": incident.id,
        "service": service.summary if service else None,
        "pagerduty_service_id": service.id if service else None,
        "pagerduty_dedup_key": incident.incident_key,
        "urgency": incident.urgency,
        "severity": severity_for(incident.urgency, priority),
        "opsbot_incident": opsbot_reference(incident.incident_key),
    })
    agent = event.agent
    assignees = ", ".join(a.summary for a in incident.assignees if a.summary)
    annotations = _present({
        "summary": title or None,
        "html_url": incident.html_url,
        "pagerduty_event": event.event_type,
        "pagerduty_event_id": event.id,
        "pagerduty_status": incident.status,
        "pagerduty_number": str(incident.number) if incident.number is not None else None,
        "agent": agent.summary if agent else None,
        "agent_id": agent.id if agent else None,
        "agent_type": agent.type if agent else None,
        "assignees": assignees or None,
        "priority": priority,
        "note": note,
    })
    alert = NormalizedAlert(
        source=SOURCE,
        fingerprint=bounded_fingerprint(incident.id, MAX_FINGERPRINT),
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=occurred_at if event.event_type == "incident.reopened" else plausible_time(incident.created_at),
        ends_at=occurred_at if status == "resolved" else None,
        generator_url=incident.html_url or None,
    )
    return AlertBatch(
        source=SOURCE,
        group_key=GROUP_KEY_PREFIX + incident.id,
        status=status,
        alerts=(alert,),
        group_labels={"pagerduty_incident": labels["pagerduty_incident"]},
        common_labels=dict(labels),
        common_annotations=dict(annotations),
        external_url=alert.generator_url,
        truncated_alerts=0,
        event_id=event.id,
        occurred_at=occurred_at,
    )


def _present(values: dict[str, str | None]) -> dict[str, str]:
    """The non-empty values (the document's strings were made storable when it was read)."""
    return {key: value for key, value in values.items() if value}
