"""The postmortem as the thread and `opsbot postmortem` show it: the incident's facts
(`bot.postmortem.facts`) and the past incidents that resemble it (`bot.postmortem.memory`),
listed as hypotheses for the review, never as its cause. Reads only."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bot.postmortem.facts import postmortem_facts
from bot.postmortem.memory import similar

MAX_SIMILAR = 3


def postmortem_document(session: Session, incident_id: int) -> dict[str, Any]:
    facts = postmortem_facts(session, incident_id)
    facts["similar"] = [{key: found.as_dict()[key] for key in
                         ("incident", "score", "reasons", "title", "category", "resolution", "fixed_by", "fix_held")}
                        for found in similar(session, incident_id, MAX_SIMILAR)]
    return facts
