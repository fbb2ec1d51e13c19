"""The scenario suite itself, and `opsbot eval` over it: the diagnosis quality the issue asks
for, measured the way users measure it (a real Prometheus, the sandbox API server, the HTTP
intake, the Slack emulator), with no network and no API key."""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path

import pytest

from bot.eval.cli import run_eval
from bot.sandbox.paths import shared_scenarios_dir
from bot.sandbox.scenario import CATEGORIES, load_scenario

OURS = Path(__file__).resolve().parents[1] / "scenarios"


def test_our_suite_covers_every_category_at_least_twice():
    scenarios = [load_scenario(path) for path in sorted(OURS.glob("*.yaml"))]
    assert len(scenarios) >= 30
    counts = Counter(c for s in scenarios for c in ([s.expect.category] if isinstance(s.expect.category, str)
                                                      else s.expect.category[:1]))
    assert {category: counts[category] for category in CATEGORIES if counts[category] < 2} == {}
    assert len({s.id for s in scenarios}) == len(scenarios)


@pytest.mark.prometheus
def test_eval_reaches_the_targets_on_both_suites(prometheus_binary):
    out = io.StringIO()
    code = run_eval([OURS, shared_scenarios_dir()], jobs=2, out=out)
    text = out.getvalue()
    summary = re.search(r"eval: (\d+) scenarios, top1 (\d+)/\d+, top3 (\d+)/\d+, mentions (\d+)/\d+", text)
    assert code == 0 and summary, text
    total, top1, top3, mentions = map(int, summary.groups())
    assert top1 / total >= 0.9 and top3 == total and mentions / total >= 0.9, text
