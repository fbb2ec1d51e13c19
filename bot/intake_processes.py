"""Intake in child processes: alert intake on more than one core.

Python runs one thread at a time per process, so a storm's parsing and grouping competes with
the HTTP threads that answer webhooks. With intake children (`OPSBOT_INTAKE_PROCESSES`, on by
default where there is more than one core: see `Settings.intake_process_count`) the serving
process keeps HTTP, the card, RCA and PagerDuty loops, and each child runs one intake loop.
One, not several: a second thread in a child only contends for its interpreter, and on
SQLite it stretches the writer lock's hold (the thread holding the lock waits for the
interpreter while the other parses), which measured slower with a worse webhook p99.
Nothing else changes: deliveries are claimed from the database as before (see
`bot.alerts.deliveries`), so a child that dies loses nothing; it is replaced (at most every
RESTART_SECONDS per slot), its claims' leases lapse and the new child takes them.

The parent and its children share three signals and one queue:
- `wake`: a webhook stored a delivery (the children stop waiting for their next poll): one pipe
  per child, parent to child;
- `opened`: a child opened an incident (the parent's card loop wakes at once): one pipe per
  child, child to parent;
- `stop`: shut down (also implied when the parent process disappears): a shared flag;
- `metrics`: what the children counted, applied to the parent's registry, so `/metrics`
  shows all of the intake work whichever process did it.
Children use the system clock and the settings the parent was started with.

Invariant: no signal takes a lock another process could die holding. A `multiprocessing.Event`
does (its condition variable waits for every sleeper to acknowledge a `set()`), so a child
killed while waiting on one (the OOM killer, a `kill -9`) would hang the next webhook's wake
forever. Pipes written without blocking cannot: a full pipe already holds a wake-up, and a
dead reader is a broken pipe, ignored until the child is replaced.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import threading
import time
from collections import Counter
from typing import Any

from bot.metrics import Metrics

log = logging.getLogger(__name__)
RELAY_SECONDS = 0.5
RESTART_SECONDS = 5  # a child that dies is replaced, at most this often per slot
# The intake loops' metrics, relayed from the children (see `bot.workers`).
RELAYED = ("deliveries_processed", "alerts_received", "alerts_suppressed", "incidents_opened", "work_seconds")


class _Child:
    """A relayed metric with some label values bound: `.inc()` and `.observe()` are recorded."""

    def __init__(self, relay: MetricsRelay, name: str, labels: tuple[tuple[str, str], ...]):
        self._relay, self._key = relay, (name, labels)

    def inc(self, amount: float = 1) -> None:
        with self._relay.lock:
            self._relay.increments[self._key] += amount

    def observe(self, value: float) -> None:
        with self._relay.lock:
            self._relay.observations.append((self._key, value))


class _Relayed:
    def __init__(self, relay: MetricsRelay, name: str):
        self._relay, self._name = relay, name

    def labels(self, **labels: str) -> _Child:
        return _Child(self._relay, self._name, tuple(sorted(labels.items())))


class MetricsRelay:
    """Stands in for `Metrics` in a child: the intake loops' counters and histograms are
    recorded and shipped to the parent in batches (`flush`), never one message per alert."""

    def __init__(self, channel: Any):
        self.lock = threading.Lock()
        self.increments: Counter = Counter()
        self.observations: list = []
        self._channel = channel
        for name in RELAYED:
            setattr(self, name, _Relayed(self, name))

    def flush(self) -> None:
        with self.lock:
            batch = (dict(self.increments), self.observations)
            self.increments, self.observations = Counter(), []
        if batch[0] or batch[1]:
            self._channel.put(batch)


def apply_relayed(metrics: Metrics, batch: tuple[dict, list]) -> None:
    """Add a child's batch to the parent's metrics (names outside RELAYED are ignored)."""
    increments, observations = batch
    for (name, labels), amount in increments.items():
        if name in RELAYED:
            getattr(metrics, name).labels(**dict(labels)).inc(amount)
    for (name, labels), value in observations:
        if name in RELAYED:
            getattr(metrics, name).labels(**dict(labels)).observe(value)


def _signal(connection) -> None:
    """One byte down a non-blocking pipe; a full pipe (a wake-up is already pending) or a
    closed one (its reader died) is fine."""
    with contextlib.suppress(OSError, ValueError):  # BlockingIOError and BrokenPipeError are OSErrors
        connection.send_bytes(b"!")


def _drain(connection) -> bool:
    """Read every pending signal; False once the writer is gone."""
    try:
        while connection.poll(0):
            connection.recv_bytes()
    except (EOFError, OSError):
        return False
    return True


def _non_blocking(connection):
    os.set_blocking(connection.fileno(), False)
    return connection


def _child_main(settings, wake, opened, stop, channel, parent_pid: int) -> None:
    """One intake child: the intake loops of `bot.workers` over its own database pool."""
    from bot.clock import utc_now
    from bot.db.engine import make_engine, make_session_factory
    from bot.logs import configure_logging
    from bot.startup import freeze_startup_objects
    from bot.timeline.chain import audit_key_from
    from bot.workers import Workers, intake_rules

    configure_logging(settings.log_level, settings.log_format)
    engine = make_engine(settings.effective_database_url, pool_size=2)
    relay = MetricsRelay(channel)
    workers = Workers(make_session_factory(engine, audit_key_from(settings.audit_key)), None, utc_now, relay, threads=1,
                      poll_seconds=settings.worker_poll_seconds, lease_seconds=settings.claim_lease_seconds,
                      intake=intake_rules(settings), on_opened=lambda: _signal(opened))
    _non_blocking(opened)
    workers.start(stages=False)
    freeze_startup_objects()
    try:
        while not stop.value and os.getppid() == parent_pid:
            if wake.poll(RELAY_SECONDS):
                _drain(wake)
                workers.wake()
            relay.flush()
    finally:
        workers.stop()
        relay.flush()
        engine.dispose()


class IntakeProcesses:
    """Starts, wakes and stops the intake children of one serving process."""

    def __init__(self, count: int, settings, metrics: Metrics):
        self._count, self._settings, self._metrics = count, settings, metrics
        self._on_opened = lambda: None
        context = multiprocessing.get_context("spawn")  # no inherited threads, locks or sockets
        self._context = context
        self._stop = context.RawValue("b", 0)  # no lock: read by the children, written by this process
        self._channel = context.Queue()
        self._processes: list = []
        self._wakes: list = []  # per child: the write end of its wake pipe (non-blocking)
        self._opened: list = []  # per child: the read end of its opened pipe
        self._started_at: list[float] = []
        self._processes_lock = threading.Lock()  # start/stop and the revival in the relay thread
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def start(self, on_opened) -> None:
        """Start the children; `on_opened` runs (in a parent thread) when one opened an incident."""
        self._on_opened = on_opened
        self._stop.value = 0
        self._stopping.clear()
        with self._processes_lock:
            for index in range(self._count):
                self._processes.append(None)
                self._wakes.append(None)
                self._opened.append(None)
                self._started_at.append(time.monotonic())
                self._start_child(index)
        for name, loop in (("opsbot-intake-metrics", self._relay_metrics), ("opsbot-intake-opened", self._relay_opened)):
            thread = threading.Thread(target=loop, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("intake runs in %d child process(es)", self._count)

    def _start_child(self, index: int) -> None:
        """Start the child of slot `index` with pipes of its own (under `_processes_lock`)."""
        wake_reader, wake_writer = self._context.Pipe(duplex=False)
        opened_reader, opened_writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_child_main, name=f"opsbot-intake-process-{index}", daemon=True,
            args=(self._settings, wake_reader, opened_writer, self._stop, self._channel, os.getpid()),
        )
        process.start()
        wake_reader.close()  # the child holds its own copies now
        opened_writer.close()
        for old in (self._wakes[index], self._opened[index]):
            if old is not None:
                old.close()
        self._processes[index] = process
        self._wakes[index], self._opened[index] = _non_blocking(wake_writer), opened_reader

    def _revive(self) -> None:
        """Replace a child that died (a crash, the OOM killer): without it nothing would
        process the deliveries the webhooks keep storing. Its claims' leases lapse and the
        new child takes them."""
        with self._processes_lock:
            for index, process in enumerate(self._processes):
                if process.is_alive() or self._stopping.is_set():
                    continue
                if time.monotonic() - self._started_at[index] < RESTART_SECONDS:
                    continue
                log.error("intake process %s exited (code %s): starting another", process.pid, process.exitcode)
                self._start_child(index)
                self._started_at[index] = time.monotonic()

    def wake(self) -> None:
        for writer in list(self._wakes):
            if writer is not None:
                _signal(writer)

    def stop(self, timeout: float = 10) -> None:
        self._stop.value = 1
        self._stopping.set()
        with self._processes_lock:
            for process in filter(None, self._processes):
                process.join(timeout)
                if process.is_alive():
                    log.warning("intake process %s did not stop in %.0f s: terminating it", process.pid, timeout)
                    process.terminate()
                    process.join(timeout)
            for connection in (*self._wakes, *self._opened):
                if connection is not None:
                    connection.close()
            self._processes.clear()
            self._wakes.clear()
            self._opened.clear()
            self._started_at.clear()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        self._drain()

    def alive(self) -> int:
        return sum(process.is_alive() for process in self._processes)

    def _relay_metrics(self) -> None:
        """Apply the children's metrics and, on every pass, replace a child that died (a storm
        keeps the queue busy, so this does not wait for a quiet moment)."""
        while not self._stopping.is_set():
            try:
                apply_relayed(self._metrics, self._channel.get(timeout=RELAY_SECONDS))
            except queue.Empty:
                pass
            except Exception:  # noqa: BLE001 - this thread must outlive a bad batch
                log.exception("could not apply an intake child's metrics")
            try:
                self._revive()
            except Exception:  # noqa: BLE001 - retried on the next pass
                log.exception("could not start an intake process")

    def _drain(self) -> None:
        while True:
            try:
                apply_relayed(self._metrics, self._channel.get_nowait())
            except (queue.Empty, OSError, ValueError):
                return

    def _relay_opened(self) -> None:
        while not self._stopping.is_set():
            readers = [reader for reader in list(self._opened) if reader is not None and not reader.closed]
            try:
                ready = multiprocessing.connection.wait(readers, RELAY_SECONDS) if readers else []
            except OSError:  # a pipe closed while waiting (a child replaced, or stopping)
                ready = []
            if not readers:
                time.sleep(RELAY_SECONDS)
            alive = [_drain(reader) for reader in ready]
            if any(alive):
                self._on_opened()
            elif ready:  # only dead writers: the relay thread replaces their children
                time.sleep(RELAY_SECONDS)
