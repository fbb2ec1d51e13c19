"""A late answer: the call takes effect at once, its answer is held back.

This is the fault that makes a client's write ambiguous: Slack has applied the
`chat.postMessage`, but the bot does not know its `ts` yet. Kill the bot (or let its HTTP
timeout fire) during the hold, and a naive retry posts the message twice.

    held = emu.delay_answer("chat.postMessage", seconds=30, match=lambda args: "thread_ts" not in args)
    call = held.wait_applied(timeout=10)     # the post is in the channel; the answer is held
    ... SIGKILL the bot ...
    held.release()                           # or let `seconds` run out; stop() releases too

With `drop=True` the connection is closed instead of answered once the hold ends (seconds=0:
at once), as when a proxy or the network loses the answer: the client sees the connection
end with no response.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.sandbox.slack_emulator.emulator import SlackCall

ArgsMatch = Callable[[Mapping[str, Any]], bool]


@dataclass
class HeldAnswer:
    """The next `times` successful calls to `method` (`"*"`: any) whose arguments satisfy
    `match` are applied, recorded, then answered only after `seconds` or `release()` (or, with
    `drop`, never: the connection is closed)."""

    method: str
    seconds: float
    match: ArgsMatch | None = None
    times: int = 1
    drop: bool = False
    calls: list[SlackCall] = field(default_factory=list)
    _applied: threading.Event = field(default_factory=threading.Event)
    _released: threading.Event = field(default_factory=threading.Event)

    def matches(self, method: str, args: Mapping[str, Any]) -> bool:
        return self.times > len(self.calls) and self.method in (method, "*") \
            and (self.match is None or bool(self.match(args)))

    def took(self, call: SlackCall) -> None:
        """Called under the emulator's lock once a matching call has taken effect."""
        self.calls.append(call)
        self._applied.set()

    def hold(self) -> None:
        """Called on the request's own thread, outside the emulator's lock."""
        self._released.wait(self.seconds)

    def wait_applied(self, timeout: float = 10.0) -> SlackCall:
        """The first held call, once it has taken effect; TimeoutError if none did in time."""
        if not self._applied.wait(timeout):
            raise TimeoutError(f"no {self.method} call was held within {timeout}s")
        return self.calls[0]

    def release(self) -> None:
        """Answer every held call now (a client still waiting gets its answer)."""
        self._released.set()

    @property
    def done(self) -> bool:
        return len(self.calls) >= self.times
