"""Injected faults of the sandbox API server: a write held in flight, as a slow or dying server
holds it.

`Hold(method, path, when, seconds)` matches the first request with its method and path (dry
runs never match: they change nothing) and keeps it in flight for up to `seconds`, or until `release()`:

- `after_write`: the write is stored first and the answer held, as when the server applied a
  PATCH and the connection died before the answer arrived (the client cannot tell);
- `before_write`: the request is held unprocessed and then dropped (the connection closes
  with no answer and nothing stored), as when the server never got to it.

`arrived` is set when the matching request reaches the server, so a test can act (kill the
client) while the write is in flight. Later requests pass untouched.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class Hold:
    method: str
    path: str
    when: Literal["after_write", "before_write"] = "after_write"
    seconds: float = 60.0
    arrived: threading.Event = field(default_factory=threading.Event)
    taken: bool = False
    _released: threading.Event = field(default_factory=threading.Event)

    def matches(self, method: str, path: str, query: dict[str, str]) -> bool:
        return not self.taken and method == self.method and path == self.path and "dryRun" not in query

    def wait(self) -> None:
        """Called by the server with the request in flight."""
        self.arrived.set()
        self._released.wait(self.seconds)

    def release(self) -> None:
        self._released.set()


@dataclass
class Faults:
    """The faults of one server; empty by default."""

    holds: list[Hold] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, hold: Hold) -> Hold:
        with self._lock:
            self.holds.append(hold)
        return hold

    def find(self, method: str, path: str, query: dict[str, str]) -> Hold | None:
        with self._lock:
            hold = next((h for h in self.holds if h.matches(method, path, query)), None)
            if hold is not None:
                hold.taken = True
            return hold

    def release_all(self) -> None:
        with self._lock:
            holds = list(self.holds)
        for hold in holds:
            hold.release()
