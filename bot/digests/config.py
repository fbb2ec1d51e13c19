"""The digests file (`OPSBOT_DIGESTS_FILE`, YAML): when each digest is posted where, and what
each one checks.

    schedules:
      - {digest: drift, channel: "#platform", cron: "0 9 * * 1-5", timezone: Europe/Berlin}
    drift: {sources: [{path: ../gitops/shop, namespace: shop}]}
    cost: {lookback_days: 7, prices: {vcpu_hour: 0.031, gib_hour: 0.0042}}

Relative paths in the file resolve against the file's folder. Loading reports every problem at
once, one line each, naming the field (`DigestsConfigError.problems`), and a bad file never
half-loads: the bot refuses to start, the CLI prints the lines and exits 2.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Literal

import yaml
from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.digests.cost import CostConfig
from bot.digests.credentials import CredentialsConfig
from bot.digests.database import DatabaseConfig
from bot.digests.drift import DriftConfig
from bot.digests.model import DIGEST_NAMES

DigestName = Literal["drift", "credentials", "cost", "database"]


class DigestsConfigError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: 0 (and 7) is Sunday


def crontab_weekdays(field: str) -> str:
    """A crontab day-of-week field in APScheduler 3's terms. APScheduler counts from Monday = 0,
    crontab from Sunday = 0, so `1-5` would silently mean Tuesday to Saturday: numbers, ranges
    and steps are spelled out as day names (`mon,tue,wed,thu,fri`); names pass through."""
    if field == "*":
        return field
    days: list[str] = []
    for part in field.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"day-of-week step {step_text!r} is not a positive number")
        if body == "*":
            numbers = list(range(0, 7))
        elif re.fullmatch(r"[0-7]-[0-7]", body):
            first, last = (int(n) for n in body.split("-"))
            if first > last:
                raise ValueError(f"day-of-week range {body!r} runs backwards")
            numbers = list(range(first, last + 1))
        elif re.fullmatch(r"[0-7]", body):
            numbers = [int(body)]
        elif re.fullmatch(r"[a-z]{3}(-[a-z]{3})?", body.lower()) and not step_text:
            days.append(body.lower())
            continue
        else:
            raise ValueError(f"day-of-week {part!r} is not a crontab day (0-7, names, ranges, lists, steps)")
        days += [WEEKDAYS[n % 7] for n in numbers[::step or 1]]
    return ",".join(dict.fromkeys(days))


class Schedule(BaseModel):
    """One digest posted to one channel at a cron time in a time zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    digest: DigestName
    channel: str = Field(min_length=1, max_length=80, description="channel id (C0123…) or #name")
    cron: str = Field("0 9 * * 1-5", description="five fields: minute hour day-of-month month day-of-week")
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)") from None
        return value

    @model_validator(mode="after")
    def _cron(self) -> Schedule:
        try:
            self.trigger()
        except ValueError as exc:
            raise ValueError(f"cron {self.cron!r}: {exc}") from None
        return self

    def trigger(self) -> CronTrigger:
        fields = self.cron.split()
        if len(fields) != 5:
            raise ValueError("needs five fields: minute hour day-of-month month day-of-week")
        minute, hour, day, month, weekday = fields
        return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=crontab_weekdays(weekday),
                           timezone=zoneinfo.ZoneInfo(self.timezone))

    @property
    def job(self) -> str:
        """The claim's job name: one per digest and channel (each channel gets its own post)."""
        return f"digest:{self.digest}:{self.channel}"[:64]


class DigestsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schedules: list[Schedule] = Field(default_factory=list)
    catch_up_hours: float = Field(
        12, ge=0, le=168, description="a slot missed while the bot was down is posted once if this recent")
    drift: DriftConfig = Field(default_factory=DriftConfig)
    credentials: CredentialsConfig = Field(default_factory=CredentialsConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    base_dir: Path = Field(Path("."), exclude=True)

    def section(self, name: str) -> BaseModel:
        if name not in DIGEST_NAMES:
            raise KeyError(name)
        return getattr(self, name)


def _describe(error: dict) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"


def load_digests(path: Path | None) -> DigestsConfig:
    """The digests file; no file configured: no schedules and every section's defaults."""
    if path is None:
        return DigestsConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DigestsConfigError([f"OPSBOT_DIGESTS_FILE: cannot read {path}: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise DigestsConfigError([f"OPSBOT_DIGESTS_FILE: {path}{where} is not valid YAML: "
                                  f"{getattr(exc, 'problem', None) or exc}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DigestsConfigError([f"OPSBOT_DIGESTS_FILE: {path} must hold a mapping (schedules, drift, cost, ...)"])
    try:
        return DigestsConfig.model_validate({**raw, "base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise DigestsConfigError([f"{path.name}: {_describe(error)}" for error in exc.errors()]) from None
