"""Refused clicks on the timeline: every click is recorded, refused or not (issue 12, item 12).

The incident is the one the click names when that can be trusted (a verified token, an id that
exists), else the one whose thread holds the clicked message (channel and ts come from Slack's
signed payload). A click on no message of ours has no timeline to go to: it is logged.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.db.models import Incident
from bot.incidents import service
from bot.timeline import chain

log = logging.getLogger(__name__)
KIND = "click.refused"


def record(session: Session, incident_id: int | None, *, user: str, action: str, reason: str,
           channel: str | None, message_ts: str | None, now: datetime, **details: Any) -> int | None:
    """Append the refusal in the caller's transaction; the incident it went to, or None."""
    if incident_id is None or session.get(Incident, incident_id) is None:
        incident_id = service.incident_of_message(session, channel, message_ts)
    if incident_id is None:
        log.warning("refused %s click by %s on no message of ours: %s", action, user, reason)
        return None
    chain.append(session, incident_id, KIND, f"slack:{user}",
                 {"action": action, "reason": reason, "channel": channel, **details}, now)
    return incident_id
