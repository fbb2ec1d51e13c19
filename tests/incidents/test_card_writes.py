from bot.incidents.thread import NOTE_DUE, CardTarget, _choose_write

POSTED = CardTarget("C1", "1.000")


def test_one_write_per_sync_in_a_fair_order():
    assert _choose_write(CardTarget("C1", None), True, "note", {"new_firing": 1}) == "card", "first post"
    assert _choose_write(POSTED, True, "note", {"new_firing": 1}) == "card", "the card goes first"
    assert _choose_write(POSTED, True, "note", {"new_firing": 1, NOTE_DUE: True}) == "note", "then the note"
    assert _choose_write(POSTED, False, "note", {"new_firing": 1}) == "note"
    assert _choose_write(POSTED, True, None, {}) == "card"
    assert _choose_write(POSTED, False, None, {}) == "none"
