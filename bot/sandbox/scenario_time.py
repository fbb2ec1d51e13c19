"""Scenario clock: RFC 3339 times, signed relative durations, and their resolution.

A scenario's `now` is the moment its alerts fire. Every other time in the file is either an
absolute RFC 3339 time or a signed duration relative to `now` (``-15m``, ``-2h30m``, ``-3d``,
``0m``, ``+5m``; units ``d h m s ms``, each at most once and in that order). Resolved times are
written back as RFC 3339 UTC with a ``Z`` and no fractional seconds (the form Kubernetes uses
for ``metav1.Time``), so that a simulated API server can serve them unchanged.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = [
    "TIME_KEY_SUFFIXES",
    "format_rfc3339",
    "is_relative_duration",
    "is_time_key",
    "parse_duration",
    "parse_rfc3339",
    "resolve_time",
    "resolve_times_in",
]

TIME_KEY_SUFFIXES: tuple[str, ...] = ("Timestamp", "Time", "At")
"""Keys whose relative-duration values are resolved inside cluster objects and events."""

_TIME_KEYS_EXTRA = frozenset({"notAfter", "notBefore", "timeAdded"})  # cert-manager status; node taints

_UNITS: dict[str, timedelta] = {
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
    "s": timedelta(seconds=1),
    "ms": timedelta(milliseconds=1),
}
_UNIT_ORDER = ("d", "h", "m", "s", "ms")
_DURATION = re.compile(r"([+-]?)((?:\d+(?:ms|d|h|m|s))+)")
_DURATION_PART = re.compile(r"(\d+)(ms|d|h|m|s)")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")


def parse_duration(text: str, *, signed: bool = True) -> timedelta:
    """Parse ``-2h30m`` / ``+5m`` / ``0m`` (or, with ``signed=False``, only ``2h30m``).

    Raises ValueError when the text is not a duration in the grammar above.
    """
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or (match.group(1) and not signed):
        kind = "a signed duration such as -15m, -2h30m or 0m" if signed else "a duration such as 1m or 30s"
        raise ValueError(f"{text!r} is not {kind} (units d, h, m, s, ms)")
    total = timedelta()
    last = -1
    for amount, unit in _DURATION_PART.findall(match.group(2)):
        index = _UNIT_ORDER.index(unit)
        if index <= last:
            raise ValueError(f"{text!r}: units must appear once each, in the order d h m s ms")
        last = index
        total += int(amount) * _UNITS[unit]
    return -total if match.group(1) == "-" else total


def is_relative_duration(value: object) -> bool:
    """True when ``value`` is a string in the signed-duration grammar (units in order)."""
    if not isinstance(value, str):
        return False
    try:
        parse_duration(value)
    except ValueError:
        return False
    return True


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 time (offset required) into an aware UTC datetime."""
    if not isinstance(text, str) or not _RFC3339.fullmatch(text.strip()):
        raise ValueError(f"{text!r} is not an RFC 3339 time such as 2026-11-21T10:00:00Z")
    cleaned = text.strip().replace("t", "T").replace("z", "Z")
    head, sep, tail = cleaned.partition(".")
    if sep:  # Python accepts at most 6 fractional digits; RFC 3339 allows more
        digits = re.match(r"\d+", tail)
        assert digits is not None
        cleaned = f"{head}.{digits.group(0)[:6].ljust(6, '0')}{tail[digits.end() :]}"
    try:
        return datetime.fromisoformat(cleaned).astimezone(UTC)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid RFC 3339 time: {exc}") from None


def format_rfc3339(value: datetime) -> str:
    """``2026-11-21T09:45:00Z``: UTC, ``Z`` suffix, fractional seconds dropped (truncated)."""
    return _aware(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve_time(value: object, now: datetime) -> datetime:
    """An absolute RFC 3339 time, a datetime, or a signed duration relative to ``now``."""
    if isinstance(value, datetime):
        return _aware(value)
    if isinstance(value, str):
        if is_relative_duration(value):
            return _aware(now) + parse_duration(value)
        if _RFC3339.fullmatch(value.strip()):
            return parse_rfc3339(value)
    raise ValueError(
        f"{value!r} is neither an RFC 3339 time (2026-11-21T10:00:00Z) nor a duration relative "
        "to now (-15m, -2h30m, 0m)"
    )


def is_time_key(key: object) -> bool:
    """Keys whose values are times: ``*Timestamp``, ``*Time``, ``*At``, ``notAfter``, ``notBefore``,
    ``timeAdded``."""
    return isinstance(key, str) and (key.endswith(TIME_KEY_SUFFIXES) or key in _TIME_KEYS_EXTRA)


def resolve_times_in(value: Any, now: datetime) -> Any:
    """Return a deep copy of a manifest with relative times under time keys made absolute.

    Only string values that match the duration grammar and sit under a time key change; they
    become RFC 3339 UTC. A `datetime` anywhere becomes RFC 3339 too (JSON has no time type).
    Everything else, including label values that look like durations, is copied unchanged.
    """
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if is_time_key(key) and is_relative_duration(item):
                out[key] = format_rfc3339(_aware(now) + parse_duration(item))
            else:
                out[key] = resolve_times_in(item, now)
        return out
    if isinstance(value, list | tuple):
        return [resolve_times_in(item, now) for item in value]
    if isinstance(value, datetime):
        return format_rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def scenario_clock(now: datetime) -> Callable[[], datetime]:
    """A clock that reads `now` at the moment it is made and advances with the wall clock: a
    replay runs at its scenario's time."""
    started = time.monotonic()
    return lambda: now + timedelta(seconds=time.monotonic() - started)
