"""The one way to Slack's Web API.

Every write goes through `SlackGateway`, which keeps payloads inside Block Kit's limits,
retries connection errors and 5xx briefly, and turns 429 into `SlackRetryLater` carrying
Slack's `Retry-After`, so the caller reschedules the work instead of blocking a worker or
dropping the message. Failures surface as exceptions that the flows record on the timeline.
It is also the Slack side's redaction chokepoint: every text, block, view and uploaded file
is passed through `bot.redaction` here, so a secret a caller forgot never reaches Slack.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, ServerErrorRetryHandler

from bot.redaction import redact, redact_data
from bot.slack.limits import fit_blocks, fit_text

log = logging.getLogger(__name__)
DEFAULT_RETRY_AFTER_SECONDS = 5
HTTP_TIMEOUT_SECONDS = 10


class SlackError(Exception):
    """A Slack call that failed; `error` is Slack's error code (e.g. channel_not_found)."""

    def __init__(self, method: str, error: str):
        self.method, self.error = method, error
        super().__init__(f"{method}: {error}")


class SlackRetryLater(SlackError):
    """Slack asked us to slow down (429: `retry_after` seconds) or is unavailable (5xx or a
    connection error: `retry_after` is None and the caller backs off)."""

    def __init__(self, method: str, error: str, retry_after: float | None):
        super().__init__(method, error)
        self.retry_after = retry_after


# Block Kit fields that are the bot's own identifiers, sent back by Slack on a click: never rewritten.
BLOCK_IDENTIFIERS = frozenset({"action_id", "block_id", "value", "callback_id", "private_metadata", "external_id"})


def outgoing_text(text: str) -> str:
    """Text as it may leave: secrets masked (whatever the caller did; redaction is idempotent),
    then cut to Slack's limit. Every method that sends text goes through it."""
    return fit_text(redact(text))


def outgoing_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Blocks (or a view's fields) as they may leave: every string redacted except the bot's
    identifiers, then fitted to Block Kit's limits."""
    return fit_blocks(redact_data(blocks, BLOCK_IDENTIFIERS))


def outgoing_file(name: str, content: bytes, title: str) -> dict[str, Any]:
    """An upload as it may leave: text content (UTF-8) redacted, binary content (an image) as
    it is; name and title redacted."""
    with contextlib.suppress(UnicodeDecodeError):
        content = redact(content.decode("utf-8")).encode("utf-8")
    return {"filename": redact(name), "content": content, "title": redact(title)[:250]}


@dataclass(frozen=True)
class PostedMessage:
    channel: str
    ts: str


def _retry_after(headers: dict[str, Any]) -> float:
    """Slack's Retry-After in seconds (header names arrive in any case)."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value[0] if isinstance(value, list) else value))
            except (TypeError, ValueError):
                break
    return DEFAULT_RETRY_AFTER_SECONDS


def make_web_client(token: str, base_url: str | None = None) -> WebClient:
    kwargs: dict[str, Any] = {"token": token, "timeout": HTTP_TIMEOUT_SECONDS}
    if base_url:
        kwargs["base_url"] = base_url
    client = WebClient(**kwargs)
    # One quick retry each; longer outages are the caller's backoff, so a worker never sits in
    # a Slack call for longer than ~3 × HTTP_TIMEOUT_SECONDS (well inside a claim lease).
    client.retry_handlers = [ConnectionErrorRetryHandler(max_retry_count=1), ServerErrorRetryHandler(max_retry_count=1)]
    return client


class SlackGateway:
    def __init__(self, client: WebClient, calls: Counter | None = None):
        """`calls`: the counter of Web API calls labelled by `method` and `outcome` (the runtime
        passes `Metrics.slack_calls`); the gateway takes the counter, not the bot's registry, so
        it stays below everything that reads incidents."""
        self.client = client
        self._calls = calls
        # chat.postMessage is not idempotent: the HTTP client must not resend one whose answer
        # was lost (a dropped connection, a 5xx after the fact). The caller's retry looks for
        # the message first (bot.incidents.slack_posts), so posts go through a copy without retries.
        self._poster = copy.copy(client)
        self._poster.retry_handlers = []

    def _call(self, method: str, call=None, **kwargs: Any) -> dict[str, Any]:
        """Run one Web API method (or `call`, a client helper standing for it) with the error
        mapping above."""
        try:
            response = call() if call is not None else self.client.api_call(method, json=kwargs)
        except SlackApiError as exc:
            if exc.response is None:
                self._count(method, "no_response")
                raise SlackRetryLater(method, "no_response", None) from None
            status = exc.response.status_code
            error = str(exc.response.get("error", "unknown_error"))
            self._count(method, error)
            if status == 429:
                raise SlackRetryLater(method, "ratelimited", _retry_after(exc.response.headers)) from None
            if status >= 500:
                raise SlackRetryLater(method, f"http_{status}", None) from None
            raise SlackError(method, error) from None
        except OSError as exc:
            self._count(method, "connection_error")
            raise SlackRetryLater(method, f"connection_error: {exc}", None) from None
        self._count(method, "ok")
        return response.data  # type: ignore[return-value]

    def _count(self, method: str, outcome: str) -> None:
        if self._calls is not None:
            self._calls.labels(method=method, outcome=outcome).inc()

    def post_message(self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None,
                     thread_ts: str | None = None, reply_broadcast: bool = False,
                     metadata: dict[str, Any] | None = None) -> PostedMessage:
        """`metadata`: Slack's message metadata (`{"event_type": ..., "event_payload": {...}}`)."""
        args: dict[str, Any] = {"channel": channel, "text": outgoing_text(text), "unfurl_links": False}
        if blocks is not None:
            args["blocks"] = outgoing_blocks(blocks)
        if thread_ts:
            args["thread_ts"] = thread_ts
            if reply_broadcast:
                args["reply_broadcast"] = True
        if metadata is not None:
            args["metadata"] = metadata
        data = self._call("chat.postMessage", lambda: self._poster.api_call("chat.postMessage", json=args))
        return PostedMessage(channel=data["channel"], ts=data["ts"])

    def messages_page(self, channel: str, thread_ts: str | None, oldest: str, limit: int,
                      cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a channel's history (`thread_ts` None) or of a thread's replies, newer
        than `oldest`, with each message's metadata; and the cursor of the next page, if any."""
        kwargs: dict[str, Any] = {"channel": channel, "oldest": oldest, "limit": limit, "include_all_metadata": True}
        if cursor:
            kwargs["cursor"] = cursor
        if thread_ts is None:
            data = self._call("conversations.history", lambda: self.client.conversations_history(**kwargs))
        else:
            data = self._call("conversations.replies",
                              lambda: self.client.conversations_replies(ts=thread_ts, **kwargs))
        return list(data.get("messages") or []), (data.get("response_metadata") or {}).get("next_cursor") or None

    def channel_id(self, name: str, max_pages: int = 10) -> str | None:
        """The id of a channel the bot can see, by `#name` or name (conversations.list, at most
        `max_pages` pages of 1,000); an id is returned as it is; None when not found."""
        wanted = name.lstrip("#")
        if wanted[:1] in ("C", "G", "D") and wanted.isupper() and wanted.isalnum():
            return wanted
        cursor = None
        for _ in range(max_pages):
            data = self._call("conversations.list", lambda c=cursor: self.client.conversations_list(
                types="public_channel,private_channel", exclude_archived=True, limit=1000, cursor=c))
            for channel in data.get("channels") or []:
                if channel.get("name") == wanted:
                    return str(channel["id"])
            cursor = (data.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return None

    def update_message(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        args: dict[str, Any] = {"channel": channel, "ts": ts, "text": outgoing_text(text)}
        if blocks is not None:
            args["blocks"] = outgoing_blocks(blocks)
        self._call("chat.update", **args)

    def upload_files(self, channel: str, thread_ts: str | None, files: list[tuple[str, bytes, str]]) -> None:
        """Share (filename, content, title) files in a thread as one message: one upload URL per
        file, then a single files.completeUploadExternal."""
        uploads = [outgoing_file(name, content, title) for name, content, title in files]
        self._call("files.upload_v2", lambda: self.client.files_upload_v2(
            channel=channel, thread_ts=thread_ts, file_uploads=uploads))

    def usergroup_members(self, usergroup: str) -> list[str]:
        """The Slack user ids in a user group (usergroups.users.list)."""
        # read methods take form or query arguments, not a JSON body: the client's helper sends them right
        return list(self._call("usergroups.users.list",
                               lambda: self.client.usergroups_users_list(usergroup=usergroup)).get("users") or [])

    def user_id_by_email(self, email: str) -> str | None:
        """The Slack user id with this email (users.lookupByEmail), None when nobody has it."""
        try:
            return str(self._call("users.lookupByEmail", lambda: self.client.users_lookupByEmail(email=email))
                       ["user"]["id"])
        except SlackError as exc:
            if exc.error == "users_not_found":
                return None
            raise

    def permalink(self, channel: str, ts: str) -> str | None:
        """A link to a message (chat.getPermalink); None when Slack will not give one."""
        try:
            return str(self._call("chat.getPermalink", lambda: self.client.chat_getPermalink(
                channel=channel, message_ts=ts)).get("permalink") or "") or None
        except SlackError:
            return None

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        self._call("views.open", trigger_id=trigger_id, view=redact_data(view, BLOCK_IDENTIFIERS))

    def post_ephemeral(self, channel: str, user: str, text: str,
                       blocks: list[dict[str, Any]] | None = None) -> None:
        args: dict[str, Any] = {"channel": channel, "user": user, "text": outgoing_text(text)}
        if blocks is not None:
            args["blocks"] = outgoing_blocks(blocks)
        self._call("chat.postEphemeral", **args)
