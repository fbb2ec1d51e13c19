"""SQLite's one writer, queued in the operating system instead of in SQLite's busy handler,
with a fast lane for the writes a caller is waiting on.

SQLite lets one connection write at a time. A connection that finds the database locked
sleeps in SQLite's busy handler in growing steps (1 ms up to 100 ms) and polls again, so under
load a waiting writer wakes long after the lock was freed and can starve behind a busy one:
that is what turned webhook latencies into hundreds of milliseconds once the intake ran in
another process. Here every write transaction first takes:
- a thread lock, shared by the threads of one engine (one writer per process at a time);
- then `flock` on a lock file beside the database (`<database>.lock`), shared by every
  process that opens the database through `make_engine` (the server, its intake children,
  the CLI). The kernel wakes a waiter as soon as the holder lets go, and releases the lock
  by itself when the holding process dies, so a crashed child never blocks the others.

Urgent writers (a webhook storing its delivery: the sender waits for the answer) go first
in their process: they take the thread lock before any ordinary waiter, which steps aside for
at most `URGENT_HEADSTART_SECONDS` from the first time one overtook it, so a flood of
webhooks delays the workers but cannot starve them. Across processes, an urgent writer that
has its process's turn holds a shared `flock` on `<database>.lock-urgent` while it waits for
the file lock, and an ordinary writer of another process (an intake child) does not queue
for the file lock while that marker is held, for at most the same head start. The processes
otherwise take turns as the kernel wakes them: measured, strict priority across processes
starved the intake during a storm and cost more throughput than it saved in latency.

Invariants: the file lock is only taken while holding the thread lock, and released before
it; a transaction never waits for another process while holding them (nothing in the bot
does), so the blocking `flock` cannot deadlock (the marker is a shared lock, held only while
waiting, that nobody ever blocks on). The thread lock's wait is bounded: should a
transaction ever leak in this process, the others fall back to SQLite's own busy handling
after `wait_seconds` instead of hanging for good.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

URGENT_HEADSTART_SECONDS = 0.1  # the longest an ordinary writer steps aside for urgent ones
STEP_ASIDE_POLL_SECONDS = 0.001


def _open(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _flock(path: str, operation: int) -> int:
    """A descriptor of `path` holding `operation`; closing it releases the lock."""
    fd = _open(path)
    try:
        fcntl.flock(fd, operation)  # blocking ones wait without the GIL
    except BaseException:
        os.close(fd)
        raise
    return fd


def held_elsewhere(path: str) -> bool:
    """True while another open file description holds a lock on `path` (for the urgent marker:
    an urgent writer is waiting)."""
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the exclusive lock, if taken


class WriterLock:
    """Held for the whole of one write transaction (see `bot.db.engine.make_engine`)."""

    def __init__(self, database_path: str | None, wait_seconds: float):
        """`database_path` None (an in-memory database): threads only, nothing to share."""
        self._state = threading.Condition()
        self._held = False
        self._urgent_waiting = 0
        self._path = f"{database_path}.lock" if database_path else None
        self._marker = f"{database_path}.lock-urgent" if database_path else None
        self._wait = wait_seconds
        self._fd: int | None = None

    @property
    def path(self) -> str | None:
        return self._path

    def acquire(self, urgent: bool = False) -> bool:
        """Wait for the lock; False when the wait in this process ran out (nothing is held)."""
        if not self._take_thread_turn(urgent):
            return False
        if self._path is None:
            return True
        try:
            if urgent:
                marker = _flock(self._marker, fcntl.LOCK_SH)  # "an urgent writer waits for the file"
                try:
                    self._fd = _flock(self._path, fcntl.LOCK_EX)
                finally:
                    os.close(marker)
            else:
                self._step_aside()
                self._fd = _flock(self._path, fcntl.LOCK_EX)
        except BaseException:
            self._release_thread_turn()
            raise
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock
        self._release_thread_turn()

    def _take_thread_turn(self, urgent: bool) -> bool:
        """This process's turn. An ordinary writer lets urgent waiters go first, for at most
        URGENT_HEADSTART_SECONDS from the first time one overtook it."""
        deadline = time.monotonic() + self._wait
        overtaken_at: float | None = None
        with self._state:
            if urgent:
                self._urgent_waiting += 1
            try:
                while True:
                    now = time.monotonic()
                    headstart_over = overtaken_at is not None and now >= overtaken_at + URGENT_HEADSTART_SECONDS
                    if not self._held:
                        if urgent or not self._urgent_waiting or headstart_over:
                            self._held = True
                            return True
                        if overtaken_at is None:
                            overtaken_at = now
                            continue
                    if now >= deadline:
                        return False
                    wake_by = deadline
                    if overtaken_at is not None and not headstart_over:
                        wake_by = min(deadline, overtaken_at + URGENT_HEADSTART_SECONDS)
                    self._state.wait(wake_by - now)
            finally:
                if urgent:
                    self._urgent_waiting -= 1

    def _release_thread_turn(self) -> None:
        with self._state:
            self._held = False
            self._state.notify_all()

    def _step_aside(self) -> None:
        """Let another process's urgent writer go first, for a bounded time. (This process's
        own urgent writers queue on the thread lock, which we hold, so they never hold the
        marker now.)"""
        headstart_ends = time.monotonic() + URGENT_HEADSTART_SECONDS
        while held_elsewhere(self._marker) and time.monotonic() < headstart_ends:
            time.sleep(STEP_ASIDE_POLL_SECONDS)
