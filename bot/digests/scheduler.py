"""When digests run: APScheduler 3 in every replica, the database deciding who posts.

Each schedule (digest, channel, cron, time zone) is one cron job in a `BackgroundScheduler`.
Every replica fires it; the run's first act is to claim `(job, slot)` (`bot.digests.flows`), so
the digest is posted once however many replicas run. The slot is the cron time the run is for
(`2026-12-07T08:00:00Z`), computed from the trigger, not from when the thread woke up, so two
replicas firing a few milliseconds apart claim the same slot.

Catch-up: at start-up each schedule's latest slot within `catch_up` is run once (a slot missed
while the bot was down is posted late, once; older missed slots are not posted at all: one
late digest, not a burst). A slot already claimed is left alone, so restarts never repeat it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from bot.clock import Clock
from bot.digests.config import Schedule
from bot.digests.flows import DigestRunner, RunResult

log = logging.getLogger(__name__)
MAX_SLOTS_SCANNED = 20_000  # an every-minute cron over a week's catch-up window: 10,080


def slot_name(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def latest_slot(schedule: Schedule, now: datetime, window: timedelta) -> datetime | None:
    """The latest cron time of `schedule` at or before `now` and not older than `window`."""
    trigger = schedule.trigger()
    start = now - window
    latest, previous = None, None
    fire = trigger.get_next_fire_time(None, start)
    for _ in range(MAX_SLOTS_SCANNED):
        if fire is None or fire > now:
            break
        latest, previous = fire, fire
        fire = trigger.get_next_fire_time(previous, fire + timedelta(seconds=1))
    return latest


class DigestScheduler:
    def __init__(self, runner: DigestRunner, schedules: list[Schedule], clock: Clock,
                 catch_up: timedelta = timedelta(hours=12)):
        self._runner, self._schedules, self._clock, self._catch_up = runner, schedules, clock, catch_up
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        """One cron job per schedule and one immediate catch-up job; returns at once."""
        if not self._schedules:
            return
        scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
        for schedule in self._schedules:
            scheduler.add_job(self.fire, schedule.trigger(), args=[schedule], id=schedule.job, name=schedule.job,
                              misfire_grace_time=max(1, int(self._catch_up.total_seconds())))
        scheduler.add_job(self.catch_up, DateTrigger(datetime.now(UTC)), id="digest:catch-up")
        scheduler.start()
        self._scheduler = scheduler
        log.info("digests scheduled: %s", ", ".join(f"{s.digest} to {s.channel} at '{s.cron}' {s.timezone}"
                                                     for s in self._schedules))

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def fire(self, schedule: Schedule) -> RunResult | None:
        """The cron job: run the slot that is due now (the one the trigger fired for)."""
        slot = latest_slot(schedule, self._clock(), self._catch_up or timedelta(minutes=1))
        if slot is None:
            return None
        return self._run(schedule, slot)

    def catch_up(self) -> list[RunResult]:
        """Run each schedule's latest slot within the catch-up window, unless already claimed."""
        results = []
        for schedule in self._schedules:
            slot = latest_slot(schedule, self._clock(), self._catch_up)
            if slot is not None:
                results.append(self._run(schedule, slot))
        return results

    def _run(self, schedule: Schedule, slot: datetime) -> RunResult:
        try:
            result = self._runner.run(schedule.digest, schedule.channel, schedule.job, slot_name(slot))
        except Exception as exc:  # noqa: BLE001 - a scheduler thread must survive; the claim shows it
            log.exception("digest %s slot %s failed", schedule.job, slot_name(slot))
            return RunResult("failed", error=str(exc))
        if result.outcome not in ("taken",):
            log.info("digest %s slot %s: %s", schedule.job, slot_name(slot), result.outcome)
        return result
