"""What a whole eval run says beyond top-1: per-category precision and recall, the confusion
matrix, abstention and calibration. Pure: scores in, text lines out.

- precision of a category: of the first answers naming it, how many were right; recall: of the
  scenarios expecting it first, how many got a right first answer;
- the confusion matrix counts (expected first category, answered first category);
- abstention: `unknown` answers, right where the scenario accepts `unknown`; confident wrong
  answers (wrong, stated as conclusive) are counted apart, because they are worse;
- calibration: the share of right first answers per confidence band of the first answer, so
  "high confidence" can be checked against how often it is right.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from bot.eval.scoring import Score

BANDS = ((0.85, "high (≥85 %)"), (0.6, "medium (60–85 %)"), (0.0, "low (<60 %)"))


def band(confidence: float | None) -> str:
    value = confidence or 0.0
    return next(name for floor, name in BANDS if value >= floor)


def per_category(scores: Sequence[Score]) -> list[str]:
    names = sorted({s.expected for s in scores} | {s.got for s in scores})
    lines = ["per category (first answer): precision = right/answered, recall = right/expected"]
    for name in names:
        answered = [s for s in scores if s.got == name]
        expected = [s for s in scores if s.expected == name]
        right_answered = sum(s.top1 for s in answered)
        right_expected = sum(s.top1 for s in expected)
        lines.append(f"  {name:<24} precision {right_answered}/{len(answered)}  recall {right_expected}/{len(expected)}")
    return lines


def confusion(scores: Sequence[Score]) -> list[str]:
    """Rows: expected first category; columns: answered first category (only non-empty ones)."""
    counts = Counter((s.expected, s.got) for s in scores)
    rows = sorted({s.expected for s in scores})
    columns = sorted({s.got for s in scores})
    short = {c: c[:6] for c in columns}
    width = max((len(r) for r in rows), default=8) + 2
    lines = ["confusion matrix (rows expected, columns answered; right or wrong resource alike):",
             " " * width + " ".join(f"{short[c]:>6}" for c in columns)]
    for row in rows:
        lines.append(f"{row:<{width}}" + " ".join(f"{counts[(row, c)] or '.':>6}" for c in columns))
    return lines


def abstention(scores: Sequence[Score]) -> list[str]:
    unknown = [s for s in scores if s.abstained]
    right = sum(s.top1 for s in unknown)
    wrong = sum(s.confident_wrong for s in scores)
    return [f"abstention: {len(unknown)} answered unknown ({right} where unknown was acceptable); "
            f"confident wrong answers: {wrong}"]


def calibration(scores: Sequence[Score]) -> list[str]:
    lines = ["calibration (first answer's confidence band: right/answered):"]
    for _, name in BANDS:
        answered = [s for s in scores if s.got not in ("unknown", "none") and band(s.confidence) == name]
        if answered:
            lines.append(f"  {name:<18} {sum(s.top1 for s in answered)}/{len(answered)}")
    return lines


def summary_lines(scores: Sequence[Score]) -> list[str]:
    return [*per_category(scores), *confusion(scores), *abstention(scores), *calibration(scores)]
