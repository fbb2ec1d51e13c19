"""Source-neutral alerts: every intake module turns its payload into an `AlertBatch`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

AlertStatus = Literal["firing", "resolved"]


# Column widths: values are cut to fit on every backend (PostgreSQL refuses longer ones).
MAX_NAME = 256
MAX_FINGERPRINT = 128

# Text no database can store, although JSON can carry it: NUL ("\u0000": PostgreSQL refuses
# it in text and JSON columns) and lone UTF-16 surrogates ("\ud800": a valid JSON escape, but
# no UTF-8 encoding exists for it, so every write of the value fails). NUL is removed; a lone
# surrogate becomes U+FFFD, so the reader still sees that something was there.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT_CHARACTER = "\ufffd"
# What a body must contain to yield such text: a NUL byte, a \u0000 escape or a surrogate escape.
_UNSTORABLE_ESCAPE = re.compile(rb"\x00|\\u(?:0000|[dD][89a-fA-F])")

# Alert times outside this range are no real time (Go's zero time is year 1; year 9999 with a
# negative offset does not even fit in UTC) and break the arithmetic done on them later: they
# are read as unknown, like Alertmanager's zero time. Fixed bounds, not relative to the clock,
# so the webhook and the worker, which both parse a body, always read it alike.
PLAUSIBLE_TIMES = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def clean_text(value: str) -> str:
    """Untrusted text made storable: NUL removed, each lone surrogate replaced by U+FFFD."""
    return _LONE_SURROGATE.sub(REPLACEMENT_CHARACTER, value.replace("\x00", ""))


def clean_document(value: Any) -> Any:
    """A parsed JSON document with every string (keys too) made storable (`clean_text`)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(key): clean_document(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clean_document(item) for item in value]
    return value


def needs_cleaning(body: bytes) -> bool:
    """False when no string parsed from this JSON body can hold unstorable text (no NUL byte,
    no \\u0000 or surrogate escape), so its strings need no cleaning."""
    return _UNSTORABLE_ESCAPE.search(body) is not None


def load_object(body: bytes, what: str) -> dict[str, Any]:
    """The body parsed as a JSON object, every string made storable; `PayloadError` when it is
    not JSON or not an object (`what` names the payload the sender should have sent)."""
    try:
        document = clean_document(json.loads(body))
    except ValueError as exc:  # not UTF-8, not JSON, or an integer too long to convert
        raise PayloadError(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise PayloadError("body is nested too deeply") from None
    if not isinstance(document, dict):
        raise PayloadError(f"body must be a JSON object ({what})")
    return document


def plausible_time(value: datetime | None) -> datetime | None:
    """`value` in UTC, or None (unknown) when it lies outside `PLAUSIBLE_TIMES`."""
    if value is None or not PLAUSIBLE_TIMES[0] <= value < PLAUSIBLE_TIMES[1]:
        return None
    return value.astimezone(UTC)


class PayloadError(ValueError):
    """A webhook body that cannot be accepted; the message names the offending field."""


@dataclass(frozen=True)
class NormalizedAlert:
    source: str
    fingerprint: str
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str | None

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "unnamed alert")


@dataclass(frozen=True)
class AlertBatch:
    """One notification: alerts that the source already grouped together."""

    source: str
    group_key: str
    status: AlertStatus
    alerts: tuple[NormalizedAlert, ...]
    group_labels: dict[str, str] = field(default_factory=dict)
    common_labels: dict[str, str] = field(default_factory=dict)
    common_annotations: dict[str, str] = field(default_factory=dict)
    external_url: str | None = None
    truncated_alerts: int = 0
    # The sender's id and time of the event this notification reports, when it has them
    # (PagerDuty): the replay guard and the ordering of state changes use them.
    event_id: str | None = None
    occurred_at: datetime | None = None
