"""Secrets in a bad rollout never leave the bot: the attack of issue 12, item 1, performed
through the running bot, the sandbox API server, the Slack emulator and the PagerDuty
emulator. The new revision of orders-api adds DB_PASSWORD, changes API_TOKEN, takes a key
from a Secret and changes its liveness probe's `X-Api-Key` header; its crashed pod printed a
password in prose, an escaped-JSON `db_password`, an `Authorization: Token` header, a PGP
private key block, and the shapes a review found next (a URL password holding '@', an escaped
quote inside a quoted password, `DB_PASS=`, an Azure `AccountKey`, a Slack webhook URL,
`secret_key_base`). Nothing of those values may reach
Slack (messages in every version, blocks, uploaded files), the PagerDuty note, the timeline or
the investigation row, while the RCA still says which variables changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.db.engine import unit_of_work
from bot.db.models import Incident, Investigation, TimelineEntry
from bot.sandbox.pagerduty_emulator import PagerDutyEmulator
from bot.sandbox.scenario import Scenario
from bot.sandbox.scenario_alerts import webhook_body
from bot.sandbox.scenario_time import scenario_clock
from tests.concurrency import eventually
from tests.conftest import make_settings, serve_on
from tests.context.sandbox import served, shared

WEBHOOK_SECRET = "whsec-secret-leaks"
SETTLE_SECONDS = 600
NEW_REVISION = "orders-api-wrvcn6pnr5"
CRASHED_POD = "orders-api-wrvcn6pnr5-mthr2"

SECRETS = {
    "DB_PASSWORD (added)": "hunter2-Pw-58713",
    "API_TOKEN (before)": "old-token-value-1111",
    "API_TOKEN (after)": "new-token-value-2222",
    "password in prose": "Sup3r-Prose-Pw",
    "password after 'with password'": "Unquoted-Pw-4471",
    "escaped JSON db_password": "Esc-Json-Pw-6620",
    "Authorization: Token": "Tok-Auth-0X77aa",
    "PGP key body": "PgpKeyBodySecretLine",
    "PGP key checksum": "=Pgp9",
    "URL password holding '@'": "ss-Url-7781",
    "escaped quote in a quoted password": "Esc-Quote-5512",
    "DB_PASS": "Db-Pass-3307",
    "Azure AccountKey": "QXp1cmUtOTkzMQ",
    "Slack webhook URL": "SlackHook4410abc",
    "secret_key_base": "Key-Base-6620",
    "probe header (before)": "Probe-Key-Old-1190",
    "probe header (after)": "Probe-Key-New-8812",
}
LEAKY_LOG_LINES = [
    '2026-09-03T16:16:58Z ERROR login failed for user "svc" with password "Sup3r-Prose-Pw"',
    "2026-09-03T16:16:58Z WARN retrying login with password Unquoted-Pw-4471",
    json.dumps({"level": "error", "msg": "config dump", "raw": json.dumps({"db_password": "Esc-Json-Pw-6620"})}),
    "2026-09-03T16:16:59Z DEBUG GET /internal/sync Authorization: Token Tok-Auth-0X77aa",
    "-----BEGIN PGP PRIVATE KEY BLOCK-----",
    "",
    "lQdGBGB1Y2sBEADPgpKeyBodySecretLine0001abcdefghijklmnopqrstuvwxyz01",
    "PgpKeyBodySecretLine0002ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefgh",
    "=Pgp9",
    "-----END PGP PRIVATE KEY BLOCK-----",
    "2026-09-03T16:17:00Z ERROR dial postgres://orders:P@ss-Url-7781@orders-db:5432/orders failed",
    json.dumps({"level": "error", "msg": "config", "password": 'q"Esc-Quote-5512'}),
    "2026-09-03T16:17:00Z INFO env DB_PASS=Db-Pass-3307 DB_HOST=orders-db",
    "2026-09-03T16:17:00Z INFO blob DefaultEndpointsProtocol=https;AccountName=orders;AccountKey=QXp1cmUtOTkzMQ==;"
    "EndpointSuffix=core.windows.net",
    "2026-09-03T16:17:00Z WARN notify https://hooks.slack.com/services/T0001/B0002/SlackHook4410abc failed",
    "2026-09-03T16:17:00Z DEBUG secret_key_base: Key-Base-6620",
]


def leaky_scenario() -> Scenario:
    """orders-api with secrets in its new revision's env and its crashed pod's log."""
    scenario = shared("orders-api-revision-22-panics-on-start").model_copy(deep=True)
    old_env = [{"name": "API_TOKEN", "value": SECRETS["API_TOKEN (before)"]}]
    new_env = [{"name": "API_TOKEN", "value": SECRETS["API_TOKEN (after)"]},
               {"name": "DB_PASSWORD", "value": SECRETS["DB_PASSWORD (added)"]},
               {"name": "PAYMENTS_KEY", "valueFrom": {"secretKeyRef": {"name": "payments", "key": "api-key"}}}]
    for obj in scenario.cluster.objects:
        name = obj["metadata"]["name"]
        if obj["kind"] in ("Deployment", "ReplicaSet") and name.startswith("orders-api"):
            container = obj["spec"]["template"]["spec"]["containers"][0]
            new = obj["kind"] == "Deployment" or name == NEW_REVISION
            container["env"] = [*container.get("env", []), *(new_env if new else old_env)]
            key = SECRETS["probe header (after)" if new else "probe header (before)"]
            container["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080, "httpHeaders": [
                {"name": "X-Api-Key", "value": key}]}}
        if obj["kind"] == "Pod" and name.startswith("orders-api-"):
            container = obj["spec"]["containers"][0]
            container["env"] = [*container.get("env", []), *(new_env if name.startswith(NEW_REVISION) else old_env)]
    for stream in scenario.cluster.logs:
        if stream.pod == CRASHED_POD and stream.previous:
            stream.lines[:0] = LEAKY_LOG_LINES
    return scenario


class SteppableScenarioClock:
    """The scenario's clock (advancing with the wall clock) plus what the test adds."""

    def __init__(self, scenario: Scenario) -> None:
        self._clock, self.offset = scenario_clock(scenario.now), timedelta(0)

    def __call__(self):
        return self._clock() + self.offset


@pytest.fixture
def pd() -> Iterator[PagerDutyEmulator]:
    with PagerDutyEmulator() as emulator:
        yield emulator


def recorded_slack(slack) -> str:
    """Everything the Slack emulator received: every call's arguments (each message version,
    blocks, ephemerals, views, file titles) and the uploaded files' contents."""
    calls = json.dumps([c.args for c in slack.calls], default=str)
    files = "\n".join(f["bytes"].decode("utf-8", "replace") for f in slack.files)
    return calls + "\n" + files


def rows(bot) -> tuple[str, str]:
    """(the timeline, the investigation rows) as JSON text."""
    with unit_of_work(bot.runtime.factory) as session:
        timeline = [e.payload for e in session.execute(select(TimelineEntry)).scalars()]
        investigations = [{"result": i.result, "error": i.error} for i in session.execute(select(Investigation))
                          .scalars()]
    return json.dumps(timeline, default=str), json.dumps(investigations, default=str)


def test_no_secret_of_a_bad_rollout_reaches_slack_pagerduty_the_timeline_or_the_investigation(
        database_url, slack, engine, pd, tmp_path):  # noqa: F811 - engine migrates the database
    scenario = leaky_scenario()
    clock = SteppableScenarioClock(scenario)
    ca = tmp_path / "pd-ca.pem"
    ca.write_bytes(pd.ca_file.read_bytes())
    with ExitStack() as stack:
        kube = stack.enter_context(served(scenario))
        settings = make_settings(
            database_url, slack, kube_mode="url", kube_api_url=kube, investigation_settle_seconds=SETTLE_SECONDS,
            pagerduty_webhook_secrets=[WEBHOOK_SECRET], pagerduty_routing_key=pd.routing_key,
            pagerduty_api_key=pd.api_token, pagerduty_from_email=pd.from_email,
            pagerduty_events_url=pd.events_url, pagerduty_rest_url=pd.rest_url, pagerduty_ca_file=ca)
        bot = serve_on(stack, settings, slack, clock=clock)
        pd.set_webhook(f"{bot.url}/webhooks/pagerduty", WEBHOOK_SECRET)
        assert bot.post_webhook("alertmanager", webhook_body(scenario)).status_code == 202

        def linked():
            with unit_of_work(bot.runtime.factory) as session:
                return session.get(Incident, 1) is not None and session.get(Incident, 1).pagerduty_incident_id
        pd_id = eventually(linked, timeout=30)  # linked before the RCA exists, so the RCA becomes a note
        clock.offset += timedelta(seconds=SETTLE_SECONDS + 1)
        bot.runtime.workers.wake()
        slack.wait_for(lambda emu: len(emu.files) == 1, timeout=60)
        (note,) = pd.wait_for(lambda emu: emu.notes(pd_id), timeout=30)

        sent = recorded_slack(slack)
        timeline, investigation = rows(bot)
        places = {"Slack": sent, "the PagerDuty note": note["content"], "the timeline": timeline,
                  "the investigation row": investigation}
        leaks = [f"{what} in {where}" for where, text in places.items() for what, value in SECRETS.items()
                 if value in text]
        assert leaks == [], leaks

        # the diff still says what changed, and where the new key comes from
        evidence = slack.files[0]["bytes"].decode()
        assert "containers[api].env.API_TOKEN" in evidence and "containers[api].env.DB_PASSWORD" in evidence
        assert "secretKeyRef payments/api-key" in evidence
        assert "containers[api].livenessProbe" in evidence and '"name":"X-Api-Key","value":"[REDACTED]"' in evidence
        assert "containers[api].env.ORDERS_FEATURE_SPLIT_SHIPMENTS: None -> 'true'" in evidence, \
            "a feature flag is plainly not secret"
        assert "-----BEGIN PGP PRIVATE KEY BLOCK-----" not in evidence
        rca = next(c.args for c in slack.calls_to("chat.postMessage") if "Root cause analysis" in str(c.args))
        assert "env.API_TOKEN" in str(rca["blocks"]) and "env.DB_PASSWORD added" in str(rca["blocks"])
