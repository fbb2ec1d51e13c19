"""Prometheus notations used by scenario files: expanding values, series selectors, OpenMetrics.

Three pure helpers, no I/O:

- `expand_values` implements the expanding notation of `promtool test rules` input series,
  exactly as Prometheus 2.42's series-description grammar does (checked against promtool
  itself by the tests):

  ============  ==========================================  =====================
  item          meaning                                     ``1 …`` expands to
  ============  ==========================================  =====================
  ``a``         one sample                                  ``a``
  ``axn``       ``a`` repeated: n+1 samples                 ``1x3`` → 1 1 1 1
  ``a+bxn``     ``a`` then n values each ``b`` larger       ``1+1x3`` → 1 2 3 4
  ``a-bxn``     likewise downward                           ``5-1x2`` → 5 4 3
  ``_``         one missing sample                          ``None``
  ``_xn``       n missing samples (n, not n+1)              ``_x2`` → None None
  ``stale``     a staleness marker                          ``Stale.MARKER``
  ============  ==========================================  =====================

  Numbers may be signed, use exponents (``1e3``, ``-2.5E-1``, ``.5``) or be ``Inf``, ``+Inf``,
  ``-Inf`` and ``NaN`` in any letter case. As in promtool, ``Inf``/``NaN`` cannot carry a
  ``xn`` suffix directly (``Infx3`` is an error; ``Inf+0x3`` is fine), hexadecimal is refused
  (``0x60`` is ``0`` repeated), and ``stale`` cannot be repeated or incremented.

- `parse_series_selector` reads the ``metric{label="value",...}`` selector of an input series.

- `openmetrics_text` writes series as OpenMetrics text that ``promtool tsdb create-blocks-from
  openmetrics`` (2.42) accepts. promtool silently *drops* a sample that is older than or at the
  same time as the previous sample of its series, so every series is written contiguously and in
  strictly increasing time; families are contiguous, each under one ``# TYPE name unknown``
  line; the text ends with ``# EOF``. Missing samples are skipped. Staleness markers are skipped
  too: OpenMetrics has no way to express them (``NaN`` is an ordinary value, not the special
  stale NaN), so a backfilled series simply ends and PromQL's 5-minute lookback applies.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "MAX_SAMPLES_PER_SERIES",
    "STALE",
    "Sample",
    "SeriesSamples",
    "Stale",
    "escape_label_value",
    "expand_values",
    "format_float",
    "openmetrics_text",
    "parse_series_selector",
]

MAX_SAMPLES_PER_SERIES = 1_000_000
"""Upper bound on one expanded series, so that a typo such as ``1x100000000`` fails fast."""


class Stale(enum.Enum):
    """A Prometheus staleness marker (``stale`` in the notation). `STALE` is its only value."""

    MARKER = "stale"

    def __repr__(self) -> str:
        return "STALE"


STALE = Stale.MARKER

Sample = float | None | Stale
"""One expanded sample: a float (possibly NaN or ±Inf), ``None`` when missing, or `STALE`."""

# Unsigned decimal number as Prometheus' lexer reads it in series descriptions (no hex).
_UNUM = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_SPECIAL = r"(?i:inf|nan)"
_ITEM = re.compile(
    rf"""
    (?P<blank>_)(?:x(?P<blank_n>\d+))?
  | (?P<stale>stale)
  | (?P<special>[+-]?{_SPECIAL})(?:(?P<sp_sign>[+-])(?P<sp_step>{_UNUM})x(?P<sp_n>\d+))?
  | (?P<num>[+-]?{_UNUM})(?:(?:(?P<sign>[+-])(?P<step>{_UNUM}))?x(?P<n>\d+))?
    """,
    re.VERBOSE,
)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t", "r": "\r", "`": "`"}


def _float(text: str) -> float:
    """Parse a number token the way Go's strconv.ParseFloat would (Inf/NaN in any case)."""
    return float(text)


def expand_values(notation: str | int | float, *, max_samples: int = MAX_SAMPLES_PER_SERIES) -> list[Sample]:
    """Expand promtool's series-values notation into one entry per sample.

    Items are separated by whitespace. Raises ValueError naming the offending item (and its
    1-based position) when an item does not parse, or when the expansion would exceed
    ``max_samples``. An int or float (YAML may hand one over for ``values: 5``) is one sample.
    """
    if isinstance(notation, bool):
        raise ValueError(f"expected a values string such as '1+1x10', got {notation!r}")
    if isinstance(notation, int | float):
        return [float(notation)]
    if not isinstance(notation, str):
        raise ValueError(f"expected a values string such as '1+1x10', got {type(notation).__name__}")
    out: list[Sample] = []
    for position, item in enumerate(notation.split(), start=1):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise ValueError(
                f"bad values item {item!r} (item {position}): expected a number, 'a+bxn', 'a-bxn', "
                "'axn', '_', '_xn' or 'stale'"
            )
        groups = match.groupdict()
        count = _count(groups, item, position)
        if len(out) + count > max_samples:
            raise ValueError(f"values item {item!r} (item {position}) expands beyond {max_samples} samples")
        if groups["blank"]:
            out.extend([None] * count)
        elif groups["stale"]:
            out.append(STALE)
        else:
            special = groups["special"] is not None
            start = _float(groups["special"] if special else groups["num"])
            sign = groups["sp_sign"] if special else groups["sign"]
            step_text = groups["sp_step"] if special else groups["step"]
            step = 0.0 if step_text is None else _float(step_text)
            if sign == "-":
                step = -step
            value = start
            out.append(value)
            for _ in range(count - 1):
                value += step  # accumulate exactly as promtool does (not start + i*step)
                out.append(value)
    return out


def _count(groups: dict[str, str | None], item: str, position: int) -> int:
    """How many samples an item produces: ``_xn`` gives n, ``axn``/``a+bxn`` give n+1."""
    if groups["blank"]:
        return 1 if groups["blank_n"] is None else int(groups["blank_n"])
    if groups["stale"]:
        return 1
    n = groups["sp_n"] if groups["special"] is not None else groups["n"]
    return 1 if n is None else int(n) + 1


@dataclass(frozen=True)
class SeriesSamples:
    """One series ready for backfilling: samples as (unix milliseconds, sample)."""

    name: str
    labels: Mapping[str, str]
    samples: Sequence[tuple[int, Sample]] = field(default_factory=tuple)


def parse_series_selector(selector: str) -> tuple[str, dict[str, str]]:
    """Parse ``metric{a="x",b='y'}`` (or ``{__name__="metric",...}``) into (name, labels).

    Only equality matchers are allowed; values are double-, single- or back-quoted with Go
    escapes (``\\"``, ``\\\\``, ``\\n``...). Labels with an empty value are dropped, as
    Prometheus drops them. Raises ValueError with the offending position.
    """
    if not isinstance(selector, str):
        raise ValueError(f"expected a series selector string, got {type(selector).__name__}")
    text = selector.strip()
    pos = 0
    name = ""
    match = _METRIC_NAME.match(text, pos)
    if match:
        name = match.group(0)
        pos = match.end()
    labels: dict[str, str] = {}
    pos = _skip_ws(text, pos)
    if pos < len(text):
        if text[pos] != "{":
            raise ValueError(f"unexpected {text[pos]!r} at offset {pos} in series selector {selector!r}")
        pos = _parse_label_set(text, pos + 1, labels, selector)
        pos = _skip_ws(text, pos)
        if pos != len(text):
            raise ValueError(f"unexpected {text[pos:]!r} after '}}' in series selector {selector!r}")
    if "__name__" in labels:
        from_label = labels.pop("__name__")
        if name and name != from_label:
            raise ValueError(
                f"series selector {selector!r} names the metric twice ({name!r}, {from_label!r})"
            )
        name = from_label
    if not name or not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"series selector {selector!r} has no valid metric name")
    return name, {k: v for k, v in labels.items() if v != ""}


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def _parse_label_set(text: str, pos: int, labels: dict[str, str], selector: str) -> int:
    """Parse ``a="x", b="y"}`` starting after the brace; return the offset after ``}``."""
    while True:
        pos = _skip_ws(text, pos)
        if pos < len(text) and text[pos] == "}":
            return pos + 1
        match = _LABEL_NAME.match(text, pos)
        if not match:
            raise ValueError(f"expected a label name at offset {pos} in series selector {selector!r}")
        label = match.group(0)
        pos = _skip_ws(text, match.end())
        if text[pos : pos + 1] != "=" or text[pos : pos + 2] in ("==", "=~"):
            raise ValueError(
                f"label {label!r} in series selector {selector!r} must use '=' (input series are exact)"
            )
        pos = _skip_ws(text, pos + 1)
        value, pos = _parse_quoted(text, pos, selector)
        if label in labels:
            raise ValueError(f"label {label!r} appears twice in series selector {selector!r}")
        labels[label] = value
        pos = _skip_ws(text, pos)
        if text[pos : pos + 1] == ",":
            pos += 1
        elif text[pos : pos + 1] != "}":
            raise ValueError(f"expected ',' or '}}' at offset {pos} in series selector {selector!r}")


def _parse_quoted(text: str, pos: int, selector: str) -> tuple[str, int]:
    quote = text[pos : pos + 1]
    if quote not in ('"', "'", "`"):
        raise ValueError(f"expected a quoted label value at offset {pos} in series selector {selector!r}")
    pos += 1
    chars: list[str] = []
    while pos < len(text):
        ch = text[pos]
        if ch == quote:
            return "".join(chars), pos + 1
        if ch == "\\" and quote != "`":
            escaped = text[pos + 1 : pos + 2]
            if escaped not in _ESCAPES:
                raise ValueError(f"unknown escape '\\{escaped}' in series selector {selector!r}")
            chars.append(_ESCAPES[escaped])
            pos += 2
            continue
        chars.append(ch)
        pos += 1
    raise ValueError(f"unterminated label value in series selector {selector!r}")


def escape_label_value(value: str) -> str:
    """Escape a label value for the Prometheus/OpenMetrics text formats."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_float(value: float) -> str:
    """A float as the text formats write it: shortest round-trip form, ``NaN``, ``+Inf``, ``-Inf``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _format_timestamp(ms: int) -> str:
    """Unix milliseconds as OpenMetrics seconds (integer when exact, else 3 decimals)."""
    if ms % 1000 == 0:
        return str(ms // 1000)
    sign = "-" if ms < 0 else ""
    whole, frac = divmod(abs(ms), 1000)
    return f"{sign}{whole}.{frac:03d}"


def _labels_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def openmetrics_text(series: Iterable[SeriesSamples], *, metric_type: str = "unknown") -> str:
    """Render series as OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics``.

    Invariants of the output (each one is something promtool 2.42 needs or silently punishes):
    families are contiguous and introduced by one ``# TYPE`` line, in order of first appearance;
    every series is written as one run of samples in strictly increasing time (duplicates at the
    same millisecond keep the first); ``None`` and `STALE` samples are skipped; two entries
    for the same series are merged; the text ends with ``# EOF``. Raises ValueError for an
    invalid metric or label name, or a type other than ``unknown``/``gauge``.
    """
    if metric_type not in ("unknown", "gauge"):
        raise ValueError("metric_type must be 'unknown' or 'gauge' (counters need _total suffix rules)")
    families: dict[str, dict[tuple[tuple[str, str], ...], dict[int, float]]] = {}
    for entry in series:
        if not _METRIC_NAME.fullmatch(entry.name):
            raise ValueError(f"invalid metric name {entry.name!r}")
        for label in entry.labels:
            if not _LABEL_NAME.fullmatch(label) or label == "__name__":
                raise ValueError(f"invalid label name {label!r} on {entry.name}")
        key = tuple(sorted(entry.labels.items()))
        points = families.setdefault(entry.name, {}).setdefault(key, {})
        for ms, value in entry.samples:
            if value is None or isinstance(value, Stale):
                continue
            points.setdefault(int(ms), float(value))
    lines: list[str] = []
    for name, members in families.items():
        lines.append(f"# TYPE {name} {metric_type}")
        for key, points in members.items():
            label_text = _labels_text(dict(key))
            for ms in sorted(points):
                lines.append(f"{name}{label_text} {format_float(points[ms])} {_format_timestamp(ms)}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"
