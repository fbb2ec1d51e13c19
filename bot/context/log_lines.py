"""Reading one log line: its time, its level and its message. Pure.

Handles the shapes real workloads print: JSON (`ts`/`time`/`timestamp`/`@timestamp`,
`level`/`severity`, `msg`/`message`, `error`/`err`), logfmt (`level=error msg="..."`), and
plain text with a leading timestamp (ISO 8601, `2026-05-02 06:57:56,084`, `[2026-05-02
06:57:55 +0000]`, klog's `E0502 06:57:56.114`). Lines are untrusted text: nothing here
evaluates them, and a line that parses as nothing is still kept as a message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

_ISO = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?")
_KLOG = re.compile(r"^([IWEF])(\d{2})(\d{2}) (\d{2}:\d{2}:\d{2})")
_LEVEL_WORD = re.compile(r"\b(TRACE|DEBUG|INFO|NOTICE|WARN(?:ING)?|ERROR|ERR|CRITICAL|CRIT|FATAL|PANIC|SEVERE|"
                         r"EMERG(?:ENCY)?|ALERT)\b", re.I)
_LOGFMT_LEVEL = re.compile(r"\b(?:level|lvl|severity)=\"?(\w+)", re.I)
_LOGFMT_MSG = re.compile(r"\b(?:msg|message)=(\"(?:[^\"\\]|\\.)*\"|\S+)")
_LOGFMT_ERR = re.compile(r"\b(?:err|error)=(\"(?:[^\"\\]|\\.)*\"|\S+)")
_ERRORISH = re.compile(r"(^panic:|Traceback \(most recent call last\)|Exception\b|\bException in thread|"
                       r"^\s*fatal error:|segmentation fault|SIGSEGV|^Error:|^error:|\bFATAL\b|\bfailed\b)", re.I)
_LEVELS = {"trace": "info", "debug": "info", "info": "info", "notice": "info", "warn": "warn", "warning": "warn",
           "error": "error", "err": "error", "critical": "error", "crit": "error", "fatal": "error",
           "panic": "error", "severe": "error", "emerg": "error", "emergency": "error", "alert": "error",
           "e": "error", "w": "warn", "i": "info", "f": "error", "dpanic": "error"}
_TIME_KEYS = ("ts", "time", "timestamp", "@timestamp", "t", "date")
_LEVEL_KEYS = ("level", "severity", "lvl", "levelname", "log.level")
_MESSAGE_KEYS = ("msg", "message", "event", "log")
_ERROR_KEYS = ("error", "err", "exception", "stack_trace", "reason")


@dataclass(frozen=True)
class ParsedLine:
    at: datetime | None
    level: str  # error | warn | info | other
    message: str  # what the line says, without its time and level decoration


def _iso_time(text: str) -> datetime | None:
    match = _ISO.search(text[:64])
    if not match:
        return None
    date, clock, fraction, zone = match.groups()
    stamp = f"{date}T{clock}"
    if fraction:
        stamp += "." + fraction[:6].ljust(6, "0")
    zone = zone or "Z"
    zone = "+00:00" if zone == "Z" else (zone if ":" in zone else zone[:3] + ":" + zone[3:])
    try:
        return datetime.fromisoformat(stamp + zone).astimezone(UTC)
    except ValueError:
        return None


def _json_time(value) -> datetime | None:
    if isinstance(value, (int, float)) and value > 1e9:
        seconds = value / 1000 if value > 1e12 else value
        return datetime.fromtimestamp(seconds, UTC)
    return _iso_time(value) if isinstance(value, str) else None


def _parse_json(line: str) -> ParsedLine | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    at = next((t for key in _TIME_KEYS if (t := _json_time(record.get(key))) is not None), None)
    level_text = next((str(record[k]) for k in _LEVEL_KEYS if isinstance(record.get(k), (str, int))), "")
    message = next((str(record[k]) for k in _MESSAGE_KEYS if isinstance(record.get(k), str)), "")
    error = next((str(record[k]) for k in _ERROR_KEYS if record.get(k)), "")
    text = f"{message}: {error}" if message and error else (message or error or line)
    return ParsedLine(at, _LEVELS.get(level_text.lower(), "other") if level_text else _guess_level(text), text)


def _guess_level(text: str) -> str:
    match = _LEVEL_WORD.search(text[:120])
    if match:
        return _LEVELS.get(match.group(1).lower(), "other")
    return "error" if _ERRORISH.search(text) else "other"


def parse_line(line: str, year: int | None = None) -> ParsedLine:
    """Time, level and message of one line (`year` completes klog's year-less stamps)."""
    stripped = line.strip()
    if stripped.startswith("{"):
        parsed = _parse_json(stripped)
        if parsed is not None:
            return parsed
    at = _iso_time(stripped)
    klog = _KLOG.match(stripped)
    if at is None and klog and year:
        try:
            at = datetime.fromisoformat(f"{year}-{klog.group(2)}-{klog.group(3)}T{klog.group(4)}+00:00")
        except ValueError:
            at = None
    level_match = _LOGFMT_LEVEL.search(stripped)
    if level_match:
        level = _LEVELS.get(level_match.group(1).lower(), "other")
        msg, err = _LOGFMT_MSG.search(stripped), _LOGFMT_ERR.search(stripped)
        parts = [m.group(1).strip('"') for m in (msg, err) if m]
        return ParsedLine(at, level, ": ".join(parts) if parts else stripped)
    if klog:
        return ParsedLine(at, _LEVELS[klog.group(1).lower()], stripped)
    return ParsedLine(at, _guess_level(stripped), stripped)
