"""The catch-up message and the incident controls' modals: pure renderers, golden files, Block
Kit validity, and untrusted text kept inert."""

import json
from datetime import UTC, datetime

from bot.incidents.catchup import CatchUpView
from bot.slack.render import modals
from bot.slack.render.catchup import render_catchup
from tests.slack.test_card_render import check_golden, valid_blocks

VIEW = CatchUpView(
    reference="INC-7", title="KubePodCrashLooping: Pod is crash looping.", status="open", severity="high",
    commander="alice", acknowledged_by="bob",
    cause="bad_deploy on Deployment/shop/checkout: revision 12 panics on start",
    steps=["P-3 rollback-deployment on Deployment/shop/checkout: succeeded"],
    latest_update="Rolled back; error rate falling", latest_update_by="alice",
    latest_update_at=datetime(2026, 12, 7, 6, 30, tzinfo=UTC),
    follow_ups=[("F-1 alert on probe failures", "U0BOB"), ("F-2 add a canary stage", None)], open_follow_ups=3,
)


def test_catchup_golden():
    rendered = render_catchup(VIEW)
    check_golden("catchup_open", rendered)
    assert valid_blocks(rendered["blocks"])
    text = json.dumps(rendered)
    assert "<@U0BOB>" in text, "a follow-up's owner is mentioned"
    assert "and 1 more" in text, "open follow-ups beyond those listed are counted"


def test_catchup_of_a_fresh_incident_says_what_is_missing():
    bare = CatchUpView(reference="INC-8", title="t", status="resolved", severity="warning", commander=None,
                       acknowledged_by=None, cause="being investigated", resolved_by="source")
    text = render_catchup(bare)["blocks"][0]["text"]["text"]
    assert "resolved by source" in text and "nobody yet" in text and "*Steps:* none run" in text
    assert "*Open follow-ups:* none" in text


def test_untrusted_text_in_the_catchup_cannot_mention_or_link():
    hostile = CatchUpView(reference="INC-9", title="<!channel>", status="open", severity="high",
                          commander="<@U123>", acknowledged_by=None, cause="<https://evil.example|x>",
                          latest_update="ping <!here>", latest_update_by="m", follow_ups=[("F-1 <!everyone>", "nope")],
                          open_follow_ups=1)
    text = json.dumps(render_catchup(hostile))
    for raw in ("<!channel>", "<@U123>", "<https://evil", "<!here>", "<!everyone>"):
        assert raw not in text


def test_modals_carry_their_incident_and_channel_back():
    for view in (modals.resolve_modal(7, "INC-7 · <!channel> title", "C0OPSBOT"),
                 modals.update_modal(7, "INC-7 · title", "C0OPSBOT")):
        assert modals.read_metadata(view) == (7, "C0OPSBOT")
        assert "<!channel>" not in json.dumps(view)
    declare = modals.declare_modal("C0OPSBOT")
    assert modals.read_metadata(declare) == (None, "C0OPSBOT")
    check_golden("modal_resolve", modals.resolve_modal(7, "INC-7 · KubePodCrashLooping", "C0OPSBOT"))
    assert modals.read_metadata({"private_metadata": "not json"}) == (None, None)
    assert modals.read_metadata({"private_metadata": '{"incident": true, "channel": 5}'}) == (None, None)
