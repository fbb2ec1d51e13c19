"""`opsbot demo`: replay one incident scenario end to end and print the Slack thread.

Everything is real and local: the scenario's cluster is served by the sandbox API server and
read back through the real `kubernetes` client, its metrics are backfilled into a real
Prometheus, its alerts go through a real Alertmanager to the bot's webhook, and the thread
lands in the Slack emulator. Prometheus also scrapes the sandbox's live state (its
kube-state-metrics), so a step's verification reads what the cluster shows after the step. The
bot runs with the shipped default policy, its on-call approver group filled in with the
emulator's @oncall user group. With --auto-approve the incident then runs to resolution
(`bot.sandbox.demo_flow`): Approve clicked by an on-call member, the step verified, the alert
resolved at Alertmanager, the postmortem awaited. Nothing listens beyond loopback; all state
lives in a temporary directory that is removed afterwards (unless --keep).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.sandbox.paths import shared_scenarios_dir
from bot.sandbox.scenario import Scenario, ScenarioError, load_scenario
from bot.sandbox.scenario_alerts import alerts_for_alertmanager
from bot.sandbox.scenario_bot import start_scenario_bot

DEFAULT_SCENARIO = "orders-api-revision-22-panics-on-start.yaml"
WAIT_SECONDS = 60
SCRAPE_INTERVAL = "1s"  # the sandbox's live state, as verification reads it


@dataclass
class Replay:
    """What a replay leaves: the thread as printed, and the sandbox cluster as it ended."""

    thread: str
    cluster: Any  # bot.sandbox.kube.SandboxCluster


def _step(message: str) -> None:
    print(f"▸ {message}", flush=True)


def _describe_cluster(api_client, scenario: Scenario) -> str:
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    pods = core.list_pod_for_all_namespaces().items
    events = core.list_event_for_all_namespaces().items
    kinds = Counter(obj.get("kind", "?") for obj in scenario.cluster.objects)
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    warnings = sum(1 for event in events if event.type == "Warning")
    return f"{summary}; read back {len(pods)} pods and {len(events)} events ({warnings} Warning)"


def replay(scenario: Scenario, workdir: Path, auto_approve: bool = False) -> Replay:
    """Run the replay (with `auto_approve`, to resolution); raises RuntimeError with one line."""
    from bot.sandbox.demo_flow import AutoApprove, write_demo_policy
    from bot.sandbox.kube import KubeApiServer, SandboxCluster, sandbox_api_client
    from bot.sandbox.kube.state_metrics import StateMetricsServer
    from bot.sandbox.promstack import (
        AlertmanagerProcess,
        BinaryMissing,
        PrometheusProcess,
        find_binary,
        webhook_config,
    )
    from bot.sandbox.scenario_metrics import load_metrics_into
    from bot.sandbox.slack_emulator import SlackEmulator
    from bot.sandbox.thread_text import thread_text

    stack: list = []
    try:
        cluster = SandboxCluster(now=scenario.now)
        cluster.load(scenario.cluster.objects, scenario.cluster.events,
                     [stream.model_dump() for stream in scenario.cluster.logs])
        kube = KubeApiServer(cluster)
        kube_url = kube.start()
        stack.append(kube.stop)
        _step(f"sandbox cluster {scenario.cluster.name or ''} at {kube_url}: "
              + _describe_cluster(sandbox_api_client(kube_url), scenario))

        state = StateMetricsServer(cluster)
        state.start()
        stack.append(state.stop)
        try:
            prometheus = PrometheusProcess(workdir / "prometheus", scrape_configs=[{
                "job_name": "kube-state-metrics", "scrape_interval": SCRAPE_INTERVAL,
                "static_configs": [{"targets": [state.target]}]}])
            samples = load_metrics_into(prometheus, scenario)
            prometheus.start()
            stack.append(prometheus.stop)
            _step(f"Prometheus at {prometheus.url}: {samples} samples backfilled "
                  f"from {len(scenario.metrics.series) if scenario.metrics else 0} series; "
                  f"scraping the sandbox's live state every {SCRAPE_INTERVAL}")
            find_binary("alertmanager")
        except BinaryMissing as exc:
            raise RuntimeError(f"{exc} (./scripts/demo installs it)") from None

        slack = SlackEmulator()
        slack.start()
        stack.append(slack.stop)
        token = "demo-webhook-token"
        policy = write_demo_policy(workdir / "policies")
        runtime, bot_url = start_scenario_bot(scenario, workdir, stack.append, slack_url=slack.base_url,
                                              slack_token="xoxb-emulator", webhook_token=token, kube_url=kube_url,
                                              prometheus_url=prometheus.url, policies_dir=policy.parent)
        _step(f"opsbot at {bot_url} (SQLite in {workdir}), Slack emulator at {slack.base_url}")

        alertmanager = AlertmanagerProcess(workdir / "alertmanager",
                                           webhook_config(f"{bot_url}/webhooks/alertmanager", bearer_token=token))
        alertmanager.start()
        stack.append(alertmanager.stop)
        alerts = alerts_for_alertmanager(scenario)
        alertmanager.post_alerts(alerts)
        _step(f"Alertmanager at {alertmanager.url}: {len(alerts)} alert(s) posted; waiting for the thread")
        try:
            slack.wait_for(lambda emu: emu.messages(), timeout=WAIT_SECONDS)
        except TimeoutError:
            raise RuntimeError(f"no incident card in Slack after {WAIT_SECONDS}s") from None
        (root, *_) = slack.messages()
        _step("incident card posted; investigating (Kubernetes, logs, Prometheus)")
        try:
            slack.wait_for(lambda emu: any("Root cause analysis" in str(m.get("blocks"))
                                           for m in emu.thread(root["channel"], root["ts"])), timeout=WAIT_SECONDS)
        except TimeoutError:
            raise RuntimeError(f"no RCA in the thread after {WAIT_SECONDS}s") from None
        if auto_approve:
            AutoApprove(scenario, runtime, bot_url, slack, alertmanager, prometheus.url, _step).run(root)
        else:
            time.sleep(2.5)  # the graph and evidence files follow the RCA message
        return Replay(thread_text(slack.thread(root["channel"], root["ts"])), cluster)
    finally:
        for stop in reversed(stack):
            stop()


def run_demo(scenario_path: Path | None, keep: bool = False, auto_approve: bool = False) -> int:
    path = scenario_path or shared_scenarios_dir() / DEFAULT_SCENARIO
    if not path.exists():
        print(f"opsbot demo: scenario {path} not found (is ../shared beside the clone? "
              "set OPSBOT_SHARED_DIR or pass --scenario)", file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        print(f"opsbot demo: {exc}", file=sys.stderr)
        return 2
    from bot.logs import configure_logging

    configure_logging("WARNING", "text")
    workdir = Path(tempfile.mkdtemp(prefix="opsbot-demo-"))
    print(f"opsbot demo: replaying {scenario.id}\n  {scenario.title}\n", flush=True)
    started = time.monotonic()
    try:
        thread = replay(scenario, workdir, auto_approve=auto_approve).thread
    except RuntimeError as exc:
        print(f"opsbot demo: {exc}", file=sys.stderr)
        return 1
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\nThe Slack thread opsbot produced:\n")
    print(thread, flush=True)
    print(f"\n(the demo took {time.monotonic() - started:.0f} s)")
    if keep:
        print(f"\n(state kept in {workdir}; `OPSBOT_DATABASE_URL=sqlite:///{workdir / 'opsbot.sqlite3'} opsbot "
              "explain INC-1` explains the incident from it, as /ops explain does)")
    return 0


def run_web_demo(scenario_arg: str | None, port: int, keep: bool = False) -> int:
    """`opsbot demo --web`: the stack of `bot.sandbox.web_demo` with the page on `port`, until
    SIGINT/SIGTERM; then every part is stopped and the temporary directory removed (unless --keep).
    `scenario_arg`: a file, or a name that `opsbot demo --list` shows."""
    from bot.sandbox.web_demo import WebDemo, available_scenarios, serve_until_stopped

    path = Path(scenario_arg) if scenario_arg else shared_scenarios_dir() / DEFAULT_SCENARIO
    if scenario_arg and not path.exists() and scenario_arg in available_scenarios():
        path = available_scenarios()[scenario_arg]
    if not path.exists():
        print(f"opsbot demo: scenario {path} not found (`opsbot demo --list` shows the ones available)",
              file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        print(f"opsbot demo: {exc}", file=sys.stderr)
        return 2
    from bot.logs import configure_logging

    configure_logging("WARNING", "text")
    workdir = Path(tempfile.mkdtemp(prefix="opsbot-web-demo-"))
    print(f"opsbot demo --web: {scenario.id}\n  {scenario.title}\n  (state in {workdir})\n", flush=True)
    demo = WebDemo(scenario, workdir, port, _step)
    try:
        try:
            url = demo.start()
        except (RuntimeError, OSError, ValueError) as exc:  # a part did not start, or the scenario did not load
            print(f"opsbot demo: {exc}", file=sys.stderr)
            return 1
        serve_until_stopped(url)
        print("opsbot demo: stopping", flush=True)
    finally:
        demo.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("opsbot demo: stopped" + (f"; state kept in {workdir}" if keep else ""), flush=True)
    return 0
