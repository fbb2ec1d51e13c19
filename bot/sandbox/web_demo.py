"""`opsbot demo --web`: the demo as a Slack-like page in a browser, until Ctrl-C.

One process starts, on loopback: the sandbox API server loaded with the scenario, the sandbox's
kube-state-metrics, the real Prometheus (backfilled) and Alertmanager, the Slack emulator with its
web view (`bot.sandbox.slack_emulator.web`) on `--port`, and the bot on SQLite under the demo's
policy (its on-call approvers are the emulator's @oncall). The scenario's alerts go through
Alertmanager to the bot; the page shows the thread as it grows, and what people do in the page
(Approve, Reject with its modal, `/ops …`, questions to @opsbot) reaches the bot signed, as Slack
sends it.

Invariants:
- Acting like the world, not like the bot: after a step the bot verified, the alert is sent to
  Alertmanager again with `endsAt` (Prometheus does that when the condition clears), which is
  what lets the bot resolve the incident and write its postmortem. Nothing else is driven.
- "Fire another scenario" loads another scenario into the same cluster, Prometheus and
  Alertmanager, moved to the bot's clock (its `now` becomes the bot's present; its relative times
  follow). Prometheus restarts to read the new blocks (promtool backfill), so the bot's queries
  may fail for a second or two; a load that cannot be done (an object already there) is a notice.
- Stop on SIGINT or SIGTERM: every thread this module started is joined, every child process
  (Prometheus, Alertmanager) ended, every server closed, the temporary directory removed.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from bot.db.engine import reading
from bot.db.models import Alert, Proposal
from bot.sandbox.paths import REPO_ROOT, shared_scenarios_dir
from bot.sandbox.scenario import Scenario, ScenarioError
from bot.sandbox.scenario_alerts import alerts_for_alertmanager
from bot.sandbox.scenario_time import format_rfc3339

log = logging.getLogger(__name__)

DEFAULT_WEB_PORT = 8765
SCRAPE_INTERVAL = "1s"
WEBHOOK_TOKEN = "demo-webhook-token"
RESOLVE_POLL_SECONDS = 0.5
JOIN_SECONDS = 10


def scenario_dirs() -> list[Path]:
    """Where `--list` and the page's scenario menu look: the shared examples, then the tests'."""
    return [shared_scenarios_dir(), REPO_ROOT / "tests" / "scenarios"]


def available_scenarios() -> dict[str, Path]:
    """{file stem: path} of every scenario file in `scenario_dirs()` (first one wins on a name clash)."""
    found: dict[str, Path] = {}
    for directory in scenario_dirs():
        if directory.is_dir():
            for path in sorted(directory.glob("*.yaml")):
                found.setdefault(path.stem, path)
    return found


def scenario_title(path: Path) -> str:
    """The `title:` of a scenario file ("" when unreadable): listing needs no full validation."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return ""
    return str(document.get("title") or "") if isinstance(document, dict) else ""


def list_scenarios(out: Callable[[str], None] = print) -> int:
    scenarios = available_scenarios()
    if not scenarios:
        out("no scenarios found in " + ", ".join(str(d) for d in scenario_dirs()))
        return 1
    for directory in scenario_dirs():
        names = [name for name, path in scenarios.items() if path.parent == directory]
        if names:
            out(f"{directory}:")
            out("\n".join(f"  {name}\n      {scenario_title(scenarios[name])}" for name in names))
    return 0


def read_back(kube_url: str) -> str:
    """The cluster read back through the real `kubernetes` client, as the bot reads it. Also loads
    that client before the bot's first investigation, whose time budget would otherwise pay for it."""
    from kubernetes import client

    from bot.sandbox.kube import sandbox_api_client

    core = client.CoreV1Api(sandbox_api_client(kube_url))
    pods, events = core.list_pod_for_all_namespaces().items, core.list_event_for_all_namespaces().items
    return f"read back {len(pods)} pods and {len(events)} events"


def scenario_at(path: Path, now: Any) -> Scenario:
    """The scenario of `path` moved to `now` (the moment its alerts fire). ScenarioError when invalid."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ScenarioError([f"{path}: the document must be a mapping"])
    document["now"] = format_rfc3339(now)
    return Scenario.from_dict(document, path=path, source_name=str(path))


@dataclass
class WebDemo:
    """The running stack. `start()` returns the page's URL; `stop()` ends everything (idempotent)."""

    scenario: Scenario
    workdir: Path
    port: int = DEFAULT_WEB_PORT
    step: Callable[[str], None] = print
    _stops: list[Callable[[], None]] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _fired: list[Scenario] = field(default_factory=list)
    _resolved: set[int] = field(default_factory=set)
    _firing: bool = False

    def start(self) -> str:
        """Start every part; RuntimeError with one line when a part cannot start (then stop())."""
        from bot.sandbox.demo_flow import write_demo_policy
        from bot.sandbox.kube import KubeApiServer, SandboxCluster
        from bot.sandbox.kube.state_metrics import StateMetricsServer
        from bot.sandbox.promstack import AlertmanagerProcess, BinaryMissing, PrometheusProcess, find_binary
        from bot.sandbox.scenario_bot import start_scenario_bot
        from bot.sandbox.scenario_metrics import load_metrics_into
        from bot.sandbox.slack_emulator import SlackEmulator
        from bot.sandbox.slack_emulator.web import WebView

        scenario = self.scenario
        self.cluster = SandboxCluster(now=scenario.now)
        self.cluster.load(scenario.cluster.objects, scenario.cluster.events,
                          [stream.model_dump() for stream in scenario.cluster.logs])
        kube = KubeApiServer(self.cluster)
        kube_url = kube.start()
        self._stops.append(kube.stop)
        state = StateMetricsServer(self.cluster)
        state.start()
        self._stops.append(state.stop)
        try:
            self.prometheus = PrometheusProcess(self.workdir / "prometheus", scrape_configs=[{
                "job_name": "kube-state-metrics", "scrape_interval": SCRAPE_INTERVAL,
                "static_configs": [{"targets": [state.target]}]}])
            samples = load_metrics_into(self.prometheus, scenario)
            self.prometheus.start()
            self._stops.append(self.prometheus.stop)
            find_binary("alertmanager")
        except BinaryMissing as exc:
            raise RuntimeError(f"{exc} (./scripts/demo installs it)") from None
        self.step(f"sandbox cluster {scenario.cluster.name or ''} at {kube_url} ({read_back(kube_url)}); "
                  f"Prometheus at {self.prometheus.url} ({samples} samples backfilled)")

        self.slack = SlackEmulator(port=self.port)
        try:
            self.slack.start()
        except OSError as exc:
            raise RuntimeError(f"cannot serve the page on 127.0.0.1:{self.port}: {exc.strerror or exc} "
                               "(pass --port N, or --port 0 for any free port)") from None
        self._stops.append(self.slack.stop)
        self.view = WebView(self.slack, scenarios=self)
        self.slack.mount_web(self.view)
        policy = write_demo_policy(self.workdir / "policies")
        self.runtime, bot_url = start_scenario_bot(
            scenario, self.workdir, self._stops.append, slack_url=self.slack.base_url, slack_token=self.slack.bot_token,
            webhook_token=WEBHOOK_TOKEN, kube_url=kube_url, prometheus_url=self.prometheus.url,
            policies_dir=policy.parent)
        self.view.connect(bot_url, self.runtime.signing_secret)
        self.step(f"opsbot at {bot_url} (SQLite in {self.workdir}), policy: approvers are @oncall (alice, bob)")

        self.alertmanager = AlertmanagerProcess(self.workdir / "alertmanager",
                                                webhook_config(bot_url, WEBHOOK_TOKEN))
        self.alertmanager.start()
        self._stops.append(self.alertmanager.stop)
        self._post(scenario)
        self._spawn(self._resolve_verified_steps, "web-demo-resolver")
        return self.slack.base_url.removesuffix("/api/") + "/"

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _post(self, scenario: Scenario) -> None:
        alerts = alerts_for_alertmanager(scenario)
        self.alertmanager.post_alerts(alerts)
        with self._lock:
            self._fired.append(scenario)
        names = ", ".join(sorted({a["labels"].get("alertname", "?") for a in alerts}))
        self.step(f"{scenario.id}: {names} posted to Alertmanager at {self.alertmanager.url}")

    def stop(self) -> None:
        """End threads first (they use the servers), then the servers and processes, newest first."""
        self._stopping.set()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(JOIN_SECONDS)
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception:  # one part failing to stop must not keep the others running
                log.exception("stopping a part of the web demo failed")

    # -- the page's scenario menu (web.ScenarioControl) ----------------------------------------
    def available(self) -> list[tuple[str, str]]:
        return [(name, "") for name in available_scenarios()]

    def fire(self, name: str, notify: Callable[[str], None]) -> None:
        with self._lock:
            if self._firing or self._stopping.is_set():
                notify(f"not firing {name}: another scenario is still loading")
                return
            self._firing = True
        self._spawn(self._fire, f"web-demo-fire-{name}", name, notify)

    def _fire(self, name: str, notify: Callable[[str], None]) -> None:
        from bot.sandbox.scenario_metrics import load_metrics_into

        try:
            path = available_scenarios()[name]
            scenario = scenario_at(path, self.runtime.clock())
            notify(f"firing {scenario.id}: loading its objects, metrics (Prometheus restarts) and alerts")
            self.cluster.load(scenario.cluster.objects, scenario.cluster.events,
                              [stream.model_dump() for stream in scenario.cluster.logs])
            load_metrics_into(self.prometheus, scenario)
            if not self._stopping.is_set():
                self._post(scenario)
                notify(f"{scenario.id}: alerts sent to Alertmanager; its card follows")
        except (ScenarioError, ValueError, KeyError, OSError, RuntimeError, yaml.YAMLError) as exc:
            notify(f"{name} was not fired: {str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}")
        finally:
            with self._lock:
                self._firing = False

    # -- the world answering the bot's verified steps ------------------------------------------
    def _resolve_verified_steps(self) -> None:
        while not self._stopping.wait(RESOLVE_POLL_SECONDS):
            try:
                self._resolve_once()
            except Exception:  # a failed read or post is retried on the next tick
                log.warning("resolving verified incidents at Alertmanager failed; retrying", exc_info=True)

    def _resolve_once(self) -> None:
        with reading(self.runtime.factory) as session:
            verified = session.execute(select(Proposal.id, Proposal.incident_id)
                                       .where(Proposal.status == "succeeded")).all()
            fresh = [(pid, incident) for pid, incident in verified if pid not in self._resolved]
            stored = {incident: session.execute(select(Alert.labels).where(Alert.incident_id == incident)).scalars()
                      .all() for _pid, incident in fresh}
        for pid, incident in fresh:
            self._resolved.add(pid)
            labels = [dict(item or {}) for item in stored[incident]]
            with self._lock:
                fired = [a for s in self._fired for a in alerts_for_alertmanager(s)]
            clearing = [a for a in fired if a["labels"] in labels] or [
                a for a in fired if any(a["labels"].get("alertname") == lab.get("alertname")
                                        and a["labels"].get("namespace") == lab.get("namespace") for lab in labels)]
            if not clearing:
                continue
            ends_at = self.runtime.clock()
            self.alertmanager.post_alerts([{**alert, "endsAt": ends_at} for alert in clearing])
            names = ", ".join(sorted({a["labels"].get("alertname", "?") for a in clearing}))
            self.view.notify(f"P-{pid} verified; the condition cleared: {names} resolved at Alertmanager "
                             f"(INC-{incident} resolves, then its postmortem)")


def webhook_config(bot_url: str, token: str) -> dict[str, Any]:
    from bot.sandbox.promstack import webhook_config as alertmanager_webhook

    return alertmanager_webhook(f"{bot_url}/webhooks/alertmanager", bearer_token=token)


def serve_until_stopped(url: str) -> None:
    """Print the URL and wait, in the main thread, for SIGINT or SIGTERM; the caller then stops
    the demo. The previous signal handlers are restored on the way out."""
    stopped = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def on_signal(signum: int, _frame: Any) -> None:
        stopped.set()

    for sig in previous:
        signal.signal(sig, on_signal)
    try:
        print(f"\nThe demo is at {url}  (Ctrl-C stops it)", flush=True)
        while not stopped.wait(0.5):  # a timed wait lets the handler run promptly
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
