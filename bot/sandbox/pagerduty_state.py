"""The PagerDuty account behind the emulator: services, users, incidents, notes, and the rules
of the Events API v2 and the REST API v2 endpoints opsbot uses.

Pure state, no I/O and no locking: `PagerDutyEmulator` calls it under its lock. Every
mutating method returns the HTTP answer plus the `Change`s it caused; each change becomes one
V3 webhook (built with `bot.sandbox.pagerduty_webhooks`, the one definition of the shape).

Rules followed (PagerDuty's documented behaviour):
- Events `trigger` with the dedup key of an open incident (triggered or acknowledged) adds an
  alert to it: no new incident, no webhook. Otherwise it opens a new incident whose
  `incident_key` is the dedup key (a generated 32-hex key when none was given).
- Events `acknowledge`/`resolve` act on the open incident with that key; with none it is a
  silent no-op, still answered 202, as PagerDuty does.
- Urgency follows the service's rule; the default is "severity based": critical and error
  are high urgency, warning and info low.
- REST writes need a `From` header naming a user of the account; `PUT /incidents/{id}`
  changes the incident as that user (the webhook's agent is that user's reference).
- A resolved incident can be reopened (by a person): it is triggered again and announced
  with `incident.reopened`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from bot.sandbox import pagerduty_webhooks as wh

EVENT_SEVERITIES = ("critical", "error", "warning", "info")
EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
MAX_SUMMARY_CHARS = 1024
MAX_DEDUP_KEY_CHARS = 255
MAX_NOTE_CHARS = 25_000
OPEN = ("triggered", "acknowledged")
DEFAULT_ROUTING_KEY = "R0UT1NGKEY0PSB0T0SANDB0X00000001"  # 32 characters, like a real one
DEFAULT_API_TOKEN = "u+sandbox-token-0PSB0T"
_BAD_EVENT = "Event object is invalid"


@dataclass(frozen=True)
class User:
    id: str
    name: str
    email: str

    def ref(self, roots: Mapping[str, str]) -> dict[str, Any]:
        return wh.user_reference(self.id, self.name, **roots)


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    routing_key: str
    urgency_rule: str = "severity_based"  # or "high" / "low"

    def ref(self, roots: Mapping[str, str]) -> dict[str, Any]:
        return wh.service_reference(self.id, self.name, **roots)


@dataclass
class Incident:
    id: str
    number: int
    title: str
    service: Service
    incident_key: str
    urgency: str
    created_at: datetime
    status: str = "triggered"
    severity: str | None = None
    custom_details: dict[str, Any] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)
    alerts: int = 1
    assignees: list[User] = field(default_factory=list)
    priority: str | None = None
    acknowledgements: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)
    last_status_change_at: datetime | None = None


@dataclass(frozen=True)
class Note:
    id: str
    incident_id: str
    content: str
    user: User | None
    created_at: datetime


@dataclass(frozen=True)
class Change:
    """One state change PagerDuty would announce with a V3 webhook. `incident` is the
    webhook-shaped snapshot taken when the change happened."""

    event_type: str
    incident: dict[str, Any]
    agent: dict[str, Any] | None
    occurred_at: datetime
    note: str | None = None
    note_id: str | None = None


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any] | None


Result = tuple[Answer, list[Change]]


def rest_error(status: int, message: str, code: int | None = None, errors: list[str] | None = None) -> Answer:
    """A REST API v2 error body: `{"error": {"message", "code", "errors"}}`."""
    error: dict[str, Any] = {"message": message}
    if code is not None:
        error["code"] = code
    if errors:
        error["errors"] = errors
    return Answer(status, {"error": error})


def _invalid(*errors: str) -> Result:
    return Answer(400, {"status": "invalid event", "message": _BAD_EVENT, "errors": list(errors)}), []


class PagerDutyAccount:
    """Services, users, incidents and notes of one sandbox PagerDuty account."""

    def __init__(self, clock: Callable[[], datetime], *, api_token: str = DEFAULT_API_TOKEN,
                 api_root: str = wh.API_ROOT, web_root: str = wh.WEB_ROOT) -> None:
        self.clock = clock
        self.api_token = api_token
        self.roots = {"api_root": api_root, "web_root": web_root}
        self.services: dict[str, Service] = {}  # by routing key
        self.users: dict[str, User] = {}  # by id
        self.incidents: dict[str, Incident] = {}  # by id, in creation order
        self.notes: dict[str, list[Note]] = {}  # by incident id
        self.on_call: dict[tuple[str, str], list[User]] = {}  # (escalation policy id, schedule id) -> users
        self._numbers = 0

    # -- seeds -----------------------------------------------------------------------------------
    def add_service(self, name: str, routing_key: str, *, urgency_rule: str = "severity_based") -> Service:
        service = Service(wh.new_id("P"), name, routing_key, urgency_rule)
        self.services[routing_key] = service
        return service

    def add_user(self, name: str, email: str | None = None) -> User:
        user = User(wh.new_id("P"), name, email or f"{name.lower().replace(' ', '.')}@example.com")
        self.users[user.id] = user
        return user

    def user_named(self, name_or_email: str) -> User:
        """The user with that name or email (case-insensitive), created when unknown."""
        wanted = name_or_email.strip().lower()
        for user in self.users.values():
            if wanted in (user.name.lower(), user.email.lower()):
                return user
        return self.add_user(name_or_email) if "@" not in wanted else self.add_user(wanted.split("@")[0], wanted)

    def _user_by_email(self, email: str | None) -> User | None:
        wanted = (email or "").strip().lower()
        return next((u for u in self.users.values() if wanted and u.email.lower() == wanted), None)

    # -- shapes ----------------------------------------------------------------------------------
    def incident_view(self, incident: Incident) -> dict[str, Any]:
        """The incident as V3 webhooks carry it."""
        return wh.incident_resource(
            incident.id, incident.number, incident.title, status=incident.status,
            incident_key=incident.incident_key, created_at=incident.created_at,
            service=incident.service.ref(self.roots), assignees=[u.ref(self.roots) for u in incident.assignees],
            priority=(wh.priority_reference("PPRI" + incident.priority.upper(), incident.priority, **self.roots)
                      if incident.priority else None),
            urgency=incident.urgency, **self.roots,
        )

    def incident_rest_view(self, incident: Incident) -> dict[str, Any]:
        """The incident as REST API v2 `GET /incidents[/{id}]` returns it (webhook fields plus
        `summary`, `last_status_change_at`, `alert_counts`, `acknowledgements`)."""
        view = self.incident_view(incident)
        resolved = incident.alerts if incident.status == "resolved" else 0
        view.update({
            "summary": f"[#{incident.number}] {incident.title}",
            "description": incident.title,
            "last_status_change_at": wh.pd_time(incident.last_status_change_at or incident.created_at),
            "alert_counts": {"all": incident.alerts, "triggered": incident.alerts - resolved, "resolved": resolved},
            "acknowledgements": [{"at": wh.pd_time(at), "acknowledger": who} for at, who in incident.acknowledgements],
            "pending_actions": [],
        })
        return view

    def note_view(self, note: Note) -> dict[str, Any]:
        return {
            "id": note.id,
            "user": note.user.ref(self.roots) if note.user else None,
            "channel": {"summary": "The PagerDuty website or APIs"},
            "content": note.content,
            "created_at": wh.pd_time(note.created_at),
        }

    # -- Events API v2 ---------------------------------------------------------------------------
    def enqueue_event(self, document: Any) -> Result:
        """`POST /v2/enqueue`: validate like PagerDuty, then trigger, acknowledge or resolve."""
        if not isinstance(document, dict):
            return _invalid("Event object must be a JSON object")
        routing_key = document.get("routing_key")
        if not isinstance(routing_key, str) or len(routing_key) != 32:
            return _invalid("Length of 'routing_key' is incorrect (should be 32 characters)")
        service = self.services.get(routing_key)
        if service is None:
            return _invalid("Invalid routing key")
        action = document.get("event_action")
        if action not in EVENT_ACTIONS:
            return _invalid("'event_action' is missing or invalid (must be trigger, acknowledge or resolve)")
        dedup_key = document.get("dedup_key")
        if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > MAX_DEDUP_KEY_CHARS):
            return _invalid(f"'dedup_key' must be a string of at most {MAX_DEDUP_KEY_CHARS} characters")
        if action != "trigger":
            if not dedup_key:
                return _invalid("'dedup_key' is missing or blank")
            changes = self._event_transition(service, dedup_key, action)
            return self._accepted(dedup_key), changes
        payload = document.get("payload")
        problems = _trigger_problems(payload, document.get("links"))
        if problems:
            return _invalid(*problems)
        assert isinstance(payload, dict)
        key = dedup_key or uuid.uuid4().hex
        return self._accepted(key), self._event_trigger(service, key, payload, document.get("links") or [])

    @staticmethod
    def _accepted(dedup_key: str) -> Answer:
        return Answer(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})

    def open_incident_with_key(self, service: Service | None, key: str) -> Incident | None:
        for incident in reversed(list(self.incidents.values())):
            if (incident.incident_key == key and incident.status in OPEN
                    and (service is None or incident.service.id == service.id)):
                return incident
        return None

    def _event_trigger(self, service: Service, key: str, payload: dict[str, Any],
                       links: list[dict[str, Any]]) -> list[Change]:
        existing = self.open_incident_with_key(service, key)
        if existing is not None:
            existing.alerts += 1  # de-duplicated into the open incident: no webhook
            return []
        severity = str(payload["severity"])
        urgency = service.urgency_rule if service.urgency_rule in ("high", "low") else (
            "high" if severity in ("critical", "error") else "low")
        incident = self.open_incident(str(payload["summary"]), service=service, incident_key=key, urgency=urgency)
        incident.severity = severity
        incident.custom_details = dict(payload.get("custom_details") or {})
        incident.links = [dict(link) for link in links]
        return [self.change_of("incident.triggered", incident, service.ref(self.roots))]

    def open_incident(self, title: str, *, service: Service, incident_key: str | None = None, urgency: str = "high",
                      created_at: datetime | None = None, priority: str | None = None) -> Incident:
        """Create a triggered incident (no webhook: the caller records the change)."""
        self._numbers += 1
        now = self.clock()
        incident = Incident(
            id=wh.new_id("Q"), number=self._numbers, title=title[:MAX_SUMMARY_CHARS], service=service,
            incident_key=incident_key or uuid.uuid4().hex, urgency=urgency, created_at=created_at or now,
            priority=priority, last_status_change_at=created_at or now,
            assignees=[next(iter(self.users.values()))] if self.users else [],
        )
        self.incidents[incident.id] = incident
        return incident

    def _event_transition(self, service: Service, key: str, action: str) -> list[Change]:
        incident = self.open_incident_with_key(service, key)
        if incident is None:
            return []  # PagerDuty accepts and ignores it
        target = "acknowledged" if action == "acknowledge" else "resolved"
        return self.transition(incident, target, service.ref(self.roots))

    def transition(self, incident: Incident, target: str, agent: dict[str, Any] | None) -> list[Change]:
        """Move to `target` (acknowledged, triggered, resolved); a no-op returns no change."""
        if incident.status == target or incident.status == "resolved":
            if target == "acknowledged" and incident.status == "acknowledged" and agent is not None:
                incident.acknowledgements.append((self.clock(), agent))  # a re-acknowledge
            return []
        incident.status = target
        incident.last_status_change_at = self.clock()
        if target == "acknowledged" and agent is not None:
            incident.acknowledgements.append((incident.last_status_change_at, agent))
        if target == "triggered":
            incident.acknowledgements.clear()
        event = {"acknowledged": "incident.acknowledged", "resolved": "incident.resolved",
                 "triggered": "incident.unacknowledged"}[target]
        return [self.change_of(event, incident, agent)]

    def change_of(self, event_type: str, incident: Incident, agent: dict[str, Any] | None, **note: str) -> Change:
        return Change(event_type, self.incident_view(incident), agent, self.clock(), **note)

    # -- REST API v2 -----------------------------------------------------------------------------
    def authorized(self, header: str | None) -> bool:
        return header == f"Token token={self.api_token}"

    def list_incidents(self, query: str) -> Answer:
        """`GET /incidents`: filters `incident_key`, `statuses[]`, `service_ids[]`, `since`
        (default 30 days; `date_range=all` lifts it), classic pagination (`limit` up to 100,
        `offset`, `total`, `more`). Oldest first."""
        params = parse_qs(query, keep_blank_values=True)
        statuses = set(params.get("statuses[]", []))
        unknown = statuses - {"triggered", "acknowledged", "resolved"}
        if unknown:
            return rest_error(400, "Invalid Input Provided", 2001, [f"Invalid status: {sorted(unknown)[0]}"])
        services = set(params.get("service_ids[]", []))
        key = params.get("incident_key", [None])[-1]
        since = None if params.get("date_range", [""])[-1] == "all" else self.clock() - timedelta(days=30)
        found = [
            i for i in self.incidents.values()
            if (not statuses or i.status in statuses) and (not services or i.service.id in services)
            and (key is None or i.incident_key == key) and (since is None or i.created_at >= since)
        ]
        return _paginated("incidents", [self.incident_rest_view(i) for i in found], params)

    def list_users(self, query: str) -> Answer:
        """`GET /users`: `query` keeps the users whose name or email contains it (ignoring
        case), classic pagination as `GET /incidents`. In creation order."""
        params = parse_qs(query, keep_blank_values=True)
        wanted = params.get("query", [""])[-1].strip().lower()
        found = [u for u in self.users.values() if wanted in u.name.lower() or wanted in u.email.lower()]
        return _paginated("users", [self.user_view(u) for u in found], params)

    def list_oncalls(self, query: str) -> Answer:
        """`GET /oncalls` now: entries of the schedules in `schedule_ids[]` or the escalation
        policies in `escalation_policy_ids[]` (no filter: every entry), each with its user as a
        reference, or whole (with `email`) when `include[]=users`; classic pagination."""
        params = parse_qs(query, keep_blank_values=True)
        schedules, policies = set(params.get("schedule_ids[]", [])), set(params.get("escalation_policy_ids[]", []))
        whole_users = "users" in params.get("include[]", [])
        now = self.clock()
        entries = [
            {"escalation_policy": wh.reference("escalation_policy", policy, f"Policy {policy}", **self.roots),
             "escalation_level": 1,
             "schedule": wh.reference("schedule", schedule, f"Schedule {schedule}", **self.roots),
             "user": self.user_view(user) if whole_users else user.ref(self.roots),
             "start": wh.pd_time(now - timedelta(hours=8)), "end": wh.pd_time(now + timedelta(hours=16))}
            for (policy, schedule), users in self.on_call.items()
            if (not schedules or schedule in schedules) and (not policies or policy in policies)
            for user in users
        ]
        return _paginated("oncalls", entries, params)

    def user_view(self, user: User) -> dict[str, Any]:
        """A user as REST API v2 `GET /users` shows it (the reference fields plus name and email)."""
        return {**user.ref(self.roots), "type": "user", "name": user.name, "email": user.email}

    def get_incident(self, incident_id: str) -> Answer:
        incident = self.incidents.get(incident_id)
        if incident is None:
            return rest_error(404, "Not Found", 2100)
        return Answer(200, {"incident": self.incident_rest_view(incident)})

    def _requester(self, from_header: str | None) -> User | Answer:
        if not from_header:
            return rest_error(400, "Invalid Input Provided", 2001,
                              ["You must specify a user's email address in the \"From\" header to perform this action"])
        user = self._user_by_email(from_header)
        return user if user is not None else rest_error(400, "Invalid Input Provided", 2001,
                                                        ["Requester User Not Found"])

    def update_incident(self, incident_id: str, body: Any, from_header: str | None) -> Result:
        """`PUT /incidents/{id}` with `{"incident": {"type", "status"}}`: acknowledge or resolve."""
        incident = self.incidents.get(incident_id)
        if incident is None:
            return rest_error(404, "Not Found", 2100), []
        requester = self._requester(from_header)
        if isinstance(requester, Answer):
            return requester, []
        entity = body.get("incident") if isinstance(body, dict) else None
        if not isinstance(entity, dict) or entity.get("type") not in ("incident", "incident_reference"):
            return rest_error(400, "Invalid Input Provided", 2001,
                              ["incident must be an object with type 'incident' or 'incident_reference'"]), []
        status = entity.get("status")
        if status is not None and status not in ("acknowledged", "resolved"):
            return rest_error(400, "Invalid Input Provided", 2001, ["Status must be acknowledged or resolved"]), []
        if status is not None and incident.status == "resolved":
            return rest_error(400, "Incident Already Resolved", 2001, ["Incident Already Resolved"]), []
        changes = self.transition(incident, status, requester.ref(self.roots)) if status else []
        return Answer(200, {"incident": self.incident_rest_view(incident)}), changes

    def add_note(self, incident_id: str, body: Any, from_header: str | None) -> Result:
        """`POST /incidents/{id}/notes` with `{"note": {"content"}}`; answers 201."""
        incident = self.incidents.get(incident_id)
        if incident is None:
            return rest_error(404, "Not Found", 2100), []
        requester = self._requester(from_header)
        if isinstance(requester, Answer):
            return requester, []
        entity = body.get("note") if isinstance(body, dict) else None
        content = entity.get("content") if isinstance(entity, dict) else None
        if not isinstance(content, str) or not content.strip():
            return rest_error(400, "Invalid Input Provided", 2001, ["Note content can't be blank"]), []
        if len(content) > MAX_NOTE_CHARS:
            return rest_error(400, "Invalid Input Provided", 2001,
                              [f"Note content is too long (maximum is {MAX_NOTE_CHARS} characters)"]), []
        note, change = self.annotate(incident, content, requester)
        return Answer(201, {"note": self.note_view(note)}), [change]

    def annotate(self, incident: Incident, content: str, user: User | None) -> tuple[Note, Change]:
        note = Note(wh.new_id("P"), incident.id, content, user, self.clock())
        self.notes.setdefault(incident.id, []).append(note)
        change = self.change_of("incident.annotated", incident, user.ref(self.roots) if user else None,
                              note=content, note_id=note.id)
        return note, change

    def list_notes(self, incident_id: str) -> Answer:
        if incident_id not in self.incidents:
            return rest_error(404, "Not Found", 2100)
        return Answer(200, {"notes": [self.note_view(n) for n in self.notes.get(incident_id, [])]})

    # -- what a human does in PagerDuty ----------------------------------------------------------
    def reopen(self, incident: Incident, agent: dict[str, Any] | None) -> list[Change]:
        """Reopen a resolved incident: triggered again, unacknowledged (a no-op when open)."""
        if incident.status != "resolved":
            return []
        incident.status = "triggered"
        incident.last_status_change_at = self.clock()
        incident.acknowledgements.clear()
        return [self.change_of("incident.reopened", incident, agent)]

    def reassign(self, incident: Incident, to: User, agent: dict[str, Any] | None, event_type: str) -> list[Change]:
        incident.assignees = [to]
        return [self.change_of(event_type, incident, agent)]

    def set_priority(self, incident: Incident, priority: str, agent: dict[str, Any] | None) -> list[Change]:
        if not re.fullmatch(r"P[1-5]", priority):
            raise ValueError("priority must be one of P1..P5 (the account's standard priorities)")
        incident.priority = priority
        return [self.change_of("incident.priority_updated", incident, agent)]


def _paginated(collection: str, items: list[dict[str, Any]], params: Mapping[str, list[str]]) -> Answer:
    """One page of `items` as REST API v2 classic pagination answers it: `limit` (1 to 100,
    default 25), `offset`, `more`, and `total` only when asked for (`total=true`)."""
    try:
        limit = min(100, max(1, int(params.get("limit", ["25"])[-1])))
        offset = max(0, int(params.get("offset", ["0"])[-1]))
    except ValueError:
        return rest_error(400, "Invalid Input Provided", 2001, ["limit and offset must be integers"])
    page = items[offset:offset + limit]
    total = len(items) if params.get("total", ["false"])[-1] == "true" else None
    return Answer(200, {collection: page, "limit": limit, "offset": offset, "total": total,
                        "more": offset + len(page) < len(items)})


def _trigger_problems(payload: Any, links: Any) -> list[str]:
    """What PagerDuty would refuse in a trigger's `payload` and `links`."""
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    problems = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        problems.append("'payload.summary' is missing or blank")
    elif len(summary) > MAX_SUMMARY_CHARS:
        problems.append(f"'payload.summary' is longer than {MAX_SUMMARY_CHARS} characters")
    source = payload.get("source")
    if not isinstance(source, str) or not source.strip():
        problems.append("'payload.source' is missing or blank")
    if payload.get("severity") not in EVENT_SEVERITIES:
        problems.append("'payload.severity' is invalid (must be one of critical, error, warning, info)")
    if links is not None and (not isinstance(links, list)
                              or not all(isinstance(link, dict) and isinstance(link.get("href"), str) for link in links)):
        problems.append("'links' must be a list of objects with an 'href'")
    return problems
