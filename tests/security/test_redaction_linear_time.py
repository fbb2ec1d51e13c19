"""Redaction stays linear on hostile text (issue 12, item 1): every exit redacts whatever a
log line or an alert annotation holds, so a pattern that backtracks would let one crafted
1 MB line stall a worker. By construction: no pattern nests an unbounded quantifier inside
another, and a key's prefix is never scanned (see `bot.redaction`); the 1 MB lines below
are the shapes that made the previous patterns scan once per position (hours each)."""

from __future__ import annotations

import re
from re import _constants as sre_constants  # the parser's opcodes, to read each pattern's structure
from re import _parser as sre_parser

import pytest

from bot import redaction
from bot.redaction import MASK, TEXT_PATTERNS, redact

ONE_MB = 1 << 20
_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT)
PATTERNS = {**{what: pattern for what, pattern, _ in TEXT_PATTERNS},
            "private key block": redaction._KEY_BLOCK, "private key END": redaction._KEY_END,
            "private key line (reversed)": redaction._KEY_LINE_REVERSED}


def _children(op, av):
    if op in _REPEATS:
        return [av[2]]
    if op is sre_constants.SUBPATTERN:
        return [av[3]]
    if op is sre_constants.BRANCH:
        return av[1]
    if op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
        return [av[1]]
    if op is sre_constants.ATOMIC_GROUP:
        return [av]
    if op is sre_constants.GROUPREF_EXISTS:
        return [p for p in av[1:] if p is not None]
    return []


def nested_quantifiers(subpattern, inside_unbounded=False) -> list[str]:
    """Each repeat of more than one that sits inside an unbounded repeat."""
    found = []
    for op, av in subpattern:
        unbounded = op in _REPEATS and av[1] == sre_constants.MAXREPEAT
        if op in _REPEATS and av[1] > 1 and inside_unbounded:
            found.append(f"{op} {av[:2]}")
        for child in _children(op, av):
            found += nested_quantifiers(child, inside_unbounded or unbounded)
    return found


@pytest.mark.parametrize("what", sorted(PATTERNS))
def test_no_pattern_nests_an_unbounded_quantifier(what):
    pattern = PATTERNS[what]
    assert nested_quantifiers(sre_parser.parse(pattern.pattern, pattern.flags)) == [], what


HOSTILE_PIECES = [
    "a.", "eyJ-", "eyJaaaaaaaaa.", "xoxb-", "a://", "a://b:", "a://b:c@", "@", "x:", "p:", "_", "-", "'", '"', "\\",
    '\\"', "\\\\\\\"", "\\n", "password=", 'password="', "password='\\", 'password=\\"a ', 'password="a\\',
    "password ", 'password "', "with password ", "DB_PASS", "dbPass", "secret_key_base", "token_b64_",
    "authorization:\"", "Authorization: ", "cookie: a=", "bearer ", "AccountKey", "&sig", "ghp_", "AKIA", "AIza",
    "sk_live_", "hooks.slack.com/services/", "discord.com/api/webhooks/1/", "-----BEGIN PRIVATE KEY-----",
    "-----END PRIVATE KEY-----\n", "-----END A", "aB3", "\u00e9\u00e9",
]


@pytest.mark.timeout(120)  # a guard against a hang only; a linear pass over each line takes well under a second
@pytest.mark.parametrize("piece", HOSTILE_PIECES)
def test_a_hostile_megabyte_line_is_redacted_in_one_pass(piece):
    line = piece * (ONE_MB // len(piece))
    redacted = redact(line)
    assert redact(redacted) == redacted


def test_the_linear_patterns_still_mask_at_the_end_of_a_long_line():
    """A long key prefix or a long run before the secret does not hide it (nothing is
    bounded that a secret needs)."""
    prefix = "a." * 100_000
    assert redact(f"{prefix}db_password=Long-Pw-1") == f"{prefix}db_password={MASK}"
    assert re.search("Long-Pw-2", redact("eyJ-" * 50_000 + " postgres://app:Long-Pw-2@db/x")) is None
