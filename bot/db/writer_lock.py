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
  the CLI). The kernel wakes a waiter the moment the holder lets go, and releases the lock
  by itself when the holding process dies, so a crashed child never blocks the others.

Urgent writers (a webhook storing its delivery: the sender waits for the answer) go first
in their process: they take the thread lock before any ordinary waiter, which steps aside for
at most `URGENT_HEADSTART_SECONDS` from the first time one overtook it, so a flood of
webhooks delays the workers but cannot starve them. Across processes, an urgent writer that
has its process's turn holds a shared `flock` on `<database>.lock-urgent` while it waits for
the file lock, and an ordinary writer of another process (an intake child) does not queue
for the file lock while that marker is held, for at most the same head start. The processes
otherwise take turns as the kernel wakes them: measured, strict priority across processes
starved the intake during a storm and cost more throughput than it saved.

Invariants: the file lock is only taken while holding the thread lock, and released before
it (after the database's COMMIT or ROLLBACK: see `bot.db.engine`); a transaction never
waits for another process while holding them (nothing in the bot does). Every wait is bounded
by `wait_seconds`: should a transaction leak or its process hang, the others fall back to
SQLite's own busy handling instead of hanging for good.
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
        fcntl.flock(fd, operation)  # the shared marker: nobody holds it exclusively for long
    except BaseException:
        os.close(fd)
        raise
    return fd


def _file_lock(path: str, deadline: float) -> int | None:
    """A descriptor holding an exclusive `flock` on `path`, or None once `deadline` passed.

    While another holds it, a helper thread waits for it in the kernel (woken the moment the
    holder lets go: polling measured about 10 % slower, with a worse p99) while the caller
    waits for the helper with a deadline, so a holder that hangs (a stopped process, a leaked
    transaction) delays the others by `wait_seconds`, not for good. A helper whose caller
    gave up lets go of the lock as soon as it gets it."""
    fd = _open(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        pass
    except BaseException:
        os.close(fd)
        raise
    waiter = _KernelWait(fd)
    return fd if waiter.wait(deadline) else None


class _KernelWait:
    """One blocking `flock` on a helper thread, abandoned safely at a deadline."""

    def __init__(self, fd: int):
        self._fd = fd
        self._guard = threading.Lock()
        self._done = threading.Event()
        self._held = self._abandoned = False
        self._error: BaseException | None = None
        threading.Thread(target=self._take, name="opsbot-writer-wait", daemon=True).start()

    def _take(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            with self._guard:
                if self._abandoned:
                    os.close(self._fd)  # nobody waits any more: let the others go
                else:
                    self._held = True
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            with self._guard:
                self._error = exc
                if self._abandoned:
                    os.close(self._fd)
        finally:
            self._done.set()

    def wait(self, deadline: float) -> bool:
        self._done.wait(max(0.0, deadline - time.monotonic()))
        with self._guard:
            if self._held:
                return True
            self._abandoned = True
            error = self._error
        if error is not None:
            os.close(self._fd)
            raise error
        return False


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
        """Wait for the lock; False when the wait ran out (nothing is held: the caller falls
        back to SQLite's own busy handling)."""
        deadline = time.monotonic() + self._wait
        if not self._take_thread_turn(urgent, deadline):
            return False
        if self._path is None:
            return True
        try:
            if urgent:
                marker = _flock(self._marker, fcntl.LOCK_SH)  # "an urgent writer waits for the file"
                try:
                    self._fd = _file_lock(self._path, deadline)
                finally:
                    os.close(marker)
            else:
                self._step_aside()
                self._fd = _file_lock(self._path, deadline)
        except BaseException:
            self._release_thread_turn()
            raise
        if self._fd is None:
            self._release_thread_turn()
            return False
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock
        self._release_thread_turn()

    def _take_thread_turn(self, urgent: bool, deadline: float) -> bool:
        """This process's turn. An ordinary writer lets urgent waiters go first, for at most
        URGENT_HEADSTART_SECONDS from the first time one overtook it."""
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
