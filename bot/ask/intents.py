"""What a question in an incident thread asks for: a small deterministic matcher. Pure.

The intents are declared data: a name, what it answers (shown when a question is not
understood) and the words that trigger it. `match` lowercases the text, drops Slack's
mention markup (`<@U123>`), and picks the intent whose trigger occurs *earliest* in the
question, ties going to the intent declared first: the question word leads in "why the
rollout?" (why, not what changed) and "what changed in the logs?" (what changed, not logs).
No trigger anywhere is None, and the thread is told what can be answered. No model, no
randomness: the same text always gets the same intent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MARKUP = re.compile(r"<[@#!][^>]*>")


@dataclass(frozen=True)
class Intent:
    name: str
    answers: str  # what the bot answers for it, in a phrase
    example: str  # a question that asks for it
    triggers: tuple[str, ...]  # regular expressions over the lowercased question

    def first_trigger_at(self, text: str) -> int | None:
        """Where the earliest trigger starts in `text` (lowercased, markup removed), or None."""
        found = [m.start() for m in (re.search(t, text) for t in self.triggers) if m]
        return min(found) if found else None


INTENTS: tuple[Intent, ...] = (
    Intent("why", "the root cause and the evidence for and against it", "why did this happen?",
           (r"\bwhy\b", r"\broot[ -]?cause\b", r"\bcaused?\b", r"\bexplain\b", r"\bdiagnos")),
    Intent("changed", "what changed before and during the incident", "what changed?",
           (r"\bwhat(?:'s| has| did)? ?changed?\b", r"\bchanges?\b", r"\bdiff\b", r"\bdeploy(?:ed|s)?\b",
            r"\brevisions?\b")),
    Intent("checked", "what the investigation checked and what it could not", "what did you check?",
           (r"\bcheck(?:ed|s)?\b", r"\blook(?:ed)? at\b", r"\binvestigat", r"\bevidence\b", r"\bgaps?\b")),
    Intent("logs", "the log lines and templates that jumped", "show the logs",
           (r"\blogs?\b", r"\blog lines?\b", r"\bstack ?traces?\b", r"\bpanics?\b")),
    Intent("graph", "the graph of the key signal", "graph error rate",
           (r"\bgraphs?\b", r"\bcharts?\b", r"\bplot\b", r"\bmetrics?\b", r"\bdashboard\b")),
    Intent("approvers", "who can approve the steps waiting for approval", "who can approve?",
           (r"\bapprov", r"\bsign[ -]?off\b", r"\bwho can\b")),
    Intent("status", "where the incident stands: status, commander, steps, follow-ups", "status?",
           (r"\bstatus\b", r"\bwhere are we\b", r"\bcatch ?up\b", r"\bsummar", r"\bwhat'?s going on\b")),
    Intent("similar", "similar past incidents and how they ended", "has this happened before?",
           (r"\bsimilar\b", r"\bhappened before\b", r"\bseen (?:this|it) before\b", r"\bpast incidents?\b",
            r"\blike this\b")),
)
BY_NAME = {intent.name: intent for intent in INTENTS}


def normalise(text: str) -> str:
    """The question as matched: mentions and links removed, lowercased, spaces collapsed."""
    return " ".join(_MARKUP.sub(" ", text or "").lower().replace("’", "'").split())


def match(text: str) -> Intent | None:
    """The intent asked for in `text`, or None when no declared trigger occurs in it."""
    question = normalise(text)
    best: tuple[int, int, Intent] | None = None
    for order, intent in enumerate(INTENTS):
        at = intent.first_trigger_at(question)
        if at is not None and (best is None or (at, order) < best[:2]):
            best = (at, order, intent)
    return best[2] if best else None
