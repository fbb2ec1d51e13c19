"""Source-neutral alerts: every intake module turns its payload into an `AlertBatch`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

AlertStatus = Literal["firing", "resolved"]


# Column widths: values are cut to fit on every backend (PostgreSQL refuses longer ones).
MAX_NAME = 256
MAX_FINGERPRINT = 128


def clean_text(value: str) -> str:
    """Untrusted text made storable: NUL characters (refused by PostgreSQL) removed."""
    return value.replace("\x00", "")


def clean_map(values: dict[str, str]) -> dict[str, str]:
    return {clean_text(key): clean_text(value) for key, value in values.items()}


def may_hold_nul(body: bytes) -> bool:
    """False when no string parsed from this JSON body can contain NUL (no NUL byte, no
    \\u0000 escape), so cleaning its strings one by one can be skipped."""
    return b"\x00" in body or b"\\u0000" in body


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
