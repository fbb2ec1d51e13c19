"""Cron expressions as sets of minutes: is this moment inside a change-freeze window? Pure.

A freeze window is written as a standard five-field cron expression (minute, hour, day of
month, month, day of week) naming every minute that is frozen, in the window's own time zone:
`* 18-23 * * fri` is Friday evenings, `* * 24-26 12 *` three days at Christmas,
`* * * * sat,sun` the weekend. Day of month and day of week combine as cron combines them: when
both are restricted, either may match. Names (jan..dec, sun..sat), ranges, lists and steps
(`*/15`, `8-18/2`) are supported; anything else is a `CronError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MONTHS = {name: i for i, name in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
_DAYS = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}), ("month", 1, 12, _MONTHS),
           ("day of week", 0, 7, _DAYS))


class CronError(ValueError):
    pass


def _value(text: str, names: dict[str, int], field: str) -> int:
    lowered = text.lower()
    if lowered in names:
        return names[lowered]
    if not text.isdigit():
        raise CronError(f"{field}: {text!r} is not a number or a name")
    return int(text)


def _parse_field(text: str, field: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = _value(step_text, {}, field) if step_text else 1
        if step < 1:
            raise CronError(f"{field}: step must be at least 1")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, last = base.split("-", 1)
            start, end = _value(first, names, field), _value(last, names, field)
        else:
            start = _value(base, names, field)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(f"{field}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, moment: datetime) -> bool:
        day_ok = moment.day in self.days
        weekday_ok = (moment.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            calendar_ok = day_ok or weekday_ok
        else:
            calendar_ok = day_ok and weekday_ok
        return (moment.minute in self.minutes and moment.hour in self.hours and moment.month in self.months
                and calendar_ok)


def parse_cron(expression: str) -> Cron:
    parts = expression.split()
    if len(parts) != 5:
        raise CronError(f"{expression!r}: a cron expression has 5 fields (minute hour day month weekday)")
    parsed = [_parse_field(text, name, low, high, names) for text, (name, low, high, names) in zip(parts, _FIELDS,
                                                                                                   strict=True)]
    weekdays = frozenset(d % 7 for d in parsed[4])  # 7 is Sunday too
    return Cron(parsed[0], parsed[1], parsed[2], parsed[3], weekdays, parts[2] != "*", parts[4] != "*")


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {name!r}") from None


def in_window(expression: str, timezone: str, moment: datetime) -> bool:
    """True when `moment` (aware) falls in a minute the expression names, in `timezone`."""
    return parse_cron(expression).matches(moment.astimezone(zone(timezone)))
