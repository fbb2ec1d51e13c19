"""Structured JSON logging with the incident id on every line of an incident's work.

`incident_context(id)` sets a context variable that the formatter adds to each record, so a
worker's log lines for INC-42 can be filtered with `jq 'select(.incident == "INC-42")'`.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from bot.redaction import redact, redact_data

_incident: contextvars.ContextVar[str | None] = contextvars.ContextVar("opsbot_incident", default=None)
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@contextmanager
def incident_context(incident_id: int | None) -> Iterator[None]:
    token = _incident.set(f"INC-{incident_id}" if incident_id is not None else None)
    try:
        yield
    finally:
        _incident.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, incident, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        incident = _incident.get()
        if incident:
            line["incident"] = incident
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                line[key] = redact_data(value)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable lines; the whole formatted line (arguments and traceback) is redacted."""

    def format(self, record: logging.LogRecord) -> str:
        incident = _incident.get()
        prefix = f"[{incident}] " if incident else ""
        return prefix + redact(super().format(record))


ALWAYS_LOGGED = "bot.timeline.anchors"


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("waitress.queue", "urllib3.connectionpool", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # the audit anchors are a record, not chatter: logged at any level (bot.timeline.anchors)
    logging.getLogger(ALWAYS_LOGGED).setLevel(logging.INFO)
