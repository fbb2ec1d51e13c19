"""Alertmanager webhook payloads (version 4) into an `AlertBatch`.

Alert labels and annotations are untrusted data: they are kept as strings and never
interpreted. Unknown fields are ignored (kept in the raw delivery), not fatal.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.alerts.fingerprints import bounded_fingerprint, label_fingerprint
from bot.alerts.model import (
    MAX_FINGERPRINT,
    AlertBatch,
    NormalizedAlert,
    PayloadError,
    load_object,
    needs_cleaning,
    plausible_time,
)

SOURCE = "alertmanager"
# Alertmanager writes this for "no end time" (Go's zero time).
ZERO_TIME_PREFIX = "0001-01-01"


class _Alert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: AwareDatetime | None = None
    endsAt: AwareDatetime | None = None
    generatorURL: str | None = None
    fingerprint: str | None = None

    @field_validator("startsAt", "endsAt", mode="before")
    @classmethod
    def _zero_time_is_none(cls, value: object) -> object:
        if isinstance(value, str) and (value.startswith(ZERO_TIME_PREFIX) or value == ""):
            return None
        return value

    @field_validator("startsAt", "endsAt")
    @classmethod
    def _implausible_is_unknown(cls, value: datetime | None) -> datetime | None:
        return plausible_time(value)

    @field_validator("labels")
    @classmethod
    def _has_alertname(cls, value: dict[str, str]) -> dict[str, str]:
        if "alertname" not in value:
            raise ValueError("an alert needs an 'alertname' label")
        return value


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: str
    groupKey: str = Field(min_length=1)
    status: Literal["firing", "resolved"]
    receiver: str = ""
    truncatedAlerts: int = Field(0, ge=0)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str | None = None
    alerts: list[_Alert] = Field(min_length=1)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"]) or "body"
    message = error["msg"].removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    return f"{location}: {message}" + (f" (and {more} more problems)" if more else "")


def _no_extras(_alert: _Alert) -> dict[str, str]:
    return {}


def _validated(body: bytes, source: str) -> _Payload:
    """The payload, validated by pydantic's own JSON parser (no intermediate Python objects:
    the intake parses every body twice, at the webhook and in the worker). A body that may
    hold unstorable text (see `bot.alerts.model.needs_cleaning`), and one the fast parser
    refuses, is read the plain way and cleaned first, so the sender gets the same message
    either way (the JSON parser words some errors differently) and every string is storable."""
    if not needs_cleaning(body):
        try:
            return _Payload.model_validate_json(body)
        except ValidationError:
            pass
    document = load_object(body, f"a {source} webhook payload")
    try:
        return _Payload.model_validate(document)
    except ValidationError as exc:
        raise PayloadError(_first_error(exc)) from None


def parse_compatible(body: bytes, source: str, versions: frozenset[str],
                     extra_annotations: Callable[[_Alert], dict[str, str]] = _no_extras) -> AlertBatch:
    """Parse any Alertmanager-compatible webhook (Alertmanager itself, Grafana, ...).

    `versions` are the payload versions the source sends; `extra_annotations` turns a
    source's additional per-alert fields into annotations (never overriding the alert's own).
    An alert without a fingerprint gets one computed from its labels; times outside
    `PLAUSIBLE_TIMES` are unknown (None).
    """
    payload = _validated(body, source)
    if payload.version not in versions:
        raise PayloadError(f"version: unsupported payload version '{payload.version}' "
                           f"(this endpoint reads version {' or '.join(sorted(versions))})")
    alerts = tuple(
        NormalizedAlert(
            source=source,
            fingerprint=bounded_fingerprint(alert.fingerprint or label_fingerprint(alert.labels), MAX_FINGERPRINT),
            status=alert.status,
            labels=alert.labels,
            annotations={**extra_annotations(alert), **alert.annotations},
            starts_at=alert.startsAt,
            ends_at=alert.endsAt,
            generator_url=alert.generatorURL or None,
        )
        for alert in payload.alerts
    )
    return AlertBatch(
        source=source,
        group_key=payload.groupKey,
        status=payload.status,
        alerts=alerts,
        group_labels=payload.groupLabels,
        common_labels=payload.commonLabels,
        common_annotations=payload.commonAnnotations,
        external_url=payload.externalURL or None,
        truncated_alerts=payload.truncatedAlerts,
    )


def parse(body: bytes) -> AlertBatch:
    """An Alertmanager (payload version 4) webhook body; `PayloadError` names the bad field."""
    return parse_compatible(body, SOURCE, frozenset({"4"}))
