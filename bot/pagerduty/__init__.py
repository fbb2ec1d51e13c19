"""Outbound PagerDuty: open, acknowledge, resolve and annotate PD incidents for opsbot ones.

Inbound V3 webhooks are parsed by `bot.alerts.pagerduty`.
"""

from bot.pagerduty.link import (
    DEDUP_PREFIX,
    EVENTS_SEVERITY,
    PagerDutyError,
    PagerDutyLink,
    PagerDutyRejected,
    PagerDutyUnavailable,
)

__all__ = [
    "DEDUP_PREFIX",
    "EVENTS_SEVERITY",
    "PagerDutyError",
    "PagerDutyLink",
    "PagerDutyRejected",
    "PagerDutyUnavailable",
]
