"""The one exception a method implementation raises to answer `{"ok": false, ...}`.

Slack reports almost every failure with HTTP 200 and a JSON body whose `error` is a short code
(`channel_not_found`, `invalid_blocks`, ...), sometimes with human-readable detail in
`response_metadata.messages` and, for Block Kit problems, a top-level `errors` list. `ApiError`
carries exactly those pieces so the dispatcher can render the body the way Slack does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class ApiError(Exception):
    """A Slack Web API error answer.

    Invariants: `error` is a Slack error code (snake_case, never empty); `messages` are the
    strings that go to `response_metadata.messages` (Slack prefixes them with `[ERROR]` or
    `[WARN]`); `extra` holds further top-level keys of the body (never `ok` or `error`).
    """

    def __init__(
        self,
        error: str,
        messages: Sequence[str] = (),
        *,
        extra: Mapping[str, Any] | None = None,
        http_status: int = 200,
    ) -> None:
        if not error:
            raise ValueError("a Slack error code must not be empty")
        super().__init__(error if not messages else f"{error}: {'; '.join(messages)}")
        self.error = error
        self.messages: tuple[str, ...] = tuple(messages)
        self.extra: dict[str, Any] = {k: v for k, v in (extra or {}).items() if k not in ("ok", "error")}
        self.http_status = http_status

    def body(self) -> dict[str, Any]:
        """The JSON body Slack would send for this error."""
        out: dict[str, Any] = {"ok": False, "error": self.error}
        out.update(self.extra)
        if self.messages:
            out["response_metadata"] = {"messages": list(self.messages)}
        return out
