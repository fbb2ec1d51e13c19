"""`/ops risk` and `POST /api/deploy-check`: the same go / wait / no-go verdict with its reasons,
from open incidents, freezes and kill switches (SQLite and PostgreSQL, through signed slash
commands and HTTP), a rollout in progress (the sandbox API server through the real client) and
error-budget burn rates (the real Prometheus); every verdict recorded."""

from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import select

from bot.ask import risk
from bot.db.engine import reading
from bot.db.models import RiskCheck
from bot.sandbox import slack_signing
from bot.slack.render.risk import render_risk
from tests.conftest import SIGNING_SECRET, make_settings, serve_on
from tests.context.sandbox import shared
from tests.payloads import am_alert, am_body
from tests.slack.test_card_render import check_golden, valid_blocks

TOKEN = "deploy-gate-token"
SHOP = risk.Workload("Deployment", "shop", "checkout")


def start(database_url, slack, tmp_path, stack, policy: str = "id: test\n", **settings):
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    (folder / "test.yaml").write_text(policy)
    return serve_on(stack, make_settings(database_url, slack, policies_dir=folder, **settings), slack)


def gate(bot, body, token: str | None = TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(f"{bot.url}/api/deploy-check", data=data, headers=headers, timeout=30)


def ops(bot, text: str) -> requests.Response:
    body, headers = slack_signing.slash_command(SIGNING_SECRET, text=text, trigger_id=slack_signing.new_trigger_id())
    return requests.post(f"{bot.url}/slack/commands", data=body, headers=headers, timeout=30)


def checks(bot) -> list[RiskCheck]:
    with reading(bot.runtime.factory) as session:
        rows = list(session.execute(select(RiskCheck).order_by(RiskCheck.id)).scalars())
        for row in rows:
            session.expunge(row)
        return rows


@pytest.mark.parametrize("text", ["", "checkout", "pod/shop/x", "deploy/Shop/x", "deploy/shop/a/b", "deploy//x"])
def test_a_workload_must_be_named_properly(text):
    with pytest.raises(risk.RiskInputError, match="deploy/NAMESPACE/NAME"):
        risk.parse_workload(text)
    assert risk.parse_workload("shop/checkout") == SHOP
    assert risk.parse_workload("sts/db/postgres").ref == "StatefulSet/db/postgres"


def test_the_verdict_is_the_worst_finding():
    finding = risk.Finding
    assert risk.verdict_of([finding("a", "ok", ""), finding("b", "unknown", "")]) == "go"
    assert risk.verdict_of([finding("a", "ok", ""), finding("b", "wait", "")]) == "wait"
    assert risk.verdict_of([finding("a", "wait", ""), finding("b", "no-go", "")]) == "no-go"


def test_an_open_critical_incident_is_a_no_go_in_slack_and_for_the_pipeline(database_url, slack, engine,  # noqa: F811
                                                                            tmp_path):
    with ExitStack() as stack:
        bot = start(database_url, slack, tmp_path, stack, deploy_check_token=TOKEN)
        assert gate(bot, {"workload": "deploy/shop/checkout"}).json()["verdict"] == "go"
        body = am_body([am_alert(namespace="shop", service="checkout", severity="critical")])
        assert bot.post_webhook("alertmanager", body).status_code == 202
        slack.wait_for(lambda emu: emu.calls_to("chat.postMessage"), timeout=15)
        answer = gate(bot, {"workload": "deploy/shop/checkout"})
        assert answer.status_code == 200
        verdict = answer.json()
        assert verdict["verdict"] == "no-go" and verdict["workload"] == "Deployment/shop/checkout"
        reasons = {r["check"]: r for r in verdict["reasons"]}
        assert reasons["incidents"]["level"] == "no-go" and "INC-1 is open (critical)" in reasons["incidents"]["text"]
        assert reasons["alerts"]["level"] == "wait"
        assert reasons["rollout"]["level"] == "unknown" and reasons["error budget"]["level"] == "unknown"
        assert verdict["reasons"][0]["level"] == "no-go", "the worst reasons first"
        # the same question in Slack: the same verdict, privately, after the ack
        reply = ops(bot, "risk deploy/shop/checkout")
        assert reply.status_code == 200 and reply.text == ""
        (said,) = slack.wait_for(lambda emu: emu.ephemerals(), timeout=15)
        assert "No-go" in json.dumps(said["blocks"]) and "INC-1 is open" in json.dumps(said["blocks"])
        assert [(c.verdict, c.asked_by.split(":")[0]) for c in checks(bot)] == \
            [("go", "api"), ("no-go", "api"), ("no-go", "slack")]
        # every verdict is visible in /ops explain of the workload
        assert ops(bot, "explain deploy/shop/checkout").status_code == 200
        shown = slack.wait_for(lambda emu: [e for e in emu.ephemerals() if "Deploy checks" in json.dumps(e["blocks"])],
                               timeout=15)
        text = json.dumps(shown[0]["blocks"])
        assert "R-3" in text and "no-go, asked by slack:" in text and "R-1" in text


def test_bad_requests_change_nothing(database_url, slack, engine, tmp_path):  # noqa: F811
    with ExitStack() as stack:
        bot = start(database_url, slack, tmp_path, stack, deploy_check_token=TOKEN)
        assert gate(bot, {"workload": "deploy/shop/checkout"}, token=None).status_code == 401
        assert gate(bot, {"workload": "deploy/shop/checkout"}, token="wrong").status_code == 401
        assert gate(bot, b"{not json").status_code == 400
        bad = gate(bot, {"workload": "checkout"})
        assert bad.status_code == 400 and "deploy/NAMESPACE/NAME" in bad.json()["error"]
        assert gate(bot, {"workload": "deploy/shop/checkout", "cluster": 5}).status_code == 400
        usage = ops(bot, "risk")
        assert "Usage: `/ops risk deploy/NAMESPACE/NAME`" in usage.json()["text"]
        assert checks(bot) == []
    with ExitStack() as stack:
        off = start(database_url, slack, tmp_path, stack)
        answer = gate(off, {"workload": "deploy/shop/checkout"})
        assert answer.status_code == 404 and "OPSBOT_DEPLOY_CHECK_TOKEN" in answer.json()["error"]


def test_a_freeze_window_or_a_kill_switch_is_a_no_go(database_url, slack, engine, tmp_path):  # noqa: F811
    policy = ("id: test\nfreeze_managers: [oncall]\napprover_groups: {oncall: {users: [U0ALICE]}}\n"
              "freeze_windows:\n  - {id: all-day, cron: '* * * * *', namespaces: [shop], reason: release train}\n")
    with ExitStack() as stack:
        bot = start(database_url, slack, tmp_path, stack, policy=policy, deploy_check_token=TOKEN)
        frozen = gate(bot, {"workload": "deploy/shop/checkout"}).json()
        assert frozen["verdict"] == "no-go" and "change freeze all-day in force" in json.dumps(frozen)
        elsewhere = gate(bot, {"workload": "deploy/maps/tiles"}).json()
        assert elsewhere["verdict"] == "go"
        assert ops(bot, "freeze maps incident review").status_code == 200
        slack.wait_for(lambda emu: emu.ephemerals(), timeout=15)
        switched = gate(bot, {"workload": "deploy/maps/tiles"}).json()
        assert switched["verdict"] == "no-go" and "kill switch is on for namespace:maps" in json.dumps(switched)


def test_a_rollout_in_progress_is_read_from_the_cluster():
    from bot.sandbox.kube import KubeApiServer, SandboxCluster, sandbox_api_client

    scenario = shared("orders-api-revision-22-panics-on-start")  # revision 22 stuck: 1 of 3 updated
    cluster = SandboxCluster(now=scenario.now)
    cluster.load(scenario.cluster.objects, scenario.cluster.events, [s.model_dump() for s in scenario.cluster.logs])
    with KubeApiServer(cluster) as kube:
        client = lambda: sandbox_api_client(kube.base_url)  # noqa: E731 - a ClusterAccess-style factory
        (stuck,) = risk.rollout_findings(client, risk.Workload("Deployment", "orders", "orders-api"))
        assert stuck.level == "wait" and "rollout is in progress" in stuck.text
        (missing,) = risk.rollout_findings(client, risk.Workload("Deployment", "orders", "nope"))
        assert missing.level == "unknown" and "does not exist" in missing.text
    (down,) = risk.rollout_findings(lambda: sandbox_api_client("http://127.0.0.1:9"), SHOP, timeout_seconds=2)
    assert down.level == "unknown"


def _requests(now: int, error_ratio: float, hours: int = 7) -> str:
    """OpenMetrics counters for checkout: 10 requests/s, `error_ratio` of them 5xx, up to `now`."""
    lines = ["# TYPE http_requests counter"]
    for code, share in (("500", error_ratio), ("200", 1 - error_ratio)):
        for step in range(hours * 60 + 1):
            at = now - (hours * 60 - step) * 60
            lines.append(f'http_requests_total{{namespace="shop",service="checkout",code="{code}"}} '
                         f"{round(step * 60 * 10 * share, 3)} {at}")
    return "\n".join(lines) + "\n# EOF\n"


@pytest.mark.prometheus
@pytest.mark.parametrize("error_ratio, expected", [(0.05, "no-go"), (0.0001, "ok")])
def test_burn_rates_over_both_windows_come_from_prometheus(prometheus_factory, error_ratio, expected):
    now = int(datetime.now(UTC).timestamp()) - 30
    prom = prometheus_factory(openmetrics=_requests(now, error_ratio))
    found = risk.burn_findings(prom.url, SHOP, 0.999)
    assert [f.level for f in found] == [expected] if expected == "ok" else expected in [f.level for f in found]
    text = " ".join(f.text for f in found)
    assert ("50.0× over 1h" in text) if expected == "no-go" else ("1h 0.1×" in text)
    (none,) = risk.burn_findings(prom.url, risk.Workload("Deployment", "maps", "tiles"), 0.999)
    assert none.level == "unknown" and "no request metrics" in none.text


def test_risk_golden():
    verdict = risk.Verdict("Deployment/shop/checkout", "wait", (
        risk.Finding("rollout", "wait", "a rollout is in progress: 1 of 3 replicas updated"),
        risk.Finding("error budget", "unknown", "Prometheus is not configured: burn rates not checked"),
        risk.Finding("incidents", "ok", "no open incident on it, none resolved in the last 24 h"),
    ), datetime(2026, 12, 7, 10, 0, tzinfo=UTC), 12)
    rendered = render_risk(verdict)
    check_golden("risk_wait", rendered)
    assert valid_blocks(rendered["blocks"])


def test_the_slash_command_is_acked_before_a_slow_cluster_answers(database_url, slack, engine, tmp_path):  # noqa: F811
    """Kubernetes holds the read of the Deployment: Slack has its ack already, and the verdict
    follows once the cluster answers."""
    from bot.sandbox.kube import KubeApiServer, SandboxCluster

    scenario = shared("orders-api-revision-22-panics-on-start")
    cluster = SandboxCluster(now=scenario.now)
    cluster.load(scenario.cluster.objects, scenario.cluster.events, [s.model_dump() for s in scenario.cluster.logs])
    with ExitStack() as stack:
        kube = stack.enter_context(KubeApiServer(cluster))
        bot = start(database_url, slack, tmp_path, stack, kube_mode="url", kube_api_url=kube.base_url)
        hold = kube.hold("GET", "/apis/apps/v1/namespaces/orders/deployments/orders-api", seconds=30)
        reply = ops(bot, "risk deploy/orders/orders-api")
        assert reply.status_code == 200 and reply.text == "", "acked at once, answered later"
        assert hold.arrived.wait(15), "the verdict waits on the cluster"
        assert slack.ephemerals() == []
        hold.release()
        (said,) = slack.wait_for(lambda emu: emu.ephemerals(), timeout=15)
        assert "Wait" in json.dumps(said["blocks"]) and "rollout is in progress" in json.dumps(said["blocks"])


def test_an_open_incident_on_a_dependency_its_rcas_named_means_wait(engine):  # noqa: F811
    from datetime import timedelta

    from bot.db.engine import make_session_factory
    from tests.incidents.helpers import NOW, ingest_body, store_rca

    factory = make_session_factory(engine)
    past = ingest_body(factory, am_body([am_alert(namespace="shop", service="checkout")], group_key="a")).incident_id
    store_rca(factory, past, {"version": 1, "subject": "Deployment/shop/checkout", "owners": ["Deployment/shop/checkout"],
                              "hypotheses": [{"category": "dependency_unreachable", "resource": "Deployment/shop/checkout",
                                              "confidence": 0.8, "summary": "payments refuses connections",
                                              "facts": {"dependency": "payments.shop.svc:8080"}}]}, NOW)
    with reading(factory) as session:
        (nothing_open,) = risk.dependency_findings(session, SHOP)
    assert nothing_open.level == "ok" and "payments.shop.svc:8080" in nothing_open.text
    ingest_body(factory, am_body([am_alert(namespace="shop", service="payments", severity="critical")], group_key="b"),
                NOW + timedelta(minutes=5))
    with reading(factory) as session:
        (down,) = risk.dependency_findings(session, SHOP)
        (unknown,) = risk.dependency_findings(session, risk.Workload("Deployment", "maps", "tiles"))
    assert down.level == "wait" and "payments.shop.svc:8080, which it depends on, has INC-2 open" in down.text
    assert unknown.level == "unknown"
    assert risk._scope_of("Deployment/db/postgres", "shop") == ("db", "postgres")
    assert risk._scope_of("redis:6379", "shop") == ("shop", "redis") and risk._scope_of("api.example.com", "x") is None


def test_risk_is_refused_where_the_policy_does_not_show_incidents(database_url, slack, engine, tmp_path):  # noqa: F811
    with ExitStack() as stack:
        bot = start(database_url, slack, tmp_path, stack, policy="id: test\nchannels: [C0ELSEWHERE]\n")
        answer = ops(bot, "risk deploy/shop/checkout")
        assert "Not answered" in answer.json()["text"] and "C0OPSBOT" in answer.json()["text"]
        assert checks(bot) == [], "nothing asked, nothing recorded"
