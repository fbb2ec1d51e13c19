import json
from datetime import UTC, datetime

import pytest

from bot.alerts import alertmanager
from bot.alerts.model import PayloadError
from tests.payloads import am_alert, am_body, am_payload


def test_parses_a_v4_payload_and_keeps_alertmanagers_fingerprint():
    alert = am_alert(namespace="shop", pod="checkout-1", severity="critical")
    batch = alertmanager.parse(am_body([alert], group_key="g1"))
    assert batch.group_key == "g1" and batch.status == "firing" and batch.source == "alertmanager"
    (parsed,) = batch.alerts
    assert parsed.fingerprint == alert["fingerprint"]
    assert parsed.labels["pod"] == "checkout-1"
    assert parsed.starts_at == datetime(2026, 11, 21, 9, 55, tzinfo=UTC)
    assert parsed.ends_at is None, "Go's zero time means no end"
    assert batch.external_url.startswith("http://alertmanager")


def test_fingerprint_falls_back_to_a_hash_of_sorted_labels():
    one, two = am_alert(a="1", b="2"), am_alert(b="2", a="1")
    del one["fingerprint"], two["fingerprint"]
    first = alertmanager.parse(am_body([one])).alerts[0].fingerprint
    second = alertmanager.parse(am_body([two])).alerts[0].fingerprint
    other = am_alert(a="1", b="3")
    del other["fingerprint"]
    assert first == second != alertmanager.parse(am_body([other])).alerts[0].fingerprint


def test_unknown_fields_are_tolerated():
    payload = am_payload([am_alert()], somethingNew={"x": 1})
    payload["alerts"][0]["extra"] = "kept in the raw delivery"
    assert len(alertmanager.parse(json.dumps(payload).encode()).alerts) == 1


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.pop("groupKey"), "groupKey"),
        (lambda p: p.update(version="3"), "version"),
        (lambda p: p.update(alerts=[]), "alerts"),
        (lambda p: p["alerts"][0].update(status="burning"), "alerts.0.status"),
        (lambda p: p["alerts"][0]["labels"].pop("alertname"), "alertname"),
        (lambda p: p["alerts"][0].update(labels={"alertname": 5}), "alerts.0.labels.alertname"),
        (lambda p: p["alerts"][0].update(startsAt="yesterday"), "alerts.0.startsAt"),
        (lambda p: p["alerts"][0].update(startsAt="2026-11-21T09:55:00"), "alerts.0.startsAt"),
    ],
)
def test_wrong_shapes_name_the_field(mutate, message):
    payload = am_payload([am_alert()])
    mutate(payload)
    with pytest.raises(PayloadError, match=message.replace(".", r"\.")):
        alertmanager.parse(json.dumps(payload).encode())


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b"\xff\xfe", b'"text"'])
def test_malformed_bodies_are_refused(body):
    with pytest.raises(PayloadError):
        alertmanager.parse(body)


def test_deeply_nested_json_is_a_clear_400_not_a_crash():
    with pytest.raises(PayloadError, match="nested too deeply"):
        alertmanager.parse(b"[" * 100_000 + b"]" * 100_000)


def test_silence_matchers_keep_non_ascii_values():
    from bot.alerts.matchers import parse_matchers

    matchers = parse_matchers('team="café",msg="say \\"hi\\""')
    assert matchers.matches({"team": "café", "msg": 'say "hi"'})
