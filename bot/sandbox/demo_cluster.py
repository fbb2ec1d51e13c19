"""`opsbot serve --demo-cluster [SCENARIO]`: a plain `opsbot serve` with a cluster to look at.

Started before the bot, on loopback, and stopped after it: the sandbox API server loaded with
the scenario (moved to the present), the sandbox's kube-state-metrics, the real Prometheus
backfilled with the scenario's series, the demo policy (the default one with the emulator's
@oncall, alice and bob, as approvers) and, when no Slack token is configured, the Slack emulator
with its web view on `OPSBOT_SLACK_EMULATOR_PORT` (8765 when unset), its workspace kept in the
data directory. Nothing is fired: a person sends Alertmanager webhooks (the scenario's own
alerts are written to `alerts.json` in the work directory, with `send-alerts.sh` that posts them
with the webhook token) and clicks through the loop by hand in the page.

Invariants: settings a person set explicitly (`OPSBOT_POLICIES_DIR`, a Slack token) win over the
demo's; a part that cannot start stops the ones already started and raises RuntimeError with
one line; `stop()` is idempotent.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.sandbox.scenario import ScenarioError

DEFAULT_WEB_PORT = 8765


def resolve_scenario(name: str | None) -> Path:
    """A scenario file: a path, a name from `opsbot demo --web --list`, or the demo's default."""
    from bot.demo import DEFAULT_SCENARIO
    from bot.sandbox.web_demo import available_scenarios

    if name is None:
        name = DEFAULT_SCENARIO.removesuffix(".yaml")
    path = Path(name)
    if path.is_file():
        return path
    found = available_scenarios().get(path.stem)
    if found is None:
        raise RuntimeError(f"no scenario {name!r}: give a file, or a name `opsbot demo --web --list` prints")
    return found


@dataclass
class DemoCluster:
    """The parts; `start()` returns the settings to serve with, `attach(url, secret)` connects the
    page to the running bot, `stop()` ends everything."""

    scenario_path: Path
    data_dir: Path
    want_slack: bool = True
    web_port: int = DEFAULT_WEB_PORT
    step: Callable[[str], None] = print
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="opsbot-demo-cluster-")))
    _stops: list[Callable[[], None]] = field(default_factory=list)
    _view: Any = None

    def start(self, policies_set: bool, webhook_auth_set: bool) -> dict[str, Any]:
        try:
            overrides = self._start(policies_set)
        except BaseException:
            self.stop()
            raise
        if not webhook_auth_set:  # the page's curl line carries it
            overrides["webhook_token"] = secrets.token_urlsafe(24)
        return overrides

    def _start(self, policies_set: bool) -> dict[str, Any]:
        from bot.sandbox.demo_flow import write_demo_policy
        from bot.sandbox.kube import KubeApiServer, SandboxCluster
        from bot.sandbox.kube.state_metrics import StateMetricsServer
        from bot.sandbox.promstack import BinaryMissing, PrometheusProcess
        from bot.sandbox.scenario_alerts import webhook_body
        from bot.sandbox.scenario_metrics import load_metrics_into
        from bot.sandbox.web_demo import SCRAPE_INTERVAL, read_back, scenario_at

        try:
            scenario = scenario_at(self.scenario_path, datetime.now(UTC).replace(microsecond=0))
        except ScenarioError as exc:
            raise RuntimeError(f"{self.scenario_path}: not a valid scenario ({exc})") from None
        cluster = SandboxCluster(now=scenario.now)
        cluster.load(scenario.cluster.objects, scenario.cluster.events,
                     [stream.model_dump() for stream in scenario.cluster.logs])
        kube = KubeApiServer(cluster)
        kube_url = kube.start()
        self._stops.append(kube.stop)
        metrics = StateMetricsServer(cluster)
        metrics.start()
        self._stops.append(metrics.stop)
        try:
            prometheus = PrometheusProcess(self.workdir / "prometheus", scrape_configs=[{
                "job_name": "kube-state-metrics", "scrape_interval": SCRAPE_INTERVAL,
                "static_configs": [{"targets": [metrics.target]}]}])
            samples = load_metrics_into(prometheus, scenario)
            prometheus.start()
        except BinaryMissing as exc:
            raise RuntimeError(f"{exc} (scripts/setup installs it)") from None
        self._stops.append(prometheus.stop)
        self.step(f"demo cluster {scenario.id}: API server {kube_url} ({read_back(kube_url)}), "
                  f"Prometheus {prometheus.url} ({samples} samples)")
        overrides: dict[str, Any] = {"kube_mode": "url", "kube_api_url": kube_url,
                                     "prometheus_url": prometheus.url}
        if not policies_set:
            overrides["policies_dir"] = write_demo_policy(self.workdir / "policies").parent
            self.step("policy: the default one, with @oncall (alice, bob in the page) as approvers")
        if self.want_slack:
            overrides.update(self._start_slack())
        alerts = self.workdir / "alerts.json"
        alerts.write_bytes(webhook_body(scenario))
        self.alerts_file = alerts
        return overrides

    def _start_slack(self) -> dict[str, Any]:
        from bot.sandbox.slack_emulator import SlackEmulator
        from bot.sandbox.slack_emulator.web import WebView

        self.data_dir.mkdir(parents=True, exist_ok=True)
        slack = SlackEmulator(port=self.web_port, state_file=(self.data_dir / "slack-emulator.sqlite3").resolve())
        try:
            slack.start()
        except OSError as exc:
            slack.stop()
            raise RuntimeError(f"cannot serve the page on 127.0.0.1:{self.web_port}: {exc.strerror or exc} "
                               "(set OPSBOT_SLACK_EMULATOR_PORT, or 0 for any free port)") from None
        self._stops.append(slack.stop)
        self._view = WebView(slack)
        slack.mount_web(self._view)
        self.page_url = slack.base_url.removesuffix("/api/") + "/"
        # the page signs what people do with this secret, as Slack signs with the app's
        return {"slack_api_url": slack.base_url, "slack_bot_token": slack.bot_token,
                "slack_signing_secret": secrets.token_hex(16)}

    def attach(self, bot_url: str, signing_secret: str, webhook_token: str | None) -> None:
        """Connect the page's clicks to the bot and say how to use it."""
        if self._view is not None:
            self._view.connect(bot_url, signing_secret)
            self.step(f"the channel, in a browser: {self.page_url}")
        # a script, not a log line: the token must not reach the logs (they redact it anyway)
        auth = f" -H 'Authorization: Bearer {webhook_token}'" if webhook_token else ""
        script = self.workdir / "send-alerts.sh"
        script.write_text(f"#!/bin/sh\n# the scenario's alerts, as Alertmanager's webhook posts them\n"
                          f"exec curl -sS{auth} -H 'Content-Type: application/json' "
                          f"--data-binary @{self.alerts_file} {bot_url}/webhooks/alertmanager\n")
        script.chmod(0o700)
        self.step(f"send the scenario's alerts: sh {script} (or your own Alertmanager webhooks to "
                  f"{bot_url}/webhooks/alertmanager)")

    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            with contextlib.suppress(Exception):  # stopping the rest matters more
                stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
