"""A scenario's world for remediation tests: its cluster behind the sandbox API server, a real
Prometheus holding its metrics and scraping the sandbox's live state, and the bot at the
scenario's clock with the policies (and runbooks) a test gives."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
import requests

from bot.runtime import REPO
from bot.sandbox import slack_signing
from bot.sandbox.kube import KubeApiServer, SandboxCluster
from bot.sandbox.kube.state_metrics import StateMetricsServer
from bot.sandbox.scenario import Scenario
from bot.sandbox.scenario_alerts import webhook_body
from bot.sandbox.scenario_metrics import load_metrics_into
from bot.sandbox.scenario_time import scenario_clock
from tests.conftest import SIGNING_SECRET, RunningBot, make_settings, serve_on

ALICE, BOB, MALLORY = "U0ALICE", "U0BOB", "U0MALLORY"
POLICY = """
id: test
approver_groups:
  oncall: {users: [U0ALICE, U0BOB]}
freeze_managers: [oncall]
blast_radius: {max_pods: 50, max_replica_factor: 2.0}
"""


@dataclass
class World:
    bot: RunningBot
    cluster: SandboxCluster
    scenario: Scenario
    slack: object
    kube: KubeApiServer | None = None  # its API server, for injected faults

    def deliver(self) -> None:
        assert self.bot.post_webhook("alertmanager", webhook_body(self.scenario)).status_code == 202

    def thread(self) -> list[dict]:
        roots = [m for m in self.slack.messages() if "thread_ts" not in m]
        return self.slack.thread(roots[0]["channel"], roots[0]["ts"]) if roots else []

    def proposals(self) -> list[dict]:
        return [m for m in self.thread()[1:] if "Runbook `" in str(m.get("blocks"))]

    def proposal(self, runbook: str, timeout: float = 30) -> dict:
        return self.slack.wait_for(lambda _: next((m for m in self.proposals() if f"`{runbook}`" in str(m["blocks"])),
                                                  None), timeout=timeout)

    def writes(self) -> list:
        """Mutating requests that changed something (dry runs left out)."""
        return [m for m in self.cluster.mutations if not m.dry_run]

    def ephemeral_to(self, user: str) -> list[str]:
        return [c.args.get("text", "") for c in self.slack.calls_to("chat.postEphemeral") if c.args.get("user") == user]

    def click(self, message: dict, action_id: str, user: str) -> requests.Response:
        button = next(e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
                      if e["action_id"] == action_id)
        return self.post_interaction(block_actions(message, button, user))

    def post_interaction(self, payload: dict) -> requests.Response:
        body, headers = slack_signing.interaction(SIGNING_SECRET, payload)
        return requests.post(f"{self.bot.url}/slack/interactions", data=body, headers=headers, timeout=10)

    def command(self, text: str, user: str) -> requests.Response:
        body, headers = slack_signing.slash_command(SIGNING_SECRET, text=text, user_id=user)
        return requests.post(f"{self.bot.url}/slack/commands", data=body, headers=headers, timeout=10)

    def wait_status(self, runbook: str, words: str, timeout: float = 30) -> dict:
        return self.slack.wait_for(lambda _: next((m for m in self.proposals() if f"`{runbook}`" in str(m["blocks"])
                                                   and words in m["blocks"][0]["text"]["text"]), None),
                                   timeout=timeout)


def block_actions(message: dict, button: dict, user: str) -> dict:
    return {"type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": "T0EMULATOR"},
            "api_app_id": "A0OPSBOT", "team": {"id": "T0EMULATOR", "domain": "emulator"},
            "channel": {"id": message["channel"], "name": "incidents"},
            "container": {"type": "message", "message_ts": message["ts"], "channel_id": message["channel"],
                          "is_ephemeral": False},
            "message": {k: v for k, v in message.items() if k in ("ts", "text", "blocks", "type")},
            "trigger_id": slack_signing.new_trigger_id(), "response_url": "http://127.0.0.1:9/unused",
            "actions": [{"type": "button", "action_id": button["action_id"], "block_id": "b",
                         "value": button["value"], "action_ts": f"{time.time():.6f}"}]}


@pytest.fixture
def world(database_url, slack, engine, prometheus_factory, tmp_path) -> Iterator:  # noqa: F811
    """world(scenario, policy=POLICY, runbooks={name: yaml text}, prometheus=True, replicas=1, **settings)."""
    stack = ExitStack()

    def start(scenario: Scenario, policy: str = POLICY, runbooks: dict[str, str] | None = None,
              prometheus: bool = True, replicas: int = 1, **overrides) -> World:
        policies_dir, runbooks_dir = tmp_path / "policies", tmp_path / "runbooks"
        policies_dir.mkdir(exist_ok=True)
        (policies_dir / "test.yaml").write_text(policy)
        shutil.copytree(REPO / "runbooks", runbooks_dir, dirs_exist_ok=True)
        for name, text in (runbooks or {}).items():
            (runbooks_dir / f"{name}.yaml").write_text(text)
        cluster = SandboxCluster(now=scenario.now)
        cluster.load(scenario.cluster.objects, scenario.cluster.events,
                     [stream.model_dump() for stream in scenario.cluster.logs])
        kube = stack.enter_context(KubeApiServer(cluster))
        prometheus_url = overrides.pop("prometheus_url", None)  # e.g. one that refuses connections
        if prometheus:
            state = stack.enter_context(StateMetricsServer(cluster))
            prom = prometheus_factory(start=False, scrape_configs=[{
                "job_name": "sandbox-state", "scrape_interval": "1s", "static_configs": [{"targets": [state.target]}]}])
            load_metrics_into(prom, scenario)
            prom.start()
            prometheus_url = prom.url
        settings = make_settings(database_url, slack, kube_mode="url", kube_api_url=kube.base_url,
                                 prometheus_url=prometheus_url, policies_dir=policies_dir, runbooks_dir=runbooks_dir,
                                 **overrides)
        bot = serve_on(stack, settings, slack, clock=scenario_clock(scenario.now))
        for _ in range(replicas - 1):  # more replicas on the same database, cluster, Prometheus and Slack
            serve_on(stack, settings, slack, clock=scenario_clock(scenario.now))
        return World(bot, cluster, scenario, slack, kube)

    yield start
    stack.close()
