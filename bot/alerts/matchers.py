"""Label matchers in Prometheus' syntax (`name="v"`, `!=`, `=~`, `!~`), for silences.

A matcher set such as `alertname="KubeCPUOvercommit",namespace=~"dev-.*"` matches an alert
when every matcher does. Regexes are anchored, as in Prometheus. Parsing errors name the
offending text, so a bad silence stops start-up with a clear line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = re.fullmatch(self.value, actual) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True)
class MatcherSet:
    text: str
    matchers: tuple[Matcher, ...]

    def matches(self, labels: dict[str, str]) -> bool:
        return all(matcher.matches(labels) for matcher in self.matchers)


def parse_matchers(text: str) -> MatcherSet:
    """Parse `a="x",b=~"y.*"` (braces optional); raise ValueError naming the problem."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    matchers, position = [], 0
    while position < len(body):
        found = _MATCHER.match(body, position)
        if not found:
            raise ValueError(f"cannot parse matcher at '{body[position:position + 30]}' in {text!r}")
        name, op, raw, _ = found.groups()
        value = re.sub(r'\\(["\\])', r"\1", raw)  # only \" and \\ are escapes; keep UTF-8 as is
        if op in {"=~", "!~"}:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regex {value!r} in {text!r}: {exc}") from None
        matchers.append(Matcher(name, op, value))
        position = found.end()
    if not matchers:
        raise ValueError(f"empty matcher set {text!r}")
    return MatcherSet(text, tuple(matchers))
