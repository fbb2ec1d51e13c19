"""The postmortem from database facts only: a real incident from alert to approved, verified
rollback to resolution (signed Slack click, sandbox cluster, real Prometheus), then its facts,
its Markdown and `opsbot postmortem`."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bot.db.engine import reading
from bot.db.models import Incident
from bot.postmortem.facts import NoSuchIncident, postmortem_facts
from bot.postmortem.markdown import TemplateProblem, duration, render_markdown
from tests.context.sandbox import shared
from tests.remediation.world import ALICE, world  # noqa: F401 - fixture

pytestmark = pytest.mark.prometheus


def _resolved_body(w) -> bytes:
    from bot.sandbox.scenario_alerts import webhook_body

    body = json.loads(webhook_body(w.scenario))
    body["status"] = "resolved"
    for alert in body["alerts"]:
        alert["status"], alert["endsAt"] = "resolved", alert["startsAt"]
    return json.dumps(body).encode()


def test_a_bot_mitigated_incident_has_its_times_actions_and_numbers_from_the_database(world, tmp_path):
    w = world(shared("orders-api-revision-22-panics-on-start"))
    w.deliver()
    message = w.proposal("rollback-deployment")
    assert w.click(message, "step_approve", ALICE).status_code == 200
    w.wait_status("rollback-deployment", "succeeded", timeout=60)
    assert w.bot.post_webhook("alertmanager", _resolved_body(w)).status_code == 202

    def resolved():
        with reading(w.bot.runtime.factory) as session:
            return session.execute(select(Incident.status)).scalar_one() == "resolved"
    w.slack.wait_for(lambda _: resolved(), timeout=30)
    with reading(w.bot.runtime.factory) as session:
        facts = postmortem_facts(session, 1)
        incident = session.get(Incident, 1)
        assert facts["times"]["resolved"] == incident.resolved_at.isoformat().replace("+00:00", "Z")
    assert facts["resolution"] == "bot-mitigated"
    assert facts["root_cause"]["category"] == "bad_deploy"
    assert facts["root_cause"]["resource"] == "Deployment/orders/orders-api"
    (action,) = facts["actions"]
    assert (action["runbook"], action["status"], action["approvers"]) == ("rollback-deployment", "succeeded", [ALICE])
    assert action["policy"] == "allow" or action["policy"]
    assert "before" in action["verification"] and "after" in action["verification"]
    durations = facts["durations"]
    assert durations["ttd"] is not None and durations["ttm"] is not None and durations["ttr"] is not None
    assert durations["ttd"] <= durations["ttm"] <= durations["ttr"], "diagnosed, then mitigated, then resolved"
    kinds = [e["kind"] for e in facts["timeline"]]
    assert kinds[0] == "incident.opened" and "remediation.succeeded" in kinds and "incident.resolved" in kinds
    text = render_markdown(facts)
    for words in ("# Postmortem INC-1", "bot-mitigated", "**bad_deploy** on `Deployment/orders/orders-api`",
                  "`rollback-deployment`", f"approved by {ALICE}", "## Timeline (UTC)"):
        assert words in text, words


def test_the_template_is_the_teams_and_a_broken_one_is_a_clear_error(tmp_path):
    facts = {"incident": "INC-3", "title": "t"}
    own = tmp_path / "mine.md.j2"
    own.write_text("Incident {{ pm.incident }}: {{ pm.title }}\n")
    assert render_markdown(facts, own) == "Incident INC-3: t\n"
    broken = tmp_path / "broken.md.j2"
    broken.write_text("{{ pm.nothing_like_this }}\n")
    with pytest.raises(TemplateProblem, match="broken.md.j2"):
        render_markdown(facts, broken)
    assert (duration(None), duration(42), duration(600), duration(5400)) == ("—", "42 s", "10 min", "1 h 30 min")


def test_an_unknown_incident_is_a_clear_error(engine):
    from bot.db.engine import make_session_factory

    with reading(make_session_factory(engine)) as session, pytest.raises(NoSuchIncident, match="INC-99"):
        postmortem_facts(session, 99)
