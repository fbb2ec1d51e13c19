"""A scenario moved in time: its `now` set to another moment, and every time in it moved with it.

Scenarios are written at a fixed moment. To serve one on the wall clock (a bot on the system
clock, next to a real Alertmanager), every timestamp moves by the same delta: ISO times in any
string (events, logs, manifests' annotations), datetimes, and the samples of series whose values
are Unix times (`*_time`, `*_timestamp`, `*_expiry`, with or without `_seconds`). What is not a
time (durations, counts, other numbers) is left as it is.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.sandbox.scenario import Scenario
from bot.sandbox.scenario_io import read_single_document

TIME_VALUED_SERIES = re.compile(r"(_time|_timestamp|_expiry)(_seconds)?$")  # samples are Unix times
EPOCH_FLOOR_SECONDS = 1e9  # samples of those series above this are shifted (smaller ones are not times)
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2})([T ])(\d{2}:\d{2}:\d{2})([.,]\d+)?(Z|z|[+-]\d{2}:?\d{2})?")
_LEADING_NUMBER = re.compile(r"^(\d+(?:\.\d+)?(?:[eE]\+?\d+)?)(.*)$")


def _shift_timestamps(text: str, delta: timedelta) -> str:
    def shifted(match: re.Match[str]) -> str:
        date, sep, clock, fraction, zone = match.groups()
        try:
            moment = datetime.fromisoformat(f"{date}T{clock}") + delta
        except ValueError:
            return match.group(0)
        return f"{moment:%Y-%m-%d}{sep}{moment:%H:%M:%S}{fraction or ''}{zone or ''}"

    return _TIMESTAMP.sub(shifted, text)


def _shift_epoch_values(values: str, delta: timedelta) -> str:
    out = []
    for token in values.split():
        match = _LEADING_NUMBER.match(token)
        if match and float(match.group(1)) >= EPOCH_FLOOR_SECONDS:
            moved = float(match.group(1)) + delta.total_seconds()
            token = f"{moved:.0f}{match.group(2)}" if moved.is_integer() else f"{moved}{match.group(2)}"
        out.append(token)
    return " ".join(out)


def _shift(value: Any, delta: timedelta) -> Any:
    if isinstance(value, datetime):
        return value + delta
    if isinstance(value, str):
        return _shift_timestamps(value, delta)
    if isinstance(value, list):
        return [_shift(item, delta) for item in value]
    if isinstance(value, dict):
        moved = {key: _shift(item, delta) for key, item in value.items()}
        name = str(value.get("series", "")).split("{", 1)[0]
        if "values" in value and TIME_VALUED_SERIES.search(name):
            moved["values"] = _shift_epoch_values(str(moved["values"]), delta)
        return moved
    return value


def rebased_scenario(path: Path, now: datetime) -> tuple[Scenario, timedelta]:
    """The scenario in `path` with its `now` moved to `now` (whole seconds) and every time with it."""
    document = read_single_document(path, str(path))
    original = Scenario.from_dict(document, path=path, source_name=str(path)).now
    delta = now.astimezone(UTC).replace(microsecond=0) - original
    return Scenario.from_dict(_shift(document, delta), path=path, source_name=str(path)), delta
