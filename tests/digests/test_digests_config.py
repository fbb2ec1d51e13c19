"""The digests file: the README's example loads as documented, and a bad file names every problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.digests.config import DigestsConfigError, load_digests

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_example_is_a_valid_digests_file(tmp_path):
    text = README.read_text()
    example = re.search(r"The digests file \(`OPSBOT_DIGESTS_FILE`.*?```yaml\n(.*?)```", text, re.S).group(1)
    path = tmp_path / "digests.yaml"
    path.write_text(example)
    config = load_digests(path)
    assert [s.digest for s in config.schedules] == ["drift", "credentials", "cost", "database"]
    assert config.drift.sources[0].namespace == "shop" and config.cost.prices.vcpu_hour == 0.031
    assert config.base_dir == tmp_path
    weekdays = config.schedules[0].trigger()
    assert "mon,tue,wed,thu,fri" in str(weekdays)


def test_every_problem_is_one_line_naming_its_field(tmp_path):
    path = tmp_path / "digests.yaml"
    path.write_text("schedules:\n  - {digest: drfit, channel: C1}\n  - {digest: cost, channel: C1, cron: '61 * * * *'}\n"
                    "cost: {lookback_days: 0, price: 3}\n")
    with pytest.raises(DigestsConfigError) as raised:
        load_digests(path)
    problems = raised.value.problems
    assert any("schedules.0.digest" in p for p in problems)
    assert any("schedules.1" in p and "cron" in p for p in problems)
    assert any("cost.lookback_days" in p for p in problems) and any("cost.price" in p for p in problems)
    assert all("\n" not in p for p in problems)


def test_no_file_means_no_schedules_and_defaults(tmp_path):
    config = load_digests(None)
    assert config.schedules == [] and config.credentials.within_days == 21
    with pytest.raises(DigestsConfigError, match="cannot read"):
        load_digests(tmp_path / "missing.yaml")
