"""PagerDuty V3 webhook payloads, built exactly as PagerDuty shapes and signs them.

One definition of the shape, used by the tests, the demo and the PagerDuty emulator alike:

- `incident_resource(...)`: an `incident` object as the REST API v2 and V3 webhooks carry it
  (`id`, `type`, `self`, `html_url`, `number`, `status`, `incident_key`, `created_at`, `title`,
  `service`, `assignees`, `escalation_policy`, `teams`, `priority`, `urgency`,
  `conference_bridge`, `resolve_reason`).
- `webhook_event(event_type, incident, agent)`: the delivery body
  `{"event": {"id", "event_type", "resource_type", "occurred_at", "agent", "client", "data"}}`.
  For `incident.annotated`, `data` is an `incident_note` (`incident` reference, `id`,
  `content`, `trimmed`, `type`) rather than the incident, as PagerDuty sends it.
- `signed(body, secrets)`: the raw bytes and the headers of one delivery, with
  `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]`, one HMAC-SHA256 of the raw body per
  signing secret (several while a secret is being rotated).

Source: PagerDuty's developer documentation (webhooks "Overview" with its example payloads and
the "Event Data Types", "Verifying Signatures" and "Behavior" pages) and go-pagerduty's
`webhookv3` package. Everything here is a pure function of its arguments.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

API_ROOT = "https://api.pagerduty.com"
WEB_ROOT = "https://opsbot-sandbox.pagerduty.com"
SIGNATURE_HEADER = "X-PagerDuty-Signature"
USER_AGENT = "PagerDuty-Webhook/V3.0"
SIGNATURE_VERSION = "v1"

INCIDENT_EVENT_TYPES = frozenset({
    "incident.acknowledged", "incident.annotated", "incident.delegated", "incident.escalated",
    "incident.priority_updated", "incident.reassigned", "incident.reopened", "incident.resolved",
    "incident.responder.added", "incident.responder.replied", "incident.status_update_published",
    "incident.triggered", "incident.unacknowledged",
})


def pd_time(moment: datetime | None = None, *, millis: bool = False) -> str:
    """A UTC timestamp the way PagerDuty writes it: `2020-04-09T15:16:27Z` for resource times,
    `2020-10-02T18:45:22.169Z` (milliseconds) for `occurred_at`."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def reference(kind: str, id: str, summary: str, *, collection: str | None = None,  # noqa: A002
              api_root: str = API_ROOT, web_root: str = WEB_ROOT) -> dict[str, Any]:
    """A `<kind>_reference` object (`user`, `service`, `team`, `escalation_policy`, ...)."""
    plural = collection or (kind[:-1] + "ies" if kind.endswith("y") else kind + "s")
    web_path = "service-directory" if kind == "service" else plural
    return {
        "html_url": f"{web_root}/{web_path}/{id}",
        "id": id,
        "self": f"{api_root}/{plural}/{id}",
        "summary": summary,
        "type": f"{kind}_reference",
    }


def user_reference(id: str, name: str, **roots: str) -> dict[str, Any]:  # noqa: A002
    return reference("user", id, name, **roots)


def service_reference(id: str, name: str, **roots: str) -> dict[str, Any]:  # noqa: A002
    return reference("service", id, name, **roots)


def priority_reference(id: str, name: str, *, api_root: str = API_ROOT,  # noqa: A002
                       web_root: str = WEB_ROOT) -> dict[str, Any]:
    return {
        "html_url": f"{web_root}/account/incident_priorities",
        "id": id,
        "self": f"{api_root}/priorities/{id}",
        "summary": name,
        "type": "priority_reference",
    }


def incident_resource(
    id: str,  # noqa: A002
    number: int,
    title: str,
    *,
    status: str = "triggered",
    incident_key: str | None = None,
    created_at: datetime | str | None = None,
    service: Mapping[str, Any] | None = None,
    assignees: Sequence[Mapping[str, Any]] = (),
    escalation_policy: Mapping[str, Any] | None = None,
    teams: Sequence[Mapping[str, Any]] = (),
    priority: Mapping[str, Any] | None = None,
    urgency: str = "high",
    resolve_reason: Mapping[str, Any] | None = None,
    api_root: str = API_ROOT,
    web_root: str = WEB_ROOT,
) -> dict[str, Any]:
    """An incident object shaped like PagerDuty's (REST API v2 and V3 webhook `data`).

    `incident_key` is the incident's de-duplication key (the Events API `dedup_key` that
    opened it); PagerDuty generates a 32-hex one when the event had none.
    """
    created = created_at if isinstance(created_at, str) else pd_time(created_at)
    roots = {"api_root": api_root, "web_root": web_root}
    return {
        "id": id,
        "type": "incident",
        "self": f"{api_root}/incidents/{id}",
        "html_url": f"{web_root}/incidents/{id}",
        "number": number,
        "status": status,
        "incident_key": incident_key if incident_key is not None else uuid.uuid4().hex,
        "created_at": created,
        "title": title,
        "service": dict(service) if service is not None else service_reference("PSVC0PS", "opsbot sandbox", **roots),
        "assignees": [dict(a) for a in assignees],
        "escalation_policy": (dict(escalation_policy) if escalation_policy is not None
                              else reference("escalation_policy", "PESC0PS", "Default", **roots)),
        "teams": [dict(t) for t in teams],
        "priority": dict(priority) if priority is not None else None,
        "urgency": urgency,
        "conference_bridge": None,
        "resolve_reason": dict(resolve_reason) if resolve_reason is not None else None,
    }


def incident_note(incident: Mapping[str, Any], note_id: str, content: str, *, trimmed: bool = False) -> dict[str, Any]:
    """The `incident_note` data of an `incident.annotated` event: the incident appears only as
    a reference (no `incident_key`, no status), as in PagerDuty's payloads."""
    return {
        "incident": {
            "html_url": incident.get("html_url"),
            "id": incident["id"],
            "self": incident.get("self"),
            "summary": incident.get("title"),
            "type": "incident_reference",
        },
        "id": note_id,
        "content": content,
        "trimmed": trimmed,
        "type": "incident_note",
    }


def webhook_event(event_type: str, incident: Mapping[str, Any], agent: Mapping[str, Any] | None = None, *,
                  note: str | None = None, note_id: str | None = None, event_id: str | None = None,
                  occurred_at: datetime | str | None = None, client: Mapping[str, Any] | None = None,
                  **extra: Any) -> dict[str, Any]:
    """The body of one V3 webhook delivery about `incident`.

    `agent` is who acted (a user or service reference; None for PagerDuty itself). For
    `incident.annotated`, `note` is the note's content and `data` becomes an `incident_note`.
    `extra` keys are added to (or replace keys of) the `event` object, e.g. to test unknown
    fields. The incident dict is copied, never shared with the caller.
    """
    if event_type == "incident.annotated":
        if note is None:
            raise ValueError("an incident.annotated event needs the note's content")
        data: dict[str, Any] = incident_note(incident, note_id or new_id("P"), note)
    else:
        data = json.loads(json.dumps(incident))  # a deep, JSON-clean copy
    when = occurred_at if isinstance(occurred_at, str) else pd_time(occurred_at, millis=True)
    event: dict[str, Any] = {
        "id": event_id or str(uuid.uuid4()),
        "event_type": event_type,
        "resource_type": event_type.split(".", 1)[0],
        "occurred_at": when,
        "agent": dict(agent) if agent is not None else None,
        "client": dict(client) if client is not None else ({"name": "PagerDuty"} if agent is not None else None),
        "data": data,
    }
    event.update(extra)
    return {"event": event}


def signature(secret: str, body: bytes) -> str:
    """`v1=<hex>`: HMAC-SHA256 of the raw body keyed with one subscription secret."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def signed(body: Mapping[str, Any] | bytes, secrets: Sequence[str] | str, *, webhook_id: str | None = None,
           subscription_id: str = "PSUB0PS") -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of one delivery, signed once per secret, comma-separated.

    A dict body is serialised compactly (UTF-8, no ASCII escaping) and the signatures cover
    those exact bytes; bytes are signed as given.
    """
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Webhook-Subscription": subscription_id,
    }
    if keys:
        headers[SIGNATURE_HEADER] = ",".join(signature(key, raw) for key in keys)
    return raw, headers


def new_id(prefix: str = "Q") -> str:
    """A fresh id shaped like PagerDuty's newer ones: a letter (`Q` for incidents) and 13
    upper-case alphanumerics."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    value = int.from_bytes(uuid.uuid4().bytes, "big")
    chars = []
    for _ in range(13):
        value, rem = divmod(value, len(alphabet))
        chars.append(alphabet[rem])
    return prefix + "".join(chars)
