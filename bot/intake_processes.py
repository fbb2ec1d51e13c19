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
- `wake`: a webhook stored a delivery (the children stop waiting for their next poll);
- `opened`: a child opened an incident (the parent's card loop wakes at once);
- `stop`: shut down (also implied when the parent process disappears);
- `metrics`: what the children counted, applied to the parent's registry, so `/metrics`
  shows all of the intake work whichever process did it.
Children use the system clock and the settings the parent was started with.
"""

from __future__ import annotations

import logging
import multiprocessing
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
                      intake=intake_rules(settings), on_opened=opened.set)
    workers.start(stages=False)
    freeze_startup_objects()
    try:
        while not stop.is_set() and os.getppid() == parent_pid:
            if wake.wait(RELAY_SECONDS):
                wake.clear()
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
        self._wake, self._opened, self._stop = context.Event(), context.Event(), context.Event()
        self._channel = context.Queue()
        self._processes: list = []
        self._started_at: list[float] = []
        self._processes_lock = threading.Lock()  # start/stop and the revival in the relay thread
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def start(self, on_opened) -> None:
        """Start the children; `on_opened` runs (in a parent thread) when one opened an incident."""
        self._on_opened = on_opened
        self._stop.clear()
        self._stopping.clear()
        with self._processes_lock:
            for index in range(self._count):
                self._processes.append(self._start_child(index))
                self._started_at.append(time.monotonic())
        for name, loop in (("opsbot-intake-metrics", self._relay_metrics), ("opsbot-intake-opened", self._relay_opened)):
            thread = threading.Thread(target=loop, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("intake runs in %d child process(es)", self._count)

    def _start_child(self, index: int):
        process = self._context.Process(
            target=_child_main, name=f"opsbot-intake-process-{index}", daemon=True,
            args=(self._settings, self._wake, self._opened, self._stop, self._channel, os.getpid()),
        )
        process.start()
        return process

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
                self._processes[index] = self._start_child(index)
                self._started_at[index] = time.monotonic()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._stopping.set()
        with self._processes_lock:
            for process in self._processes:
                process.join(timeout)
                if process.is_alive():
                    log.warning("intake process %s did not stop in %.0f s: terminating it", process.pid, timeout)
                    process.terminate()
                    process.join(timeout)
            self._processes.clear()
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
            if self._opened.wait(RELAY_SECONDS):
                self._opened.clear()
                self._on_opened()
