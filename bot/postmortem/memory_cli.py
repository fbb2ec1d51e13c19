"""`opsbot incidents similar INC-N [--json] [--limit N]`: the past incidents most like INC-N, with
why, as the RCA lists them (`bot.postmortem.memory`). Read-only.

A malformed or unknown incident reference, or a limit out of range, is one line on stderr and
exit code 2; nothing is changed either way.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parser is built for every command: the database modules load only when this one runs
    from bot.postmortem.memory import Similar

MAX_LIMIT = 50
HELD_WORDS = {True: "held", False: "did not hold", None: "not verified"}


def parse_reference(text: str) -> int:
    """INC-12 or 12 (any case, surrounding blanks ignored); ValueError otherwise."""
    found = re.fullmatch(r"(?:INC-)?(\d{1,18})", text.strip(), re.I)
    if not found or int(found.group(1)) == 0:
        raise ValueError(f"{text!r} is not an incident reference (INC-12 or 12)")
    return int(found.group(1))


def ranking_lines(reference: str, found: list[Similar]) -> list[str]:
    """The ranking as text: one line per past incident, then its reasons with their shares."""
    from bot.postmortem.memory import MIN_SCORE

    if not found:
        return [f"{reference}: no resolved past incident reaches the minimum similarity of {MIN_SCORE:.2f} "
                "(nothing to check)"]
    lines = [f"{reference}: past incidents like it (hypotheses to check, never answers)"]
    for rank, past in enumerate(found, 1):
        step = f", step {past.fixed_by}" if past.fixed_by else ""
        lines.append(f"{rank}. {past.reference}  {past.score:.2f}  {past.title}  [{past.category}"
                     f"{' ' + past.resource if past.resource else ''}]  resolved "
                     f"{past.resolved_at.isoformat().replace('+00:00', 'Z')}, {past.resolution}{step}, "
                     f"fix {HELD_WORDS.get(past.fix_held, 'not verified')}")
        for reason, share in zip(past.reasons, past.parts.values(), strict=True):
            lines.append(f"   - {reason} (+{share:.2f})")
        if past.note:
            lines.append(f"   note: {past.note}")
    return lines


def cmd_incidents_similar(args: argparse.Namespace) -> int:
    from bot.cli import CliError, _with_database
    from bot.db.engine import reading
    from bot.postmortem.facts import NoSuchIncident
    from bot.postmortem.memory import MIN_SCORE, similar

    try:
        incident_id = parse_reference(args.incident)
    except ValueError as exc:
        raise CliError(str(exc), code=2) from None
    if not 1 <= args.limit <= MAX_LIMIT:
        raise CliError(f"--limit must be between 1 and {MAX_LIMIT}, not {args.limit}", code=2)

    def rank(factory):
        with reading(factory) as session:
            return similar(session, incident_id, limit=args.limit)
    try:
        found = _with_database(rank)
    except NoSuchIncident as exc:
        raise CliError(str(exc), code=2) from None
    reference = f"INC-{incident_id}"
    if args.json:
        print(json.dumps({"incident": reference, "min_score": MIN_SCORE,
                          "similar": [past.as_dict() for past in found]}, indent=2))
    else:
        print("\n".join(ranking_lines(reference, found)))
    return 0
