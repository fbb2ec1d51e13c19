"""Issue 12, item 2: a step whose server was killed mid-write is recovered, never applied twice.

A real `python -m bot serve` process runs an approved rollback against the sandbox API server,
which holds the PATCH in flight (stored with its answer held, or held and then dropped unstored);
the test SIGKILLs the server during the hold and starts it again with a short step lease. The
restarted server must find the lapsed lease, judge the write against the intent recorded before
it, and go on: found applied → verified (succeeded), with one PATCH in all; not applied →
failed with a note, no PATCH at all. Either way a new step on the same Deployment is proposed,
not denied as "already running".
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, select

from bot.clock import utc_now
from bot.db.engine import make_session_factory, unit_of_work
from bot.db.models import Proposal, TimelineEntry
from bot.remediation import recovery
from bot.runtime import REPO
from bot.sandbox.kube import KubeApiServer, SandboxCluster
from bot.sandbox.kube.state_metrics import StateMetricsServer
from bot.sandbox.paths import shared_scenarios_dir
from bot.sandbox.scenario import Scenario
from bot.sandbox.scenario_io import read_single_document
from bot.sandbox.scenario_metrics import load_metrics_into
from tests.conftest import SIGNING_SECRET, WEBHOOK_TOKEN, RunningBot
from tests.remediation.test_approval_flow import VERIFY_NEVER_HOLDS
from tests.remediation.world import ALICE, BOB, POLICY, World
from tests.server_process import ServerProcess, leases_run_out

pytestmark = pytest.mark.prometheus
DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/orders/deployments/orders-api"
LEASE_SECONDS = 4


def scenario_now(name: str) -> Scenario:
    """The shared scenario at the real clock: the server process runs on real time."""
    path = shared_scenarios_dir() / f"{name}.yaml"
    document = {k: v for k, v in read_single_document(path, str(path)).items() if k != "now"}
    return Scenario.from_dict(document, clock=utc_now, path=path)


@dataclass
class Crash:
    server: ServerProcess
    replica: ServerProcess
    kube: KubeApiServer
    engine: Engine
    world: Callable[[], World]
    rollback: Callable[[], Proposal]
    proposal: Callable[[str], Proposal]
    recovered: Callable[[], list[dict]]


@pytest.fixture
def crash_world(database_url, engine, slack, prometheus_factory, tmp_path) -> Iterator:  # noqa: F811
    stack = ExitStack()
    scenario = scenario_now("orders-api-revision-22-panics-on-start")
    cluster = SandboxCluster(now=scenario.now)
    cluster.load(scenario.cluster.objects, scenario.cluster.events,
                 [stream.model_dump() for stream in scenario.cluster.logs])
    kube = stack.enter_context(KubeApiServer(cluster))
    state = stack.enter_context(StateMetricsServer(cluster))
    prom = prometheus_factory(start=False, scrape_configs=[{
        "job_name": "sandbox-state", "scrape_interval": "1s", "static_configs": [{"targets": [state.target]}]}])
    load_metrics_into(prom, scenario)
    prom.start()
    policies, runbooks = tmp_path / "policies", tmp_path / "runbooks"
    policies.mkdir()
    (policies / "test.yaml").write_text(POLICY)
    shutil.copytree(REPO / "runbooks", runbooks)
    (runbooks / "scale-and-check.yaml").write_text(VERIFY_NEVER_HOLDS)
    server = ServerProcess({
        "OPSBOT_DATABASE_URL": database_url, "OPSBOT_SLACK_API_URL": slack.base_url,
        "OPSBOT_SLACK_BOT_TOKEN": slack.bot_token, "OPSBOT_SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "OPSBOT_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "OPSBOT_KUBE_MODE": "url", "OPSBOT_KUBE_API_URL": kube.base_url,
        "OPSBOT_PROMETHEUS_URL": prom.url, "OPSBOT_POLICIES_DIR": str(policies),
        "OPSBOT_RUNBOOKS_DIR": str(runbooks), "OPSBOT_DATA_DIR": str(tmp_path / "data"),
        "OPSBOT_STEP_LEASE_SECONDS": str(LEASE_SECONDS), "OPSBOT_WORKER_POLL_SECONDS": "0.1",
        "OPSBOT_CARD_MIN_INTERVAL_SECONDS": "0", "OPSBOT_INTAKE_PROCESSES": "0", "OPSBOT_LOG_FORMAT": "text"},
        tmp_path)
    replica = ServerProcess(server.env, tmp_path, "replica")  # a second replica for the restart: one recovery
    stack.callback(server.stop)
    stack.callback(replica.stop)
    factory = make_session_factory(engine)

    def world() -> World:
        return World(RunningBot(None, server.url, slack), cluster, scenario, slack)  # type: ignore[arg-type]

    def proposal(runbook: str) -> Proposal:
        with unit_of_work(factory) as session:
            return session.execute(select(Proposal).where(Proposal.runbook_id == runbook)).scalar_one()

    def rollback() -> Proposal:
        return proposal("rollback-deployment")

    def recovered() -> list[dict]:
        with unit_of_work(factory) as session:
            return list(session.execute(select(TimelineEntry.payload)
                                        .where(TimelineEntry.kind == "remediation.recovered")).scalars())

    yield Crash(server, replica, kube, engine, world, rollback, proposal, recovered)
    stack.close()


def patches(w: World) -> list:
    return [m for m in w.writes() if m.verb == "patch" and m.kind == "Deployment" and m.name == "orders-api"]


def images(w: World) -> list[str]:
    deployment = w.cluster.get("Deployment", "orders", "orders-api")
    return [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]


def kill_during_the_patch(crash: Crash, when: str, replicas: int = 1) -> World:
    """Start, approve the rollback, SIGKILL while its PATCH is held, let the API server go on,
    restart (`replicas` servers at once, sharing the database)."""
    crash.server.start()
    w = crash.world()
    w.deliver()
    message = w.proposal("rollback-deployment", timeout=60)
    hold = crash.kube.hold("PATCH", DEPLOYMENT_PATH, when=when, seconds=30)
    assert w.click(message, "step_approve", ALICE).status_code == 200
    assert hold.arrived.wait(30), "the PATCH never came"
    crash.server.kill()
    hold.release()
    leases_run_out(crash.engine)  # its Slack write slot, if the kill landed in a message update
    stuck = crash.rollback()
    assert stuck.status == "running" and stuck.result.get("intent"), "killed mid-write, the intent on record"
    restarted = [crash.server, crash.replica][:replicas]
    for server in restarted:  # launched together: both race for the lapsed lease
        server.launch()
    for server in restarted:
        server.wait_ready()
    return crash.world()


def test_a_step_killed_after_its_write_landed_is_found_applied_and_verified(crash_world):
    w = kill_during_the_patch(crash_world, "after_write", replicas=2)
    done = w.wait_status("rollback-deployment", "succeeded", timeout=90)
    assert "found applied" in str(done["blocks"])
    assert len(patches(w)) == 1, "applied exactly once"
    assert images(w) == ["ghcr.io/northwind/orders-api:4.11.3"]
    assert crash_world.rollback().result["note"] == recovery.SETTLED[recovery.NOTES[("running", "applied")]]
    assert "verifying it now" not in str(done["blocks"]), "the note says what happened, not what is next"
    assert [e["found"] for e in crash_world.recovered()] == ["applied"], "two replicas, one recovery"
    no_longer_blocked(w)


def test_a_step_killed_before_its_write_landed_is_failed_with_a_note_and_not_retried(crash_world):
    w = kill_during_the_patch(crash_world, "before_write")
    done = w.wait_status("rollback-deployment", "failed", timeout=60)
    assert [e["found"] for e in crash_world.recovered()] == ["not_applied"]
    assert "was not applied" in str(done["blocks"]) and "not retried" in str(done["blocks"])
    assert patches(w) == [], "never applied, never retried"
    assert images(w) != ["ghcr.io/northwind/orders-api:4.11.3"]
    no_longer_blocked(w)


def test_a_rollback_after_a_failed_check_killed_mid_write_is_recovered_not_applied_again(crash_world):
    """`on_failure: rollback`: the undo's intent is recorded before its write, like any write."""
    crash = crash_world
    crash.server.start()
    w = crash.world()
    w.deliver()
    w.proposal("rollback-deployment", timeout=60)
    assert w.command("run INC-1 scale-and-check namespace=orders name=orders-api replicas=4", BOB).status_code == 200
    message = w.proposal("scale-and-check", timeout=30)
    hold = crash.kube.hold("PATCH", f"{DEPLOYMENT_PATH}/scale", when="after_write", seconds=60, skip=1)
    assert w.click(message, "step_approve", ALICE).status_code == 200
    assert hold.arrived.wait(60), "the rollback's scale never came"
    crash.server.kill()
    hold.release()
    leases_run_out(crash.engine)  # its Slack write slot, if the kill landed in a message update
    stuck = crash.proposal("scale-and-check")
    assert stuck.status == "rolling_back" and stuck.result.get("rollback_intent"), "the undo's intent on record"
    crash.server.start()
    done = w.wait_status("scale-and-check", "rolled back", timeout=60)
    assert "rollback was found applied" in str(done["blocks"])
    assert [m.body["spec"]["replicas"] for m in w.writes() if m.subresource == "scale"] == [4, 3], "undone once"
    assert [e["found"] for e in crash.recovered()] == ["applied"]


def no_longer_blocked(w: World) -> None:
    """A new step on the same Deployment is proposed, not denied as "already running"."""
    assert w.command("run INC-1 restart-deployment namespace=orders name=orders-api", BOB).status_code == 200
    message = w.proposal("restart-deployment", timeout=30)
    text = str(message["blocks"])
    assert "already running" not in text and "denied by policy" not in text
    assert "waiting for approval" in message["blocks"][0]["text"]["text"]
