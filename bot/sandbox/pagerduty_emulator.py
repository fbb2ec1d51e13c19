"""`PagerDutyEmulator`: PagerDuty's Events API v2, REST API v2 and V3 webhooks on loopback.

    with PagerDutyEmulator(webhook_url="http://127.0.0.1:8080/webhooks/pagerduty",
                           webhook_secret="s3cret") as pd:
        link = PagerDutyLink(pd.routing_key, pd.api_token, pd.from_email,
                             events_url=pd.events_url, rest_url=pd.rest_url,
                             verify=pd.client_ssl_context())
        link.trigger("INC-1", "checkout 5xx", "critical", "prod/checkout", {}, [])
        pd.acknowledge(pd.incidents()[0]["id"], by="Alice")   # a human, in PagerDuty

It speaks the real HTTP APIs the `pagerduty` client uses, over HTTPS (the client refuses
`http://`), with a throw-away certificate; hand `client_ssl_context()` to the client:
- Events API v2 at `events_url`: `POST /v2/enqueue` (202 `{"status": "success", "message":
  "Event processed", "dedup_key"}`; 400 `{"status": "invalid event", "message", "errors"}`).
- REST API v2 at `rest_url` (`Authorization: Token token=<api_token>`, 401 otherwise):
  `GET /incidents` (`incident_key`, `statuses[]`, `service_ids[]`, pagination),
  `GET|PUT /incidents/{id}` (PUT acknowledges or resolves, as the `From` user),
  `GET|POST /incidents/{id}/notes`, `GET /users` (`query`, pagination), `GET /oncalls`
  (`schedule_ids[]`, `escalation_policy_ids[]`, `include[]=users`; set with `put_on_call`);
  writes need `From`.
- V3 webhooks: when `webhook_url` is set, every state change (an incident triggered,
  acknowledged, unacknowledged, resolved, annotated, reassigned, escalated, re-prioritised,
  whether through the Events API, the REST API or a simulated human) is POSTed there, signed
  `X-PagerDuty-Signature: v1=...` with each secret, from one background thread, in order,
  retried like PagerDuty (429, 5xx, network errors; not other 4xx). Failures are recorded in
  `deliveries`, never raised.

Thread safety: one lock guards the account, the call log and the injections. Each request
runs its whole decision (injection, auth, the operation, the record, queueing its webhooks)
under the lock, so `calls` order is the order changes took effect and webhooks leave in that
order. Test-side reads take the lock and return copies.
"""

from __future__ import annotations

import copy
import json
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from bot.clock import utc_now
from bot.sandbox.pagerduty_state import (
    DEFAULT_API_TOKEN,
    DEFAULT_ROUTING_KEY,
    Answer,
    Change,
    Incident,
    PagerDutyAccount,
    rest_error,
)
from bot.sandbox.pagerduty_webhook_sender import WebhookDelivery, WebhookSender
from bot.sandbox.slack_emulator.server import HttpRequest, HttpResponse
from bot.sandbox.tls_loopback import LoopbackHttpsServer

EVENTS_PREFIX = "/events"
REST_PREFIX = "/rest"
DEFAULT_USERS = (("Alice", "alice@example.com"), ("Bob", "bob@example.com"), ("Carol", "carol@example.com"),
                 ("opsbot", "opsbot@example.com"))
T = TypeVar("T")


@dataclass(frozen=True)
class PagerDutyCall:
    """One request as served. `api` is `events`, `rest` or `unknown`; `path` is relative to
    that API's base URL; `headers` are lower-case with the API token masked; `body` and
    `response` are decoded JSON (None when absent or undecodable)."""

    api: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int
    response: Any
    at: float
    injected: bool = False


@dataclass
class _Injection:
    prefix: str
    status: int
    retry_after: int | None
    remaining: int


class PagerDutyEmulator:
    """A sandbox PagerDuty account with one service (routing key `routing_key`), users Alice,
    Bob, Carol and opsbot (`<name>@example.com`; `from_email` is opsbot's), and an API token."""

    def __init__(self, webhook_url: str | None = None, webhook_secret: str | Sequence[str] | None = None, *,
                 routing_key: str = DEFAULT_ROUTING_KEY, api_token: str = DEFAULT_API_TOKEN,
                 service_name: str = "opsbot sandbox", host: str = "127.0.0.1", port: int = 0,
                 clock: Callable[[], datetime] = utc_now, webhook_max_attempts: int = 5,
                 webhook_retry_seconds: float = 0.05, webhook_timeout_seconds: float = 5.0) -> None:
        self._lock = threading.RLock()
        self._account = PagerDutyAccount(clock, api_token=api_token)
        self._service = self._account.add_service(service_name, routing_key)
        for name, email in DEFAULT_USERS:
            self._account.add_user(name, email)
        self._server = LoopbackHttpsServer(self._handle, host, port, name="pagerduty-emulator")
        self._calls: list[PagerDutyCall] = []
        self._injections: list[_Injection] = []
        self._webhooks = WebhookSender(webhook_max_attempts, webhook_retry_seconds, webhook_timeout_seconds)
        self.set_webhook(webhook_url, webhook_secret)

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> str:
        """Serve HTTPS on loopback and start the webhook sender; returns `base_url`."""
        root = self._server.start()
        self._webhooks.start()
        return root

    def stop(self) -> None:
        """Stop serving and sending (undelivered webhooks are dropped); state stays readable."""
        self._server.stop()
        self._webhooks.stop()

    def __enter__(self) -> PagerDutyEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- where to point the clients --------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self._server.root

    @property
    def events_url(self) -> str:
        """`base_url` of `pagerduty.EventsApiV2Client` (it appends `/v2/enqueue`)."""
        return self._server.root + EVENTS_PREFIX

    @property
    def rest_url(self) -> str:
        """`base_url` of `pagerduty.RestApiV2Client`."""
        return self._server.root + REST_PREFIX

    @property
    def ca_file(self) -> Path:
        return self._server.ca_file

    def client_ssl_context(self) -> ssl.SSLContext:
        """Pass as `verify=` to the clients (or `PagerDutyLink`): trusts this emulator only."""
        return self._server.client_ssl_context()

    @property
    def routing_key(self) -> str:
        return self._service.routing_key

    @property
    def api_token(self) -> str:
        return self._account.api_token

    @property
    def from_email(self) -> str:
        """The email of the `opsbot` user: the `From` a link should use."""
        with self._lock:
            return self._account.user_named("opsbot").email

    @property
    def service_id(self) -> str:
        return self._service.id

    def set_webhook(self, url: str | None, secret: str | Sequence[str] | None) -> None:
        """Subscribe (or, with None, unsubscribe) a receiver; several secrets sign every
        delivery with each, as during a rotation. Applies to changes from now on."""
        secrets = [secret] if isinstance(secret, str) else list(secret or [])
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("webhook_url must be an http(s) URL")
        with self._lock:
            self._webhook_url, self._webhook_secrets = url, secrets

    # -- observation -----------------------------------------------------------------------------
    @property
    def calls(self) -> list[PagerDutyCall]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, api: str, path_prefix: str = "") -> list[PagerDutyCall]:
        with self._lock:
            return [c for c in self._calls if c.api == api and c.path.startswith(path_prefix)]

    def incidents(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every incident as `GET /incidents/{id}` shows it, oldest first."""
        with self._lock:
            return [self._account.incident_rest_view(i) for i in self._account.incidents.values()
                    if status is None or i.status == status]

    def incident(self, incident_id: str) -> dict[str, Any]:
        with self._lock:
            return self._account.incident_rest_view(self._incident(incident_id))

    def incident_by_key(self, incident_key: str) -> dict[str, Any] | None:
        """The newest incident with that `incident_key` (dedup key), or None."""
        with self._lock:
            found = [i for i in self._account.incidents.values() if i.incident_key == incident_key]
            return self._account.incident_rest_view(found[-1]) if found else None

    def notes(self, incident_id: str) -> list[dict[str, Any]]:
        with self._lock:
            self._incident(incident_id)
            return [self._account.note_view(n) for n in self._account.notes.get(incident_id, [])]

    @property
    def deliveries(self) -> list[WebhookDelivery]:
        """Webhooks sent (or given up on), in order."""
        return self._webhooks.deliveries()

    def wait_for(self, predicate: Callable[[PagerDutyEmulator], T], timeout: float = 10.0,
                 interval_seconds: float = 0.02) -> T:
        """Poll `predicate(self)` until truthy and return it; TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self)
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s; calls so far:\n{self.summary()}")
            time.sleep(interval_seconds)

    def wait_for_webhooks(self, timeout: float = 10.0) -> list[WebhookDelivery]:
        """Block until every queued webhook has been delivered or given up on."""
        if not self._webhooks.idle(timeout):
            raise TimeoutError(f"webhooks still pending after {timeout}s")
        return self.deliveries

    def summary(self, last: int = 40) -> str:
        calls = self.calls
        lines = [f"  {c.api} {c.method} {c.path} -> {c.status}" for c in calls[-last:]]
        return "\n".join(lines) or "  (no calls)"

    # -- fault injection -------------------------------------------------------------------------
    def inject(self, path_prefix: str, status: int = 429, times: int = 1, retry_after: int | None = None) -> None:
        """Answer the next `times` requests whose path starts with `path_prefix` (relative to
        its API, e.g. `/v2/enqueue`, `/incidents`; or the full path; `*` for any) with
        `status` and no effect. Injections queue in order."""
        if times < 1 or not 400 <= status <= 599:
            raise ValueError("inject needs times >= 1 and a 4xx or 5xx status")
        with self._lock:
            self._injections.append(_Injection(path_prefix, status, retry_after, times))

    def _take_injection(self, api: str, path: str, full_path: str) -> HttpResponse | None:
        for inj in self._injections:
            if inj.prefix == "*" or path.startswith(inj.prefix) or full_path.startswith(inj.prefix):
                inj.remaining -= 1
                if inj.remaining == 0:
                    self._injections.remove(inj)
                headers = (("Retry-After", str(inj.retry_after)),) if inj.retry_after is not None else ()
                if api == "events":
                    message = ("Requests for this service are arriving too quickly. Please retry later."
                               if inj.status == 429 else "Internal server error")
                    body: dict[str, Any] = {"status": "throttle event" if inj.status == 429 else "error",
                                            "message": message}
                else:
                    body = rest_error(inj.status, "Rate Limit Exceeded" if inj.status == 429
                                      else "Internal Server Error", 2020 if inj.status == 429 else None).body or {}
                return HttpResponse.json(inj.status, body, headers)
        return None

    def put_on_call(self, schedule_id: str, *names: str, escalation_policy_id: str = "PEPOL01") -> None:
        """Who is on call now in a schedule (replacing whoever was): users by name or email,
        created when unknown."""
        with self._lock:
            self._account.on_call[(escalation_policy_id, schedule_id)] = [self._account.user_named(n) for n in names]

    # -- what a human does in PagerDuty (each sends its webhook) ----------------------------------
    def trigger_incident(self, title: str, *, incident_key: str | None = None, urgency: str = "high",
                         priority: str | None = None, created_at: datetime | None = None) -> str:
        """An incident opened by another integration or by hand; returns its id."""
        with self._lock:
            incident = self._account.open_incident(title, service=self._service, incident_key=incident_key,
                                                   urgency=urgency, priority=priority, created_at=created_at)
            self._emit(self._account.change_of("incident.triggered", incident, self._service.ref(self._account.roots)))
            return incident.id

    def acknowledge(self, incident_id: str, by: str = "Alice") -> None:
        self._act(incident_id, lambda inc: self._account.transition(inc, "acknowledged", self._agent(by)))

    def unacknowledge(self, incident_id: str) -> None:
        """The acknowledgement timed out: back to triggered (agent: PagerDuty itself)."""
        self._act(incident_id, lambda inc: self._account.transition(inc, "triggered", None))

    def resolve(self, incident_id: str, by: str = "Alice") -> None:
        self._act(incident_id, lambda inc: self._account.transition(inc, "resolved", self._agent(by)))

    def reopen(self, incident_id: str, by: str = "Alice") -> None:
        """A person reopens a resolved incident: triggered again (`incident.reopened`)."""
        self._act(incident_id, lambda inc: self._account.reopen(inc, self._agent(by)))

    def annotate(self, incident_id: str, text: str, by: str = "Alice") -> None:
        def note(inc: Incident) -> list[Change]:
            return [self._account.annotate(inc, text, self._account.user_named(by))[1]]
        self._act(incident_id, note)

    def reassign(self, incident_id: str, to: str = "Bob", by: str = "Alice") -> None:
        self._act(incident_id, lambda inc: self._account.reassign(
            inc, self._account.user_named(to), self._agent(by), "incident.reassigned"))

    def escalate(self, incident_id: str, to: str = "Bob") -> None:
        self._act(incident_id, lambda inc: self._account.reassign(
            inc, self._account.user_named(to), None, "incident.escalated"))

    def set_priority(self, incident_id: str, priority: str, by: str = "Alice") -> None:
        self._act(incident_id, lambda inc: self._account.set_priority(inc, priority, self._agent(by)))

    def _agent(self, name: str) -> dict[str, Any]:
        return self._account.user_named(name).ref(self._account.roots)

    def _act(self, incident_id: str, action: Callable[[Incident], list[Change]]) -> None:
        with self._lock:
            for change in action(self._incident(incident_id)):
                self._emit(change)

    def _incident(self, incident_id: str) -> Incident:
        incident = self._account.incidents.get(incident_id)
        if incident is None:
            raise KeyError(f"no PagerDuty incident {incident_id!r}")
        return incident

    def _emit(self, change: Change) -> None:
        """Queue the change's webhook (caller holds the lock, so queue order = change order)."""
        if self._webhook_url is not None:
            self._webhooks.enqueue(change, self._webhook_url, list(self._webhook_secrets))

    # -- request handling ------------------------------------------------------------------------
    def _handle(self, request: HttpRequest) -> HttpResponse:
        api, path = "unknown", request.path
        for prefix, name in ((EVENTS_PREFIX, "events"), (REST_PREFIX, "rest")):
            if request.path == prefix or request.path.startswith(prefix + "/"):
                api, path = name, request.path[len(prefix):] or "/"
        body: Any = None
        undecodable = False
        if request.body:
            try:
                body = json.loads(request.body)
            except (UnicodeDecodeError, ValueError):
                undecodable = True
        with self._lock:
            response = self._take_injection(api, path, request.path)
            injected = response is not None
            if response is None:
                answer, changes = self._dispatch(api, request, path, body, undecodable)
                response = HttpResponse.json(answer.status, answer.body or {})
                for change in changes:
                    self._emit(change)
            self._record(api, path, request, body, response, injected)
            return response

    def _dispatch(self, api: str, request: HttpRequest, path: str, body: Any,
                  undecodable: bool) -> tuple[Answer, list[Change]]:
        account, method = self._account, request.method
        if api == "events":
            if method == "POST" and path == "/v2/enqueue":
                if undecodable:
                    return Answer(400, {"status": "invalid event", "message": "Event object is invalid",
                                        "errors": ["Malformed JSON"]}), []
                return account.enqueue_event(body)
            return Answer(404, {"status": "error", "message": "Not Found"}), []
        if api != "rest":
            return rest_error(404, "Not Found", 2100), []
        if not account.authorized(request.headers.get("authorization")):
            return rest_error(401, "Authentication failed", 2006), []
        if undecodable:
            return rest_error(400, "Invalid Input Provided", 2001, ["Malformed JSON"]), []
        parts = [p for p in path.split("/") if p]
        sender = request.headers.get("from")
        if parts == ["incidents"] and method == "GET":
            return account.list_incidents(request.query), []
        if parts == ["users"] and method == "GET":
            return account.list_users(request.query), []
        if parts == ["oncalls"] and method == "GET":
            return account.list_oncalls(request.query), []
        if len(parts) == 2 and parts[0] == "incidents":
            if method == "GET":
                return account.get_incident(parts[1]), []
            if method == "PUT":
                return account.update_incident(parts[1], body, sender)
        if len(parts) == 3 and parts[0] == "incidents" and parts[2] == "notes":
            if method == "GET":
                return account.list_notes(parts[1]), []
            if method == "POST":
                return account.add_note(parts[1], body, sender)
        return rest_error(404, "Not Found", 2100), []

    def _record(self, api: str, path: str, request: HttpRequest, body: Any, response: HttpResponse,
                injected: bool) -> None:
        headers = dict(request.headers)
        if "authorization" in headers:
            headers["authorization"] = headers["authorization"][:12] + "…" + headers["authorization"][-4:]
        try:
            answer = json.loads(response.body) if response.body else None
        except ValueError:
            answer = None
        self._calls.append(PagerDutyCall(api, request.method, path, parse_qs(request.query, keep_blank_values=True),
                                         headers, copy.deepcopy(body), response.status, answer, time.time(),
                                         injected))
