"""Injected faults of the sandbox API server: a write held in flight, as a slow or dying server
holds it. A dry run (`?dryRun=All`, or an eviction's `deleteOptions.dryRun`) never matches a
fault: it changes nothing.

`Hold(method, path, when, seconds)` matches the first request with its method and path (dry
runs never match: they change nothing), after letting `skip` of them through, and keeps it in flight for up to `seconds`, or until `release()`:

- `after_write`: the write is stored first and the answer held, as when the server applied a
  PATCH and the connection died before the answer arrived (the client cannot tell);
- `before_write`: the request is held unprocessed and then dropped (the connection closes
  with no answer and nothing stored), as when the server never got to it.

`arrived` is set when the matching request reaches the server, so a test can act (kill the
client) while the write is in flight. Later requests pass untouched.

`Slow(method, pattern, seconds)` makes every non-dry-run request whose method matches and whose
path matches the regular expression `pattern` wait `seconds` before it is processed, as an
API server under load answers a long series of evictions; `count` says how many it slowed.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class Hold:
    method: str
    path: str
    when: Literal["after_write", "before_write"] = "after_write"
    seconds: float = 60.0
    skip: int = 0  # matching requests let through untouched before the one held
    arrived: threading.Event = field(default_factory=threading.Event)
    taken: bool = False
    _released: threading.Event = field(default_factory=threading.Event)

    def matches(self, method: str, path: str, dry_run: bool) -> bool:
        return not self.taken and method == self.method and path == self.path and not dry_run

    def wait(self) -> None:
        """Called by the server with the request in flight."""
        self.arrived.set()
        self._released.wait(self.seconds)

    def release(self) -> None:
        self._released.set()


@dataclass
class Slow:
    method: str
    pattern: str
    seconds: float
    count: int = 0

    def matches(self, method: str, path: str, dry_run: bool) -> bool:
        return method == self.method and re.fullmatch(self.pattern, path) is not None and not dry_run


@dataclass
class Faults:
    """The faults of one server; empty by default."""

    holds: list[Hold] = field(default_factory=list)
    slow: list[Slow] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_slow(self, slow: Slow) -> Slow:
        with self._lock:
            self.slow.append(slow)
        return slow

    def delay(self, method: str, path: str, dry_run: bool) -> float:
        """How long this request waits before it is processed (the sum of the matching `Slow`s)."""
        with self._lock:
            matching = [s for s in self.slow if s.matches(method, path, dry_run)]
            for s in matching:
                s.count += 1
        return sum(s.seconds for s in matching)

    def add(self, hold: Hold) -> Hold:
        with self._lock:
            self.holds.append(hold)
        return hold

    def find(self, method: str, path: str, dry_run: bool) -> Hold | None:
        with self._lock:
            hold = next((h for h in self.holds if h.matches(method, path, dry_run)), None)
            if hold is not None and hold.skip:
                hold.skip -= 1
                return None
            if hold is not None:
                hold.taken = True
            return hold

    def release_all(self) -> None:
        with self._lock:
            holds = list(self.holds)
        for hold in holds:
            hold.release()
