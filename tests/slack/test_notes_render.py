"""Thread notes (`bot.slack.render.notes`): what is also said in the channel, and what is not."""

from bot.slack.render.notes import note_is_loud, render_note


def test_only_a_raise_to_critical_reopening_and_a_persons_resolution_reach_the_channel():
    assert note_is_loud({"escalated": "critical"}) and note_is_loud({"reopened": True})
    assert note_is_loud({"resolved_here": "alice"}) and note_is_loud({"reopened_here": "bob"})
    assert not note_is_loud({"escalated": "high"}), "the card shows it; a storm must not flood the channel"
    assert not note_is_loud({"new_firing": 12, "resolved": 3})
    assert "Severity raised to *high*" in render_note({"escalated": "high"}, 12, 12)
