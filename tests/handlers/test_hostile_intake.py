"""Hostile webhook bodies through the running bot (HTTP, workers, database, Slack emulator):
text no database can store, a missing fingerprint, and times outside any real range. Each
is either refused at the door with a 400 naming the field, or cleaned and kept: never a 202
followed by a delivery that fails until it is given up (a lost alert), never a 500."""

from __future__ import annotations

import copy
import json

import pytest
from sqlalchemy import select

from bot.db.engine import unit_of_work
from bot.db.models import Alert, Incident, RawDelivery, TimelineEntry
from bot.sandbox.pagerduty_webhooks import incident_resource, signed, webhook_event
from tests.alerts.test_grafana_parse import GRAFANA_BODY
from tests.concurrency import eventually
from tests.handlers.test_intake_rules import configured_bot, roots  # noqa: F401 - fixture
from tests.handlers.test_pagerduty_intake import SECRET
from tests.payloads import am_alert, am_payload

LONE = "\ud800"  # json.dumps writes it as the escape "\ud800", as the attack sent it
REPLACED = "\ufffd"


def processed(bot) -> list[RawDelivery]:
    """Every delivery, once none is still waiting for (or being retried by) a worker."""
    def settled():
        with unit_of_work(bot.runtime.factory) as session:
            rows = list(session.execute(select(RawDelivery).order_by(RawDelivery.id)).scalars())
            session.expunge_all()
        return rows if rows and all(row.status in ("done", "failed") for row in rows) else None
    return eventually(settled, timeout=20)


def stored_alerts(bot) -> list[Alert]:
    with unit_of_work(bot.runtime.factory) as session:
        rows = list(session.execute(select(Alert).order_by(Alert.id)).scalars())
        session.expunge_all()
        return rows


def kinds(bot, incident_id: int = 1) -> list[str]:
    with unit_of_work(bot.runtime.factory) as session:
        return list(session.execute(select(TimelineEntry.kind).where(TimelineEntry.incident_id == incident_id)
                                    .order_by(TimelineEntry.seq)).scalars())


def _label(payload):
    payload["alerts"][0]["labels"]["team"] = f"pay{LONE}ments"


def _label_without_fingerprint(payload):  # the fingerprint is then computed from the labels: was a 500
    _label(payload)
    del payload["alerts"][0]["fingerprint"]


def _annotation(payload):  # was accepted with 202, then lost after five UnicodeEncodeErrors
    payload["alerts"][0]["annotations"]["summary"] = f"disk {LONE} full"


def _label_name(payload):
    payload["alerts"][0]["labels"][f"te{LONE}am"] = "payments"


def _group_key(payload):
    payload["groupKey"] = f"{{}}:{{alertname=\"X{LONE}\"}}"


@pytest.mark.parametrize("inject", [_label, _label_without_fingerprint, _annotation, _label_name, _group_key],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_lone_surrogate_is_replaced_and_the_alert_kept(bot, slack, inject):
    payload = am_payload([am_alert(namespace="shop", pod="web-1")])
    inject(payload)
    response = bot.post_webhook("alertmanager", json.dumps(payload))
    assert response.status_code == 202, response.text
    (delivery,) = processed(bot)
    assert (delivery.status, delivery.error) == ("done", None)
    (alert,) = stored_alerts(bot)
    stored = json.dumps([alert.labels, alert.annotations, alert.fingerprint], ensure_ascii=False)
    with unit_of_work(bot.runtime.factory) as session:
        stored += session.get(Incident, alert.incident_id).group_key
    assert LONE not in stored and REPLACED in stored
    slack.wait_for(roots, timeout=15)


def test_surrogate_pairs_control_characters_and_nul_escapes_are_stored_as_before(bot):
    summary = "fire \U0001f525 in\x00 the \x01\x1b[31mhole\u2028\ufffe"  # "\ud83d\udd25", "\u0000", "\u0001"...
    payload = am_payload([am_alert(namespace="shop", pod="web-1", annotations={"summary": summary})])
    assert bot.post_webhook("alertmanager", json.dumps(payload)).status_code == 202
    (delivery,) = processed(bot)
    assert (delivery.status, delivery.error) == ("done", None)
    (alert,) = stored_alerts(bot)
    assert alert.annotations["summary"] == summary.replace("\x00", ""), "only NUL is removed"


def test_grafana_and_pagerduty_bodies_are_cleaned_alike(configured_bot, slack):  # noqa: F811
    bot = configured_bot(pagerduty_webhook_secrets=[SECRET])
    grafana = copy.deepcopy(GRAFANA_BODY)
    grafana["alerts"][0]["labels"]["service"] = f"check{LONE}out"
    grafana["alerts"][0]["valueString"] = f"[ var='B' value={LONE} ]"
    del grafana["alerts"][0]["fingerprint"]
    assert bot.post_webhook("grafana", json.dumps(grafana)).status_code == 202
    event = webhook_event("incident.triggered", incident_resource("QSURR1", 3, f"Disk {LONE} full",
                                                                  incident_key=f"key{LONE}"))
    body, headers = signed(json.dumps(event).encode(), [SECRET])  # ASCII JSON: the escape as sent
    assert bot.post_webhook("pagerduty", body, token=None, headers=headers).status_code == 202
    assert [row.status for row in processed(bot)] == ["done", "done"]
    # the two deliveries may be processed in either order: the alerts are told apart by source
    by_source = {alert.source: alert for alert in stored_alerts(bot)}
    grafana_alert, pagerduty_alert = by_source["grafana"], by_source["pagerduty"]
    assert grafana_alert.labels["service"] == f"check{REPLACED}out"
    assert grafana_alert.annotations["value_string"] == f"[ var='B' value={REPLACED} ]"
    assert pagerduty_alert.name == f"Disk {REPLACED} full"
    assert pagerduty_alert.labels["pagerduty_dedup_key"] == f"key{REPLACED}"
    slack.wait_for(lambda emu: len(roots(emu)) == 2, timeout=15)


@pytest.mark.parametrize(("starts_at", "ends_at", "status"), [
    ("0001-01-02T00:00:00+23:59", "0001-01-01T00:00:00Z", "firing"),  # the attack; a zero endsAt as usual
    ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00Z", "firing"),  # past year 9999 in UTC
    ("2026-11-21T09:55:00Z", "9999-12-31T23:59:59-23:59", "resolved"),
    ("2026-11-21T09:55:00Z", "0001-01-02T00:00:00+23:59", "resolved"),
], ids=["year-1-start", "year-10000-start", "year-10000-end", "year-1-end"])
def test_alert_times_outside_any_real_range_are_read_as_unknown(bot, slack, starts_at, ends_at, status):
    alert = am_alert(namespace="shop", pod="web-1", status=status, starts_at=starts_at, ends_at=ends_at)
    response = bot.post_webhook("alertmanager", json.dumps(am_payload([alert])))
    assert response.status_code == 202, response.text
    (delivery,) = processed(bot)
    assert (delivery.status, delivery.error) == ("done", None)
    (stored,) = stored_alerts(bot)
    times = (stored.starts_at, stored.ends_at)
    assert None in times and all(t is None or t.year == 2026 for t in times)
    slack.wait_for(roots, timeout=15)


def test_a_year_one_alert_is_investigated_not_failed(configured_bot, slack):  # noqa: F811
    """Prometheus is configured (and down), so the investigation runs: with the year-1 start it
    failed three times with OverflowError and the thread said nothing."""
    bot = configured_bot(prometheus_url="http://127.0.0.1:9")
    alert = am_alert(namespace="shop", pod="web-1", starts_at="0001-01-02T00:00:00+23:59")
    assert bot.post_webhook("alertmanager", json.dumps(am_payload([alert]))).status_code == 202
    eventually(lambda: {"investigation.finished", "investigation.failed"} & set(kinds(bot)), timeout=30)
    assert "investigation.failed" not in kinds(bot)


def test_a_pagerduty_event_time_outside_any_real_range_is_refused_naming_it(configured_bot):  # noqa: F811
    bot = configured_bot(pagerduty_webhook_secrets=[SECRET])
    event = webhook_event("incident.resolved", incident_resource("QYEAR1", 4, "Disk full", status="resolved"),
                          occurred_at="0001-01-02T00:00:00+23:59")
    body, headers = signed(event, [SECRET])
    response = bot.post_webhook("pagerduty", body, token=None, headers=headers)
    assert response.status_code == 400 and "event.occurred_at" in response.json()["error"]
    with unit_of_work(bot.runtime.factory) as session:
        assert session.execute(select(RawDelivery)).first() is None
        assert session.execute(select(Incident)).first() is None
