"""Who may merge incidents and flip the kill switch, straight from the policy."""

from __future__ import annotations

from bot.policy import roles
from bot.policy.model import Policy, combine

NONE: frozenset[str] = frozenset()


def test_merge_is_open_to_anyone_the_channels_and_actors_allow_until_merge_managers_are_set():
    assert roles.merge_refusal(Policy(), "U1", NONE, "C1") is None
    assert "channel C1" in roles.merge_refusal(Policy(channels=["C9"]), "U1", NONE, "C1")
    assert "no channel" in roles.merge_refusal(Policy(channels=["C9"]), "U1", NONE, None)
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


def test_a_file_that_leaves_a_setting_out_never_loosens_another_files():
    strict = Policy.model_validate({"id": "strict", "actors": {"users": ["U1"]}, "blast_radius": {"max_pods": 5},
                                    "concurrency_per_target": 1, "kill_switch": {"namespaces": ["prod"]}})
    extra = Policy.model_validate({"id": "extra", "freeze_managers": ["sre"], "kill_switch": {"runbooks": ["x"]}})
    for files in ([strict, extra], [extra, strict]):
        combined = combine(files)
        assert combined.actors.users == ["U1"] and combined.blast_radius.max_pods == 5
        assert (combined.kill_switch.namespaces, combined.kill_switch.runbooks) == (["prod"], ["x"])
        assert "may not act" in roles.merge_refusal(combined, "U2", NONE, None)
