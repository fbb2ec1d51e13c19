"""Who may merge incidents and flip the kill switch, straight from the policy."""

from __future__ import annotations

from bot.policy import roles
from bot.policy.model import Policy, combine

NONE: frozenset[str] = frozenset()


def test_merge_is_open_to_anyone_the_channels_and_actors_allow_until_merge_managers_are_set():
    assert roles.merge_refusal(Policy(), "U1", NONE, "C1") is None
    assert "channel C1" in roles.merge_refusal(Policy(channels=["C9"]), "U1", NONE, "C1")
    assert "may not act" in roles.merge_refusal(Policy(actors={"users": ["U2"]}), "U1", NONE, "C1")
    assert roles.merge_refusal(Policy(actors={"groups": ["sre"]}), "U1", frozenset({"sre"}), "C1") is None
    restricted = Policy(merge_managers=["leads"])
    assert "merge managers (leads)" in roles.merge_refusal(restricted, "U1", frozenset({"sre"}), "C1")
    assert roles.merge_refusal(restricted, "U1", frozenset({"leads"}), "C1") is None
    assert "(none configured)" in roles.merge_refusal(Policy(merge_managers=[]), "U1", frozenset({"x"}), None)


def test_a_file_that_does_not_set_merge_managers_never_lifts_another_files_restriction():
    assert combine([Policy(id="a", merge_managers=["leads"]), Policy(id="b")]).merge_managers == ["leads"]
    assert combine([Policy(id="a"), Policy(id="b", merge_managers=["leads"])]).merge_managers == ["leads"]
    assert combine([Policy(id="a", merge_managers=["x"]), Policy(id="b", merge_managers=["y"])]).merge_managers \
        == ["x", "y"]
    assert combine([Policy(id="a"), Policy(id="b")]).merge_managers is None


def test_freezing_needs_a_freeze_manager_and_none_configured_means_nobody():
    assert roles.freeze_refusal(Policy(freeze_managers=["oncall"]), frozenset({"oncall"})) is None
    assert "freeze managers (oncall)" in roles.freeze_refusal(Policy(freeze_managers=["oncall"]), frozenset({"x"}))
    assert "(none configured)" in roles.freeze_refusal(Policy(), frozenset({"oncall"}))
