"""Our expansion of the values notation equals promtool's own (`promtool test rules`).

Every case becomes an input series of one rule unit test; at each step ``last_over_time(s[30s])``
sees exactly the sample written for that step (none for ``_`` and ``stale``: range selectors drop
staleness markers), and nothing one step after the last sample. promtool is the judge.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
import yaml

from bot.sandbox.paths import shared_scenarios_dir
from bot.sandbox.promvalues import Stale, expand_values
from bot.sandbox.scenario import load_scenarios

pytestmark = pytest.mark.prometheus

CASES = [
    "1+1x3",
    "1x3",
    "5-1x2",
    "-1-1x2",
    "+1 -2 .5 1e3 2.5E-1",
    "_",
    "_x3 4",
    "_x0 1",
    "1x0",
    "0x60",
    "2+1e1x2",
    "1 _ stale 3",
    "1 stale stale 2",
    "Inf -Inf +inf",
    "Inf+1x2",
    "0+0.25x8 3-0.5x4",
    "1x2 _x2 5+5x2 _ 9",
]

REJECTED = ["1 x3", "1+1 x3", "1x", "1+x3", "0x1F", "1x3.5", "1,2", "__", "_+1x2", "1--1x2", "1e", "Infx1"]


def run_promtool(
    promtool: str, folder: Path, document: dict[str, object]
) -> subprocess.CompletedProcess[str]:
    path = folder / "test.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=120, check=False
    )


def rule_test(notations: list[str]) -> dict[str, object]:
    """One unit test: series case_value{case="i"} per notation, one check per minute."""
    expansions = [expand_values(n) for n in notations]
    steps = max(len(e) for e in expansions) + 1
    checks = []
    for step in range(steps):
        samples = []
        for index, values in enumerate(expansions):
            value = values[step] if step < len(values) else None
            if value is None or isinstance(value, Stale):
                continue
            assert not math.isnan(value), "promtool cannot compare NaN: keep NaN out of the cases"
            samples.append({"labels": f'case_value{{case="{index}"}}', "value": value})  # keeps __name__
        checks.append(
            {"expr": "last_over_time(case_value[30s])", "eval_time": f"{step}m", "exp_samples": samples}
        )
    return {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'case_value{{case="{i}"}}', "values": notation}
                    for i, notation in enumerate(notations)
                ],
                "promql_expr_test": checks,
            }
        ],
    }


def test_expansion_matches_promtool(promtool_binary: str, tmp_path: Path) -> None:
    result = run_promtool(promtool_binary, tmp_path, rule_test(CASES))
    assert result.returncode == 0, (result.stdout + result.stderr)[:3000]
    assert "SUCCESS" in result.stdout


def test_shared_scenario_values_match_promtool(promtool_binary: str, tmp_path: Path) -> None:
    scenarios = load_scenarios([shared_scenarios_dir()])
    notations = sorted({s.values for sc in scenarios if sc.metrics for s in sc.metrics.series})
    assert len(notations) > 20
    result = run_promtool(promtool_binary, tmp_path, rule_test(notations))
    assert result.returncode == 0, (result.stdout + result.stderr)[:3000]


def test_a_wrong_expansion_would_be_caught(promtool_binary: str, tmp_path: Path) -> None:
    """The harness itself can fail: claim `1x3` has three samples and promtool objects."""
    document = rule_test(["1x3"])
    checks = document["tests"][0]["promql_expr_test"]  # type: ignore[index]
    checks[3]["exp_samples"] = []
    result = run_promtool(promtool_binary, tmp_path, document)
    assert result.returncode != 0


@pytest.mark.parametrize("notation", REJECTED)
def test_rejected_by_both(promtool_binary: str, tmp_path: Path, notation: str) -> None:
    with pytest.raises(ValueError):
        expand_values(notation)
    document = {
        "rule_files": [],
        "tests": [
            {"interval": "1m", "input_series": [{"series": "x", "values": notation}], "promql_expr_test": []}
        ],
    }
    result = run_promtool(promtool_binary, tmp_path, document)
    assert result.returncode != 0
    assert "parse error" in result.stdout + result.stderr
