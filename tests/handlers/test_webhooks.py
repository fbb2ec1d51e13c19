"""The Alertmanager webhook through the running HTTP server, workers and Slack emulator."""

import base64
import json

import pytest
import requests
from sqlalchemy import func, select

from bot.db.engine import unit_of_work
from bot.db.models import Incident, RawDelivery
from tests.payloads import am_alert, am_body


def count(bot, model):
    with unit_of_work(bot.runtime.factory) as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def cards(slack):
    return [message for message in slack.messages() if "INC-" in (message.get("text") or "")]


def test_a_delivery_becomes_a_card_and_a_second_updates_it_in_place(bot, slack):
    response = bot.post_webhook("alertmanager", am_body([am_alert(namespace="shop", pod="a", severity="warning")]))
    assert response.status_code == 202 and response.json()["status"] == "accepted"
    slack.wait_for(lambda emu: cards(emu))
    (card,) = cards(slack)
    assert "INC-1" in card["text"] and "shop" in card["text"]
    assert card["channel"] == "C0OPSBOT", "the channel name is resolved to its id"

    second = am_body([am_alert(namespace="shop", pod="a", severity="warning"),
                      am_alert(namespace="shop", pod="b", severity="critical")])
    assert bot.post_webhook("alertmanager", second).status_code == 202
    slack.wait_for(lambda emu: emu.calls_to("chat.update"))
    slack.wait_for(lambda emu: "2 firing / 2 total" in json.dumps(cards(emu)[0]["blocks"]))
    (card,) = cards(slack)
    assert "critical" in json.dumps(card["blocks"])
    roots = [call for call in slack.calls_to("chat.postMessage") if "thread_ts" not in call.args]
    assert len(roots) == 1, "the card is posted once, then updated"
    assert count(bot, Incident) == 1


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_bad_credentials_get_401_and_store_nothing(bot, token):
    response = bot.post_webhook("alertmanager", am_body([am_alert()]), token=token)
    assert response.status_code == 401
    assert "credentials" in response.json()["error"]
    assert count(bot, RawDelivery) == 0


def test_basic_auth_is_supported(database_url, slack, engine):
    from bot.runtime import build_runtime
    from bot.web import HttpServer, create_web_app
    from tests.conftest import make_settings

    runtime = build_runtime(make_settings(database_url, slack, webhook_token=None, webhook_basic_user="am",
                                          webhook_basic_password="pw"))
    server = HttpServer(create_web_app(runtime), "127.0.0.1", 0, threads=2)
    url = server.start()
    try:
        good = base64.b64encode(b"am:pw").decode()
        bad = base64.b64encode(b"am:nope").decode()
        post = lambda auth: requests.post(f"{url}/webhooks/alertmanager", data=am_body([am_alert()]),  # noqa: E731
                                          headers={"Authorization": auth}, timeout=5).status_code
        assert post(f"Basic {good}") == 202
        assert post(f"Basic {bad}") == 401
        assert post("Basic %%%") == 401
    finally:
        server.stop()
        runtime.close()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (json.dumps({"version": "4", "status": "firing", "alerts": []}).encode(), "groupKey"),
        (am_body([am_alert()]).replace(b'"firing"', b'"burning"', 1), "status"),
    ],
)
def test_malformed_or_wrong_shaped_bodies_get_400_naming_the_problem(bot, body, needle):
    response = bot.post_webhook("alertmanager", body)
    assert response.status_code == 400
    assert needle in response.json()["error"]
    assert count(bot, RawDelivery) == 0


def test_oversized_bodies_get_413(bot):
    limit = bot.runtime.settings.max_body_bytes
    response = bot.post_webhook("alertmanager", b"{" + b" " * limit + b"}")
    assert response.status_code == 413
    assert count(bot, RawDelivery) == 0


def test_unknown_sources_and_methods(bot):
    assert bot.post_webhook("nagios", b"{}").status_code == 404
    assert requests.get(f"{bot.url}/webhooks/alertmanager", timeout=5).status_code == 405


def test_health_readiness_and_metrics(bot, slack):
    assert requests.get(f"{bot.url}/healthz", timeout=5).json() == {"status": "ok"}
    assert requests.get(f"{bot.url}/readyz", timeout=5).json() == {"status": "ready"}
    bot.post_webhook("alertmanager", am_body([am_alert()]))
    bot.post_webhook("alertmanager", b"nope")
    slack.wait_for(lambda emu: cards(emu))
    metrics = requests.get(f"{bot.url}/metrics", timeout=5).text
    assert 'opsbot_webhook_requests_total{code="202",source="alertmanager"} 1.0' in metrics
    assert 'opsbot_webhook_requests_total{code="400",source="alertmanager"} 1.0' in metrics
    assert 'opsbot_incidents_opened_total{source="alertmanager"} 1.0' in metrics


def test_readyz_is_unavailable_until_the_schema_is_migrated(database_url, slack):
    from bot.runtime import build_runtime
    from bot.web import create_web_app
    from tests.conftest import make_settings

    runtime = build_runtime(make_settings(database_url, slack))
    try:
        response = create_web_app(runtime, with_slack=False).test_client().get("/readyz")
        assert response.status_code == 503
        assert "opsbot db upgrade" in response.get_json()["problem"]
    finally:
        runtime.close()


def test_a_grafana_delivery_becomes_a_card_linking_its_dashboard(bot, slack):
    from tests.alerts.test_grafana_parse import GRAFANA_BODY

    response = bot.post_webhook("grafana", json.dumps(GRAFANA_BODY))
    assert response.status_code == 202
    (card,) = slack.wait_for(lambda emu: cards(emu))
    blocks = json.dumps(card["blocks"])
    assert "CheckoutHighLatency" in card["text"] and "latency" in blocks
    assert "https://grafana.example/d/checkout?orgId=1|Dashboard" in blocks
    assert bot.post_webhook("grafana", json.dumps(GRAFANA_BODY), token="wrong").status_code == 401
