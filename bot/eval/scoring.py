"""Scoring one scenario's RCA against its `expect` block, as SCENARIOS.md defines it. Pure.

- top-1: the first hypothesis has an acceptable category and the expected resource;
- top-3: one of the first three does;
- mentions: every `mentions` string occurs in the posted RCA text (case-insensitive);
- runbook: the expected runbook is proposed and nothing in `forbid` is (None until the bot
  proposes runbooks: then the columns stay empty);
- abstention: a first answer `unknown` is right where the scenario accepts `unknown` (and names
  the resource to look at), and merely not right elsewhere; a wrong first answer that the RCA
  stated as conclusive is `confident_wrong`, counted apart as worse than not knowing.
Resources compare case-insensitively on the kind and exactly on namespace and name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def same_resource(got: str, expected: str) -> bool:
    got_parts, expected_parts = got.split("/"), expected.split("/")
    if len(got_parts) != len(expected_parts):
        return False
    return got_parts[0].lower() == expected_parts[0].lower() and got_parts[1:] == expected_parts[1:]


@dataclass
class Score:
    top1: bool
    top3: bool
    mentions_ok: bool
    missing_mentions: list[str]
    runbook_ok: bool | None  # None: no runbook expected, or the bot proposes none yet
    forbidden: list[str] = field(default_factory=list)
    abstained: bool = False  # the first answer is `unknown`
    confident_wrong: bool = False  # a wrong first cause, stated as conclusive
    expected: str = ""  # the first acceptable category (for the confusion matrix)
    got: str = "none"  # the first answer's category
    confidence: float | None = None  # the first answer's confidence


def score(expect: Any, hypotheses: list[dict[str, Any]], rca_text: str,
          proposed_runbooks: list[str] | None = None, inconclusive: bool = False) -> Score:
    categories = expect.category if isinstance(expect.category, list) else [expect.category]

    def good(h: dict[str, Any]) -> bool:
        return h["category"] in categories and same_resource(h["resource"], str(expect.resource))

    text = rca_text.lower()
    missing = [m for m in expect.mentions or [] if m.lower() not in text]
    runbook_ok = forbidden = None
    if proposed_runbooks is not None:
        forbidden = [r for r in expect.forbid or [] if r in proposed_runbooks]
        runbook_ok = (expect.runbook in proposed_runbooks if expect.runbook else True) and not forbidden
    top1 = bool(hypotheses) and good(hypotheses[0])
    first = hypotheses[0] if hypotheses else None
    abstained = first is not None and first["category"] == "unknown"
    return Score(top1=top1, top3=any(good(h) for h in hypotheses[:3]),
                 mentions_ok=not missing, missing_mentions=missing, runbook_ok=runbook_ok,
                 forbidden=forbidden or [], abstained=abstained,
                 confident_wrong=first is not None and not top1 and not abstained and not inconclusive,
                 expected=categories[0], got=first["category"] if first else "none",
                 confidence=first.get("confidence") if first else None)
