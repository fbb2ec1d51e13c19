"""`PagerDutyLink`: opsbot's outbound side of PagerDuty, through the `pagerduty` client only.

- Events API v2 (`EventsApiV2Client`, routing key): `trigger` opens or re-triggers the PD
  incident of an opsbot incident under the dedup key `<prefix>-<REF>` (e.g. `opsbot-INC-12`;
  the prefix is per install, `dedup_prefix`, so two installs sharing a PagerDuty account never
  share a key); PagerDuty de-duplicates on that key, so a retried trigger never opens a second
  PD incident. `acknowledge` and `resolve` act on the same key, and only on incidents opened
  under it: the Events API cannot touch an incident another integration opened.
- REST API v2 (`RestApiV2Client`, API key, `From` user): `find_incident_id` maps a dedup key
  to the PD incident id, `add_note` posts the RCA as a note, `acknowledge_incident`
  acknowledges any PD incident by id (those another integration opened), and `acting_user`
  names the PagerDuty user the writes act as (the `From` email), whose id is how opsbot
  recognises its own REST writes when their webhooks come back; `on_call_emails` reads who is
  on call now (approver groups can follow PagerDuty's on-call). All need the API key; the
  writes and `acting_user` also need the `From` email of a PagerDuty user.

Errors: `PagerDutyUnavailable` is transient (network, timeout, 429, 5xx, a garbled answer):
the caller retries later. `PagerDutyRejected` is permanent (bad routing key or API key, 4xx
other than 429, REST not configured), with PagerDuty's reason; retrying will not help. Both
derive from `PagerDutyError`. The client's own retries are bounded (`http_retries` for 429
and 5xx, one network retry) so that a worker never blocks for minutes; the client's default
retries 429 forever.

Secrets: summary, source, custom details, links and note text pass through
`bot.redaction` before leaving the process, and custom-detail values stored under a
secret-looking key (`password`, `token`, `api_key`, ...) are masked whatever they look like.
Keys are never put in exception messages.

Thread safety: one lock per client serialises calls (the `pagerduty` clients keep per-call
counters that are not thread-safe); PagerDuty traffic is a few calls per incident.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import pagerduty

from bot.alerts.pagerduty import DEFAULT_DEDUP_PREFIX, validate_dedup_prefix
from bot.redaction import MASK, redact, redact_data

MAX_SUMMARY_CHARS = 1024  # Events API v2: payload.summary
MAX_SOURCE_CHARS = 255
MAX_DEDUP_KEY_CHARS = 255  # Events API v2: dedup_key
MAX_NOTE_CHARS = 25_000  # a conservative cap for incident notes
OPEN_STATUSES = ("triggered", "acknowledged")

# opsbot severities → Events API v2 `payload.severity` (critical | error | warning | info).
EVENTS_SEVERITY: Mapping[str, str] = {
    "critical": "critical",
    "high": "error",
    "warning": "warning",
    "info": "info",
    "unknown": "warning",
}
_RETRIED_STATUSES = (429, 500, 502, 503, 504)
# A value stored under such a key is a secret whatever it looks like (`redact` only sees the value).
_SECRET_KEY = re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential)")
_PD_ID = re.compile(r"[A-Za-z0-9]{1,64}")
T = TypeVar("T")


class PagerDutyError(Exception):
    """A PagerDuty call failed. `status` is the HTTP status when there was an answer;
    `retry_after_seconds` is PagerDuty's `Retry-After` when it sent one."""

    def __init__(self, message: str, status: int | None = None, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_seconds = retry_after_seconds


class PagerDutyUnavailable(PagerDutyError):  # noqa: N818 (the name says what the caller does: wait)
    """Transient: network error, timeout, 429 or 5xx. Retry later."""


class PagerDutyRejected(PagerDutyError):  # noqa: N818
    """Permanent: PagerDuty refused the request (4xx other than 429) or the link is not
    configured for it. The message carries PagerDuty's reason."""


@dataclass(frozen=True)
class PagerDutyUser:
    """A PagerDuty user as webhooks name an agent: `id` (stable) and `name` (display)."""

    id: str
    name: str


class PagerDutyLink:
    """Opens, acknowledges, resolves and annotates PagerDuty incidents for opsbot incidents.

    `events_url` / `rest_url` default to PagerDuty's US endpoints; the client accepts only
    `https://` URLs. `verify` is handed to the HTTP client (True: the system trust store; an
    `ssl.SSLContext` for a private CA such as the sandbox emulator's). `dedup_prefix` starts
    every dedup key (`bot.alerts.pagerduty.validate_dedup_prefix` says what is allowed).
    """

    def __init__(
        self,
        routing_key: str | None,
        api_key: str | None,
        from_email: str | None,
        events_url: str | None = None,
        rest_url: str | None = None,
        *,
        verify: ssl.SSLContext | bool = True,
        timeout_seconds: float = 10.0,
        http_retries: int = 1,
        retry_sleep_seconds: float = 1.0,
        dedup_prefix: str = DEFAULT_DEDUP_PREFIX,
    ) -> None:
        self._dedup_prefix = validate_dedup_prefix(dedup_prefix)
        if not routing_key and not api_key:
            raise ValueError("a PagerDuty routing key or REST API key is required")
        if http_retries < 0 or retry_sleep_seconds < 0 or timeout_seconds <= 0:
            raise ValueError("http_retries and retry_sleep_seconds must be >= 0, timeout_seconds > 0")
        self._from_email = from_email or None
        try:
            self._events = (pagerduty.EventsApiV2Client(routing_key, base_url=events_url, verify=verify)
                            if routing_key else None)
            self._rest = (pagerduty.RestApiV2Client(api_key, default_from=self._from_email, base_url=rest_url,
                                                    verify=verify) if api_key else None)
        except pagerduty.UrlError as exc:
            raise ValueError(f"PagerDuty URL refused: {exc}") from None
        self._events_lock = threading.Lock()
        self._rest_lock = threading.Lock()
        self._acting_user: PagerDutyUser | None = None  # looked up once, on first use
        for client in (self._events, self._rest):
            if client is not None:
                _configure(client, timeout_seconds, http_retries, retry_sleep_seconds)

    # -- life cycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the HTTP connection pools. Idempotent."""
        for client in (self._events, self._rest):
            if client is not None:
                client.close()

    def __enter__(self) -> PagerDutyLink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def rest_enabled(self) -> bool:
        """Whether REST calls (`find_incident_id`) are possible: an API key is configured."""
        return self._rest is not None

    @property
    def notes_enabled(self) -> bool:
        """Whether `add_note` is possible: an API key and a `From` email are configured."""
        return self._rest is not None and self._from_email is not None

    # -- Events API v2 ---------------------------------------------------------------------------
    def dedup_key(self, incident_reference: str) -> str:
        """`opsbot-INC-12` for `INC-12` (with the default prefix): the Events API dedup key of an
        opsbot incident. The incident flow links PagerDuty's events back to the incident whose
        recorded key equals the event's `incident_key`."""
        reference = (incident_reference or "").strip()
        if not reference:
            raise ValueError("an incident reference is required")
        key = f"{self._dedup_prefix}-{reference}"
        if len(key) > MAX_DEDUP_KEY_CHARS:
            raise ValueError(f"dedup key longer than {MAX_DEDUP_KEY_CHARS} characters")
        return key

    def trigger(self, incident_reference: str, summary: str, severity: str, source: str,
                custom_details: Mapping[str, Any], links: Sequence[Mapping[str, Any]],
                dedup_key: str | None = None) -> str:
        """Trigger (or re-trigger) the PD incident of `incident_reference`; returns its dedup
        key. Idempotent: PagerDuty folds a repeated trigger into the open incident.

        `dedup_key` is the key recorded for the incident when there is one (so a changed
        prefix never splits an incident in two); by default `dedup_key(incident_reference)`.
        The summary is redacted then cut to 1,024 characters; `severity` is an opsbot severity
        (unknown values map to `warning`); links are `{"href", "text"}` dicts.
        """
        key = _checked_key(dedup_key) if dedup_key is not None else self.dedup_key(incident_reference)
        text = redact(summary or "").strip() or f"opsbot incident {incident_reference}"
        origin = redact(source or "").strip() or "opsbot"
        details = json.loads(json.dumps(_mask_secret_fields(redact_data(dict(custom_details))), default=str))
        safe_links = [
            {"href": redact(str(link["href"])), "text": redact(str(link.get("text") or link["href"]))}
            for link in links if link.get("href")
        ]
        events = self._require_events("trigger")
        return self._call("events", "trigger", lambda: events.trigger(
            _cut(text, MAX_SUMMARY_CHARS), _cut(origin, MAX_SOURCE_CHARS), dedup_key=key,
            severity=EVENTS_SEVERITY.get((severity or "").lower(), "warning"),
            custom_details=details, links=safe_links or None,
        ))

    def acknowledge(self, dedup_key: str) -> None:
        """Acknowledge the PD incident opened under `dedup_key` (a no-op in PagerDuty when
        it is already acknowledged or resolved)."""
        events = self._require_events("acknowledge")
        self._call("events", "acknowledge", lambda: events.acknowledge(_checked_key(dedup_key)))

    def resolve(self, dedup_key: str) -> None:
        """Resolve the PD incident opened under `dedup_key` (a no-op when already resolved)."""
        events = self._require_events("resolve")
        self._call("events", "resolve", lambda: events.resolve(_checked_key(dedup_key)))

    # -- REST API v2 -----------------------------------------------------------------------------
    def find_incident_id(self, dedup_key: str) -> str | None:
        """The id of the PD incident with `incident_key == dedup_key`, or None.

        Searches all dates; when several incidents carry the key (one re-opened after an
        earlier one resolved) the open one wins, then the most recently created.
        """
        key = _checked_key(dedup_key)
        rest = self._require_rest("find an incident")
        incidents = self._call("rest", "find_incident_id", lambda: rest.list_all(
            "/incidents", params={"incident_key": key, "date_range": "all"}))
        # PagerDuty filters on the key itself; an incident grouped from several alerts may show
        # no incident_key of its own, so only a different key disqualifies a result.
        matching = [i for i in incidents if isinstance(i, dict) and i.get("id")
                    and i.get("incident_key") in (key, None)]
        if not matching:
            return None
        matching.sort(key=lambda i: (i.get("status") in OPEN_STATUSES, str(i.get("created_at") or "")))
        return str(matching[-1]["id"])

    def add_note(self, pd_incident_id: str, text: str) -> None:
        """Add a note (e.g. the RCA) to a PD incident, as the `From` user. The text is
        redacted and cut to `MAX_NOTE_CHARS`."""
        rest = self._require_writes("add a note", pd_incident_id)
        content = _cut(redact(text or "").strip(), MAX_NOTE_CHARS)
        if not content:
            raise ValueError("a note needs some text")
        self._call("rest", "add_note", lambda: rest.rpost(f"/incidents/{pd_incident_id}/notes",
                                                          json={"content": content}))

    def acknowledge_incident(self, pd_incident_id: str) -> None:
        """Acknowledge a PD incident by id (`PUT /incidents/{id}`), as the `From` user: the way
        to acknowledge an incident another integration opened. Acknowledging an acknowledged
        incident changes nothing; a resolved one is refused by PagerDuty (`PagerDutyRejected`)."""
        self._put_status(pd_incident_id, "acknowledged")

    def resolve_incident(self, pd_incident_id: str) -> None:
        """Resolve a PD incident by id, as the `From` user (someone resolved it in Slack).
        PagerDuty cannot reopen a resolved incident through its API: there is no way back."""
        self._put_status(pd_incident_id, "resolved")

    def _put_status(self, pd_incident_id: str, status: str) -> None:
        verb = "acknowledge" if status == "acknowledged" else "resolve"
        rest = self._require_writes(f"{verb} an incident", pd_incident_id)
        self._call("rest", f"{verb}_incident", lambda: rest.rput(
            f"/incidents/{pd_incident_id}", json={"type": "incident_reference", "status": status}))

    def on_call_emails(self, schedule_ids: Sequence[str] = (), escalation_policy_ids: Sequence[str] = ()) -> set[str]:
        """The emails (lower-cased) of the users PagerDuty has on call now in any of these
        schedules or any level of these escalation policies (`GET /oncalls` with the users
        included; one read per kind, since PagerDuty intersects filters given together). At
        least one id is required: an unfiltered read would return everyone on call anywhere."""
        ids = [*schedule_ids, *escalation_policy_ids]
        if not ids:
            raise ValueError("name at least one schedule or escalation policy")
        if not all(_PD_ID.fullmatch(i) for i in ids):
            raise ValueError("not a PagerDuty schedule or escalation policy id")
        rest = self._require_rest("read who is on call")
        emails: set[str] = set()
        for key, wanted in (("schedule_ids[]", schedule_ids), ("escalation_policy_ids[]", escalation_policy_ids)):
            if not wanted:
                continue
            params = {"include[]": ["users"], key: list(wanted)}
            entries = self._call("rest", "on_call", lambda p=params: rest.list_all("oncalls", params=p))
            users = [entry.get("user") for entry in entries if isinstance(entry, dict)]
            emails |= {str(u["email"]).strip().lower() for u in users if isinstance(u, dict) and u.get("email")}
        return emails

    def acting_user(self) -> PagerDutyUser:
        """The PagerDuty user REST writes act as: the user whose email is the `From` email.
        Looked up once (`GET /users?query=`), then remembered; `PagerDutyRejected` when
        PagerDuty has no such user (every write would be refused as well)."""
        if self._acting_user is None:
            rest = self._require_writes("look up the From user")
            found = self._call("rest", "acting_user", lambda: rest.find("users", self._from_email, attribute="email"))
            if not isinstance(found, dict) or not found.get("id"):
                raise PagerDutyRejected("PagerDuty has no user with the configured From email")
            self._acting_user = PagerDutyUser(str(found["id"]), str(found.get("name") or found.get("summary") or ""))
        return self._acting_user

    # -- plumbing --------------------------------------------------------------------------------
    def _require_writes(self, what: str, pd_incident_id: str | None = None) -> pagerduty.RestApiV2Client:
        """The REST client for a call acting as the `From` user (and a checked incident id)."""
        if pd_incident_id is not None and not _PD_ID.fullmatch(pd_incident_id):
            raise ValueError(f"not a PagerDuty incident id: {pd_incident_id!r}")
        rest = self._require_rest(what)
        if self._from_email is None:
            raise PagerDutyRejected(f"cannot {what}: no From email configured (PagerDuty requires a user)")
        return rest

    def _require_events(self, what: str) -> pagerduty.EventsApiV2Client:
        if self._events is None:
            raise PagerDutyRejected(f"cannot {what}: no PagerDuty routing key configured")
        return self._events

    @property
    def events_enabled(self) -> bool:
        """Whether incidents can be mirrored (Events API v2): a routing key is configured."""
        return self._events is not None

    def _require_rest(self, what: str) -> pagerduty.RestApiV2Client:
        if self._rest is None:
            raise PagerDutyRejected(f"cannot {what}: no PagerDuty REST API key configured")
        return self._rest

    def _call(self, api: str, what: str, call: Callable[[], T]) -> T:
        """Run one client call under that API's lock, translating the client's errors."""
        lock = self._events_lock if api == "events" else self._rest_lock
        try:
            with lock:
                return call()
        except pagerduty.Error as exc:  # HttpError included: both may carry the response
            if exc.response is None:
                cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "network error"
                raise PagerDutyUnavailable(f"PagerDuty {what}: unreachable ({cause})") from None
            raise _classify(what, exc.response, _reason(exc)) from None
        except pagerduty.UrlError as exc:
            raise PagerDutyRejected(f"PagerDuty {what}: {exc}") from None


def _configure(client: pagerduty.ApiClient, timeout_seconds: float, http_retries: int,
               retry_sleep_seconds: float) -> None:
    """Bound the client's retries through its documented attributes.

    `retry[status] = n` retries that status n times; `max_http_attempts` caps the total
    (`n - 1` means "return after n retries", `-1` none at all). Sleeps start at
    `retry_sleep_seconds` and double. One network retry, then the error surfaces.
    """
    client.timeout = timeout_seconds
    client.retry = dict.fromkeys(_RETRIED_STATUSES, max(1, http_retries))
    client.max_http_attempts = http_retries - 1
    client.max_network_attempts = 1
    client.sleep_timer_base = 2
    client.sleep_timer = retry_sleep_seconds / 2


def _classify(what: str, response: Any, reason: str) -> PagerDutyError:
    status = int(response.status_code)
    message = f"PagerDuty {what}: HTTP {status}" + (f": {reason}" if reason else "")
    if status == 429 or status >= 500 or status < 400:  # < 400: a garbled success, also transient
        return PagerDutyUnavailable(message, status, _retry_after(response))
    return PagerDutyRejected(message, status)


def _retry_after(response: Any) -> float | None:
    try:
        value = float(response.headers.get("retry-after", ""))
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


def _reason(exc: pagerduty.Error) -> str:
    """PagerDuty's own words from an error body: Events API `message` + `errors`, REST
    `error.message` + `error.errors`. Never the request (it holds the routing key)."""
    response = exc.response
    if response is None:
        return ""
    try:
        body = response.json()
    except ValueError:
        return _cut(response.text.strip(), 300)
    if not isinstance(body, dict):
        return ""
    inner = body.get("error") if isinstance(body.get("error"), dict) else body
    parts = [str(inner.get("message") or "")]
    errors = inner.get("errors")
    if isinstance(errors, list):
        parts.extend(str(e) for e in errors)
    return _cut("; ".join(p for p in parts if p), 300)


def _mask_secret_fields(value: Any) -> Any:
    """`value` with every entry under a secret-looking key (`password`, `api_key`, ...) masked."""
    if isinstance(value, dict):
        return {key: MASK if isinstance(key, str) and _SECRET_KEY.search(key) and item not in (None, "")
                else _mask_secret_fields(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask_secret_fields(item) for item in value]
    return value


def _checked_key(dedup_key: str) -> str:
    if not dedup_key or len(dedup_key) > MAX_DEDUP_KEY_CHARS:
        raise ValueError(f"a dedup key of 1 to {MAX_DEDUP_KEY_CHARS} characters is required")
    return dedup_key


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
