import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from slack_sdk.models.blocks import Block

from bot.slack.limits import MAX_BLOCKS, fit_blocks
from bot.slack.render.card import IncidentCardView, render_card
from bot.slack.render.status import render_status

GOLDEN = Path(__file__).parent / "golden"
VIEW = IncidentCardView(
    reference="INC-7", title="KubePodCrashLooping: Pod is crash looping.", severity="critical", status="open",
    cluster="prod-eu-1", namespace="shop", service="checkout", alert_count=3, firing_count=2,
    links={"alertmanager": "http://am.example:9093", "runbook": "https://runbooks.example/crashloop"},
    created_at=datetime(2026, 11, 21, 10, 0, tzinfo=UTC), updated_at=datetime(2026, 11, 21, 10, 5, tzinfo=UTC),
)


def check_golden(name: str, rendered: dict) -> None:
    """Compare with the stored golden file; OPSBOT_UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / f"{name}.json"
    text = json.dumps(rendered, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("OPSBOT_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}: run with OPSBOT_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text()


def valid_blocks(blocks):
    for block in blocks:
        Block.parse(block).validate_json()
    return True


def test_card_golden():
    rendered = render_card(VIEW)
    check_golden("card_open", rendered)
    assert valid_blocks(rendered["blocks"])


def test_resolved_card_golden():
    check_golden("card_resolved", render_card(replace(VIEW, status="resolved", firing_count=0, resolved_by="source")))


def test_related_acknowledged_card_golden():
    view = replace(VIEW, incident_id=7, related_id=5, previous_id=2, acknowledged_by="Alice <!here>",
                   category="availability", links={**VIEW.links, "pagerduty": "https://acme.pagerduty.com/incidents/Q1"})
    rendered = render_card(view)
    check_golden("card_related", rendered)
    assert valid_blocks(rendered["blocks"])
    buttons = {element["action_id"]: element for element in rendered["blocks"][3]["elements"]}
    assert buttons["incident_merge"]["value"] == "7:5"
    assert "incident_ack" not in buttons, "acknowledged: no Acknowledge button"
    assert {"incident_resolve", "incident_take_command", "incident_update", "incident_severity"} <= set(buttons)
    assert "<!here>" not in json.dumps(rendered)


def test_the_card_shows_commander_and_latest_update_and_offers_controls_by_status():
    from datetime import datetime

    led = replace(VIEW, commander="Alice", latest_update="Rolled back; watching <!channel>",
                  latest_update_by="Bob", latest_update_at=datetime(2026, 12, 7, 6, 0, tzinfo=UTC))
    text = json.dumps(render_card(led))
    assert "*Commander*\\nAlice" in text and "Latest update" in text and "<!channel>" not in text
    actions = [b for b in render_card(led)["blocks"] if b["type"] == "actions"][0]["elements"]
    assert "incident_take_command" not in {e["action_id"] for e in actions}, "a commander leads it already"
    severity = next(e for e in actions if e["action_id"] == "incident_severity")
    assert severity["initial_option"]["value"] == f"{VIEW.incident_id}:{VIEW.severity}"
    resolved = render_card(replace(led, status="resolved", resolved_by="Alice"))
    (row,) = [b for b in resolved["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in row["elements"]] == ["incident_reopen"]
    assert "Resolved by Alice" in json.dumps(resolved)
    assert valid_blocks(resolved["blocks"])


def test_a_merged_card_says_where_and_offers_no_merge():
    rendered = render_card(replace(VIEW, status="merged", merged_into_id=5, related_id=5, incident_id=7))
    assert "Merged into INC-5" in json.dumps(rendered)
    assert not [block for block in rendered["blocks"] if block["type"] == "actions"]


def test_untrusted_label_values_cannot_mention_or_link():
    hostile = replace(VIEW, title="<!channel> click <https://evil.example|here>", namespace="<@U123>",
                      links={"runbook": "javascript:alert(1)", "source": "https://ok.example/a|b"})
    text = json.dumps(render_card(hostile))
    assert "<!channel>" not in text and "<@U123>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt;" in text
    assert "javascript:" not in text and "https://ok.example/a|b" not in text


def test_secrets_in_titles_are_redacted_on_the_card():
    text = json.dumps(render_card(replace(VIEW, title="db down: postgres://app:s3cret@db:5432/x")))
    assert "s3cret" not in text


def test_huge_values_stay_within_block_kit_limits():
    rendered = render_card(replace(VIEW, title="x" * 10_000, namespace="n" * 5000, service="s" * 5000))
    assert valid_blocks(rendered["blocks"])
    assert len(rendered["blocks"][0]["text"]["text"]) <= 150
    assert all(len(field["text"]) <= 2000 for field in rendered["blocks"][1]["fields"])


def test_fit_blocks_cuts_what_renderers_let_through():
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "y" * 5000}} for _ in range(60)]
    fitted = fit_blocks(blocks)
    assert len(fitted) == MAX_BLOCKS and "11 more blocks" in fitted[-1]["elements"][0]["text"]
    assert len(fitted[0]["text"]["text"]) == 3000
    assert valid_blocks(fitted)
    assert len(blocks[0]["text"]["text"]) == 5000, "the input is not modified"


@pytest.mark.parametrize("count", [0, 1, 25])
def test_status_lists_open_incidents(count):
    views = [replace(VIEW, reference=f"INC-{i}") for i in range(count)]
    rendered = render_status(views, total_open=count)
    assert valid_blocks(rendered["blocks"])
    text = rendered["blocks"][0]["text"]["text"]
    if count == 0:
        assert "No open incidents" in text
    else:
        assert "INC-0" in text and (count <= 20 or "and 5 more" in text)
