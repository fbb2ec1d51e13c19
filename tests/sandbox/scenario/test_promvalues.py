"""The promtool values notation, series selectors and OpenMetrics output (pure Python).

The same expansions are cross-checked against `promtool test rules` in
tests/sandbox/promstack/test_values_promtool.py.
"""

from __future__ import annotations

import math

import pytest

from bot.sandbox.promvalues import (
    STALE,
    SeriesSamples,
    Stale,
    expand_values,
    openmetrics_text,
    parse_series_selector,
)


@pytest.mark.parametrize(
    ("notation", "expected"),
    [
        ("1+1x3", [1, 2, 3, 4]),  # a followed by n values: n+1 in all
        ("1x3", [1, 1, 1, 1]),
        ("5-1x2", [5, 4, 3]),
        ("-1-1x2", [-1, -2, -3]),
        ("+1 -2 .5 1e3 2.5E-1", [1, -2, 0.5, 1000, 0.25]),
        ("_", [None]),
        ("_x3", [None, None, None]),  # blanks give n, not n+1
        ("_x0", []),
        ("1x0", [1]),
        ("0x60", [0] * 61),  # no hexadecimal in series descriptions
        ("2+1e1x2", [2, 12, 22]),
        ("1 _ stale 3", [1, None, STALE, 3]),
        ("  1\t2\n3  ", [1, 2, 3]),
        ("Inf -Inf +inf", [math.inf, -math.inf, math.inf]),
        ("Inf+1x2", [math.inf, math.inf, math.inf]),
        ("", []),
    ],
)
def test_expand_values(notation: str, expected: list[object]) -> None:
    assert expand_values(notation) == expected


def test_expand_values_nan_and_accumulation() -> None:
    (nan,) = expand_values("NaN")
    assert isinstance(nan, float) and math.isnan(nan)
    # promtool accumulates (v += step), it does not multiply; the float error shows it
    values = expand_values("0+0.1x10")
    expected, acc = [0.0], 0.0
    for _ in range(10):
        acc += 0.1
        expected.append(acc)
    assert values == expected
    assert values[-1] != 1.0


def test_scalar_from_yaml() -> None:
    assert expand_values(5) == [5.0]
    assert expand_values(2.5) == [2.5]


@pytest.mark.parametrize(
    ("notation", "bad_item"),
    [
        ("1 x3", "x3"),
        ("1+1 x3", "1+1"),
        ("1x", "1x"),
        ("1+x3", "1+x3"),
        ("0x1F", "0x1F"),
        ("1x3.5", "1x3.5"),
        ("1,2", "1,2"),
        ("__", "__"),
        ("_+1x2", "_+1x2"),
        ("1--1x2", "1--1x2"),
        ("1e", "1e"),
        ("Infx1", "Infx1"),
        ("stalex2", "stalex2"),
        ("1 2 three", "three"),
    ],
)
def test_bad_notation_names_the_item(notation: str, bad_item: str) -> None:
    with pytest.raises(ValueError) as caught:
        expand_values(notation)
    message = str(caught.value)
    assert repr(bad_item) in message
    assert "\n" not in message


def test_expansion_is_bounded() -> None:
    with pytest.raises(ValueError, match="expands beyond 100 samples"):
        expand_values("1x50 2x60", max_samples=100)


def test_stale_is_a_distinct_marker() -> None:
    assert STALE is Stale.MARKER
    assert STALE is not None and not isinstance(STALE, float)


@pytest.mark.parametrize(
    ("selector", "name", "labels"),
    [
        ("up", "up", {}),
        ("up{}", "up", {}),
        ('up{job="api",instance="10.0.0.1:443"}', "up", {"job": "api", "instance": "10.0.0.1:443"}),
        ('  foo:bar_total { a = "x" , b="y", } ', "foo:bar_total", {"a": "x", "b": "y"}),
        (
            r'm{a="q\"uote",b="back\\slash",c="new\nline"}',
            "m",
            {"a": 'q"uote', "b": "back\\slash", "c": "new\nline"},
        ),
        ("m{a='single',b=`raw\\n`}", "m", {"a": "single", "b": "raw\\n"}),
        ('{__name__="m",a="1"}', "m", {"a": "1"}),
        ('m{a="",b="1"}', "m", {"b": "1"}),  # empty label values mean "no such label"
        ('m{a="{},=x"}', "m", {"a": "{},=x"}),
    ],
)
def test_parse_series_selector(selector: str, name: str, labels: dict[str, str]) -> None:
    assert parse_series_selector(selector) == (name, labels)


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        ('m{a=~"x"}', "must use '='"),
        ('m{a!="x"}', "must use '='"),
        ('m{a="x",a="y"}', "appears twice"),
        ('m{a="x"', "expected ',' or '}'"),
        ('m{a="x}', "unterminated"),
        ("m{a=x}", "quoted label value"),
        ('{a="x"}', "no valid metric name"),
        ('m{1a="x"}', "label name"),
        ('m{a="x"} extra', "after '}'"),
        ('m{__name__="n"}', "names the metric twice"),
    ],
)
def test_bad_selector(selector: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        parse_series_selector(selector)
    assert fragment in str(caught.value)


def test_openmetrics_groups_families_sorts_and_skips() -> None:
    text = openmetrics_text(
        [
            SeriesSamples("b_metric", {"x": "1"}, ((2000, 2.0), (1000, 1.0), (3000, None), (4000, STALE))),
            SeriesSamples("a_metric", {}, ((1500, math.nan), (500, math.inf))),
            SeriesSamples("b_metric", {"x": 'q"\\\n'}, ((1000, -math.inf), (1000, 7.0))),
            SeriesSamples("b_metric", {"x": "1"}, ((5000, 5.0), (2000, 99.0))),  # same series again
        ]
    )
    assert text == (
        "# TYPE b_metric unknown\n"
        'b_metric{x="1"} 1.0 1\n'
        'b_metric{x="1"} 2.0 2\n'
        'b_metric{x="1"} 5.0 5\n'
        'b_metric{x="q\\"\\\\\\n"} -Inf 1\n'
        "# TYPE a_metric unknown\n"
        "a_metric +Inf 0.500\n"
        "a_metric NaN 1.500\n"
        "# EOF\n"
    )


def test_openmetrics_refuses_bad_names() -> None:
    with pytest.raises(ValueError, match="metric name"):
        openmetrics_text([SeriesSamples("1bad", {}, ((0, 1.0),))])
    with pytest.raises(ValueError, match="label name"):
        openmetrics_text([SeriesSamples("ok", {"bad-label": "x"}, ((0, 1.0),))])


def test_openmetrics_empty() -> None:
    assert openmetrics_text([]) == "# EOF\n"
