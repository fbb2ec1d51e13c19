"""Replay one scenario through the whole bot and collect what it posted.

Everything is real and on loopback: the scenario's cluster is served by the sandbox API server
and read through the real `kubernetes` client, its metrics are backfilled into a real
Prometheus, its alerts arrive as one Alertmanager webhook at the bot's HTTP intake (the normal
intake: stored, grouped, an incident opened), and the RCA is read back from the Slack emulator
thread where the bot posted it. The bot's clock is the scenario's `now`.

A scenario whose alerts the intake screens out (a heartbeat) opens no incident: then the
engine is asked directly about those alerts, which is what the bot would say if asked
(`/ops explain`), and no time-to-RCA is measured.
"""

from __future__ import annotations

import logging
import secrets
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bot.sandbox.scenario import Scenario

log = logging.getLogger(__name__)
RCA_MARKER = "Root cause analysis"
DEFAULT_TIMEOUT_SECONDS = 60.0


@dataclass
class Outcome:
    scenario: Scenario
    path: Path
    report: dict[str, Any] | None = None
    rca_text: str = ""
    seconds_to_rca: float | None = None
    incident_opened: bool = False
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    proposed: list[str] = field(default_factory=list)  # runbook ids the bot proposed

    @property
    def hypotheses(self) -> list[dict[str, Any]]:
        return list((self.report or {}).get("hypotheses") or [])


def _rca_message(slack, started_at: float) -> tuple[dict | None, float | None]:
    """The RCA reply in the incident thread and when the emulator received it."""
    roots = slack.messages()
    if not roots:
        return None, None
    root = roots[0]
    for message in slack.thread(root["channel"], root["ts"])[1:]:
        if RCA_MARKER in str(message.get("blocks") or ""):
            call = next((c for c in slack.calls_to("chat.postMessage")
                         if c.ok and c.response.get("ts") == message["ts"]), None)
            return message, (call.at - started_at) if call else None
    return None, None


def _direct_report(scenario: Scenario, kube_url: str, prometheus_url: str) -> dict[str, Any]:
    from bot.context.clusters import ClusterAccess, _url_client
    from bot.context.gather import gather
    from bot.context.model import AlertView
    from bot.diagnosis.engine import diagnose
    from bot.diagnosis.report import build_report

    alerts = [AlertView(a.labels.get("alertname", ""), a.status, dict(a.labels), dict(a.annotations), a.starts_at,
                        a.ends_at) for a in scenario.alerts]
    ctx = gather(alerts, scenario.now, ClusterAccess(scenario.cluster.name, _url_client(kube_url), prometheus_url),
                 cluster=scenario.cluster.name)
    return build_report(ctx, diagnose(ctx))


def run_scenario(scenario: Scenario, path: Path, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 poll_seconds: float = 0.05) -> Outcome:
    """Replay `scenario`; a failure of the replay itself is reported in `Outcome.error`.
    `poll_seconds` is the bot's worker poll interval (production's default is 0.5)."""
    try:
        return _replay(scenario, path, timeout, poll_seconds)
    except Exception as exc:  # noqa: BLE001 - one broken replay must not stop the others
        log.exception("replay of %s failed", scenario.id)
        return Outcome(scenario, path, error=f"the replay failed: {type(exc).__name__}: {exc}"[:300])


def _replay(scenario: Scenario, path: Path, timeout: float, poll_seconds: float) -> Outcome:
    from sqlalchemy import select

    from bot.db.engine import reading
    from bot.db.models import Incident, Investigation, Proposal, RawDelivery, TimelineEntry
    from bot.diagnosis.report import rca_text
    from bot.sandbox.kube import KubeApiServer, SandboxCluster
    from bot.sandbox.promstack import PrometheusProcess
    from bot.sandbox.scenario_alerts import webhook_body
    from bot.sandbox.scenario_bot import start_scenario_bot
    from bot.sandbox.scenario_metrics import load_metrics_into
    from bot.sandbox.slack_emulator import SlackEmulator
    from bot.sandbox.thread_text import message_text

    outcome = Outcome(scenario, path)
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="opsbot-eval-")))
        cluster = SandboxCluster(now=scenario.now)
        cluster.load(scenario.cluster.objects, scenario.cluster.events,
                     [stream.model_dump() for stream in scenario.cluster.logs])
        kube = stack.enter_context(KubeApiServer(cluster))
        prometheus = PrometheusProcess(workdir / "prometheus")
        load_metrics_into(prometheus, scenario)
        prometheus.start()
        stack.callback(prometheus.stop)
        slack = stack.enter_context(SlackEmulator())
        token = secrets.token_hex(8)
        runtime, url = start_scenario_bot(scenario, workdir / "data", stack.callback, slack_url=slack.base_url,
                                          slack_token=slack.bot_token, webhook_token=token, kube_url=kube.base_url,
                                          prometheus_url=prometheus.url, poll_seconds=poll_seconds, log_level="ERROR")
        started = time.time()
        response = requests.post(f"{url}/webhooks/alertmanager", data=webhook_body(scenario), timeout=10,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        if response.status_code >= 300:
            outcome.error = f"the webhook answered {response.status_code}: {response.text[:200]}"
            return outcome
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with reading(runtime.factory) as session:
                processed = all(d.status in ("done", "failed") for d in session.execute(select(RawDelivery)).scalars())
                incident = session.execute(select(Incident).limit(1)).scalar_one_or_none()
                investigation = session.execute(select(Investigation).limit(1)).scalar_one_or_none()
                state = (investigation.status, investigation.result) if investigation else None
            if processed and incident is None:
                outcome.report = _direct_report(scenario, kube.base_url, prometheus.url)
                break
            outcome.incident_opened = incident is not None
            if state and state[0] in ("failed", "skipped"):
                outcome.report, outcome.error = state[1], f"investigation {state[0]}"
                break
            message, seconds = _rca_message(slack, started)
            if message is not None and outcome.seconds_to_rca is None:
                outcome.report, outcome.seconds_to_rca = state[1] if state else None, seconds
                outcome.rca_text = message_text(message)
            if outcome.seconds_to_rca is not None:
                # the RCA can reach Slack while its steps are still being planned: read them
                # once proposing is over (its timeline mark), or at once without runbooks
                with reading(runtime.factory) as session:
                    considered = runtime.remediation is None or session.execute(
                        select(TimelineEntry.id).where(TimelineEntry.kind == "remediation.considered")).first()
                    if considered:
                        outcome.proposed = sorted({p.runbook_id for p in session.execute(select(Proposal)).scalars()})
                        break
            time.sleep(0.05)
        else:
            outcome.error = (f"no RCA within {timeout:.0f} s" if outcome.seconds_to_rca is None
                             else f"proposing runbook steps did not finish within {timeout:.0f} s")
    if outcome.report and not outcome.rca_text:
        outcome.rca_text = rca_text(outcome.report)
    outcome.timings = dict((outcome.report or {}).get("timings") or {})
    return outcome
