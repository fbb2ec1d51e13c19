"""Outbound PagerDuty: open, acknowledge, resolve and annotate PD incidents for opsbot ones.

Inbound V3 webhooks are parsed by `bot.alerts.pagerduty`.
"""

from bot.alerts.pagerduty import DEFAULT_DEDUP_PREFIX
from bot.pagerduty.link import (
    EVENTS_SEVERITY,
    PagerDutyError,
    PagerDutyLink,
    PagerDutyRejected,
    PagerDutyUnavailable,
    PagerDutyUser,
)

__all__ = [
    "DEFAULT_DEDUP_PREFIX",
    "EVENTS_SEVERITY",
    "PagerDutyError",
    "PagerDutyLink",
    "PagerDutyRejected",
    "PagerDutyUnavailable",
    "PagerDutyUser",
]
