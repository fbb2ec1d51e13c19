"""Side by side: Alertmanager's own Slack messages and opsbot's, fed the same alerts by one Alertmanager.

    .venv/bin/python bench/compare_alertmanager.py [PATH ...] [--alerts 5000] [--services 40]
        [--storm-seconds 90] [--group-wait 500ms] [--group-interval 5s]
        [--opsbot-group-wait 83ms] [--opsbot-group-interval 500ms] [--seed 17]

One real Alertmanager (Debian's 0.25) routes every alert to two receivers in one route tree:
`slack` (its `slack_configs` notifier, default templates, posting to `chat.postMessage` of a Slack
emulator with a bearer token; `continue: true`) and `opsbot` (its webhook receiver, pointing at
`opsbot serve` in its own process, which posts to a second Slack emulator). Both routes inherit
one `group_by` (cluster, namespace, service) and `repeat_interval`, and both send resolved
notifications. The Slack route keeps kube-prometheus's `group_wait` / `group_interval` (30s, 5m);
the opsbot route has the timings the README recommends for it (5s, 30s): opsbot groups,
debounces and edits in place itself, so it needs less of Alertmanager's batching than a chat
notifier does (`--opsbot-group-wait same --opsbot-group-interval same` gives it the Slack
route's). Every timing is divided by `TIME_SCALE` so that a 90-minute storm fits in 90 seconds.

The alerts, in one run: the scenario suite's incidents (PATHs, default ../shared/scenarios;
heartbeat scenarios, whose expect is `not_an_issue`, are left out), each moved to the present
(`bot.sandbox.scenario_rebase`) so that opsbot runs on the wall clock, and served by its own
sandbox API server and Prometheus (OPSBOT_CLUSTERS maps each scenario's cluster to them); posted
to Alertmanager while a deterministic storm (`compare_storm.storm_ticks`) of --alerts alerts
across --services services, with flapping and resolves, runs against an empty cluster. Each
scenario's alerts resolve `SCENARIO_HOLD_SECONDS` after they fire.

Measured per side: Slack messages (chat.postMessage and file shares) in total and per incident
(an Alertmanager group), channel-level messages (not thread replies), time from the first alert
of a group to the side's first message about it; for opsbot also the time from its first message
to the RCA reply that names a cause (a top hypothesis other than `unknown`), the RCA's score
against each scenario's `expect` (`bot.eval.scoring`), and its CPU seconds and peak RSS (its
process tree, from /proc). Ends with `bench: compare_alertmanager channel_messages_ratio=N
messages_ratio=N first_notification_ratio=N own_card_first_s=N cause_s=N` (ratios are
Alertmanager / opsbot for messages, opsbot / Alertmanager for the median first-notification time
over every group, where a group folded into a storm thread is first told by the storm thread's
next write after the fold; own_card_first_s is opsbot's median over the groups it gave a card of
their own; cause_s is the slowest scenario incident).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compare_storm import (  # noqa: E402
    STORM_CLUSTER,
    GroupCount,
    OpsbotState,
    SideCount,
    alertmanager_side,
    opsbot_side,
    process_usage,
    read_opsbot_state,
    storm_alert_body,
    storm_ticks,
)

from bot.eval.cli import scenario_files  # noqa: E402
from bot.eval.scoring import score  # noqa: E402
from bot.sandbox.kube import KubeApiServer, SandboxCluster  # noqa: E402
from bot.sandbox.paths import shared_scenarios_dir  # noqa: E402
from bot.sandbox.promstack import AlertmanagerProcess, PrometheusProcess, free_port  # noqa: E402
from bot.sandbox.scenario import Scenario  # noqa: E402
from bot.sandbox.scenario_alerts import alerts_for_alertmanager  # noqa: E402
from bot.sandbox.scenario_metrics import load_metrics_into  # noqa: E402
from bot.sandbox.scenario_rebase import rebased_scenario  # noqa: E402
from bot.sandbox.slack_emulator import SlackEmulator  # noqa: E402

GROUP_BY = ("cluster", "namespace", "service")
TIME_SCALE = 60  # kube-prometheus's Alertmanager timings (30s, 5m, 12h) divided by this
REPEAT_INTERVAL = "12m"
TICK_SECONDS = 0.5  # the storm posts a batch this often, as Prometheus's notifier does
SCENARIO_FIRST_OFFSET_SECONDS = 3.0
SCENARIO_SPREAD_SHARE = 0.4  # scenario incidents fire within the first 40 % of the storm
SCENARIO_HOLD_SECONDS = 45.0
QUIET_SECONDS = 8.0  # both Slacks silent this long (longer than opsbot's 5 s card interval): done
SETTLE_LIMIT_SECONDS = 90.0
WEBHOOK_TOKEN = "compare-webhook-token"
AM_SLACK_TOKEN, OPSBOT_SLACK_TOKEN = "xoxb-alertmanager", "xoxb-opsbot"
CHANNEL = "#incidents"
TARGET_CHANNEL_RATIO, TARGET_CAUSE_SECONDS = 20.0, 5.0


@dataclass
class Group:
    """One Alertmanager aggregation group: the unit both sides call an incident."""

    labels: tuple[tuple[str, str], ...]
    scenario: Scenario | None = None
    first_alert_at: float | None = None


@dataclass
class Run:
    groups: dict[tuple[tuple[str, str], ...], Group] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    errors: list[str] = field(default_factory=list)

    def group_of(self, labels: dict[str, str], scenario: Scenario | None = None) -> Group:
        key = tuple((name, labels[name]) for name in GROUP_BY if labels.get(name))
        with self.lock:
            return self.groups.setdefault(key, Group(key, scenario))

    def post(self, alertmanager: AlertmanagerProcess, alerts: list[dict],
             scenario: Scenario | None = None) -> None:
        started = time.time()
        for alert in alerts:
            group = self.group_of(alert["labels"], scenario)
            if "endsAt" not in alert and group.first_alert_at is None:
                group.first_alert_at = started
        try:
            alertmanager.post_alerts(alerts)
        except Exception as exc:  # noqa: BLE001 - counted and shown; the run goes on
            self.errors.append(f"posting {len(alerts)} alert(s): {exc}"[:200])


class OpsbotServer:
    """`opsbot serve` in its own process (its intake children included), on the wall clock."""

    def __init__(self, workdir: Path, slack_url: str, clusters: dict[str, dict[str, str]]):
        self.port = free_port()
        self.database = workdir / "opsbot.sqlite3"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPSBOT_") and k != "DATABASE_URL"}
        env.update({"OPSBOT_DATA_DIR": str(workdir), "OPSBOT_DATABASE_URL": f"sqlite:///{self.database}",
                    "OPSBOT_SLACK_API_URL": slack_url, "OPSBOT_SLACK_BOT_TOKEN": OPSBOT_SLACK_TOKEN,
                    "OPSBOT_SLACK_SIGNING_SECRET": "compare", "OPSBOT_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
                    "OPSBOT_SLACK_CHANNEL": CHANNEL, "OPSBOT_LOG_LEVEL": "WARNING",
                    "OPSBOT_HTTP_PORT": str(self.port), "OPSBOT_CONFIG": str(workdir / "opsbot.yaml")})
        # a config file: OPSBOT_CLUSTERS as an environment variable is not parsed as JSON (see the report)
        (workdir / "opsbot.yaml").write_text(json.dumps({"clusters": clusters}))
        command = [sys.executable, "-m", "bot"]
        upgrade = subprocess.run([*command, "db", "upgrade"], env=env, capture_output=True, text=True,
                                 cwd=REPO)
        if upgrade.returncode:
            raise RuntimeError(f"opsbot db upgrade failed: {upgrade.stderr.strip()[-500:]}")
        self.log = (workdir / "opsbot.log").open("wb")
        self.process = subprocess.Popen([*command, "serve"], env=env, cwd=REPO, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"opsbot serve did not become ready; see {workdir / 'opsbot.log'}")

    def pending_deliveries(self) -> float:
        lines = requests.get(f"{self.url}/metrics", timeout=5).text.splitlines()
        pending = [line for line in lines if line.startswith("opsbot_pending_deliveries")]
        return sum(float(line.rsplit(" ", 1)[1]) for line in pending)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def alertmanager_config(slack_url: str, opsbot_url: str, group_wait: str, group_interval: str,
                        opsbot_timings: dict[str, str]) -> dict:
    def bearer(token: str) -> dict:
        return {"authorization": {"type": "Bearer", "credentials": token}}

    return {
        "route": {"receiver": "null", "group_by": list(GROUP_BY), "group_wait": group_wait,
                  "group_interval": group_interval, "repeat_interval": REPEAT_INTERVAL,
                  "routes": [{"receiver": "slack", "continue": True}, {"receiver": "opsbot", **opsbot_timings}]},
        "receivers": [
            {"name": "null"},
            {"name": "slack", "slack_configs": [{
                "api_url": f"{slack_url}chat.postMessage", "channel": CHANNEL, "send_resolved": True,
                "http_config": bearer(AM_SLACK_TOKEN)}]},
            {"name": "opsbot", "webhook_configs": [{
                "url": f"{opsbot_url}/webhooks/alertmanager", "send_resolved": True, "max_alerts": 0,
                "http_config": bearer(WEBHOOK_TOKEN)}]},
        ],
    }


def start_cluster(scenario: Scenario | None, workdir: Path, stops: list) -> dict[str, str]:
    """A scenario's sandbox API server and its own Prometheus (two scenarios' series never mix);
    without a scenario, an empty cluster and an empty Prometheus for the storm, where opsbot
    investigates and finds nothing. Each stop is appended to `stops` once its part runs."""
    cluster = SandboxCluster(now=scenario.now if scenario else datetime.now(UTC))
    if scenario is not None:
        cluster.load(scenario.cluster.objects, scenario.cluster.events,
                     [stream.model_dump() for stream in scenario.cluster.logs])
    kube = KubeApiServer(cluster)
    kube.start()
    stops.append(kube.stop)
    prometheus = PrometheusProcess(workdir / f"prometheus-{scenario.id if scenario else 'storm'}")
    if scenario is not None:
        load_metrics_into(prometheus, scenario)
    prometheus.start()
    stops.append(prometheus.stop)
    return {"kube_mode": "url", "kube_api_url": kube.base_url, "prometheus_url": prometheus.url}


def play(run: Run, alertmanager: AlertmanagerProcess, scenarios: list[Scenario], args) -> float:
    """Post the storm and the scenarios on their schedule; returns when the last alert is posted."""
    plan = storm_ticks(args.alerts, args.services, args.storm_seconds, TICK_SECONDS, args.seed)
    counts = plan.counts()
    print(f"storm: {counts['posted']} alerts ({counts['firing']} firing, {counts['resolved']} resolved) from "
          f"{counts['instances']} alert instances across {counts['services']} services over "
          f"{args.storm_seconds:.0f} s, seed {args.seed}", flush=True)
    spread = args.storm_seconds * SCENARIO_SPREAD_SHARE / max(1, len(scenarios))
    events: list[tuple[float, int, object]] = [(tick.offset_seconds, 0, tick) for tick in plan.ticks]
    for number, scenario in enumerate(scenarios):
        fire_at = SCENARIO_FIRST_OFFSET_SECONDS + number * spread
        events += [(fire_at, 1, ("fire", scenario)),
                   (min(fire_at + SCENARIO_HOLD_SECONDS, args.storm_seconds), 1, ("resolve", scenario))]
    events.sort(key=lambda item: (item[0], item[1]))
    started_at: dict[tuple, datetime] = {}
    start = time.monotonic()
    for offset, _, event in events:
        delay = start + offset - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = datetime.now(UTC)
        if isinstance(event, tuple):
            action, scenario = event
            alerts = alerts_for_alertmanager(scenario)
            if action == "resolve":
                alerts = [{**a, "endsAt": now} for a in alerts if "endsAt" not in a]
            run.post(alertmanager, alerts, scenario)
        else:
            bodies = [storm_alert_body(alert, status, now, started_at) for alert, status in event.changes]
            run.post(alertmanager, bodies)
    return time.time()


def wait_until_quiet(slacks: list[SlackEmulator], opsbot: OpsbotServer, minimum_seconds: float) -> float:
    """Wait `minimum_seconds`, then until opsbot has no pending delivery and neither Slack heard
    anything for QUIET_SECONDS (at most SETTLE_LIMIT_SECONDS); returns the seconds waited."""
    began = time.monotonic()
    time.sleep(minimum_seconds)
    while time.monotonic() - began < SETTLE_LIMIT_SECONDS:
        last = max((c.at for slack in slacks for c in slack.calls[-1:]), default=0.0)
        if time.time() - last >= QUIET_SECONDS and opsbot.pending_deliveries() == 0:
            break
        time.sleep(0.5)
    return time.monotonic() - began


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def first_delays(count: SideCount, groups: list[Group]) -> list[float]:
    """Per group: from its first firing alert posted to Alertmanager to this side's first message."""
    delays = []
    for group in groups:
        seen = count.per_group.get(group.labels)
        if group.first_alert_at is not None and seen is not None and seen.first_at is not None:
            delays.append(seen.first_at - group.first_alert_at)
    return delays


@dataclass
class ScenarioResults:
    causes: list[float] = field(default_factory=list)  # opsbot's first message -> an RCA naming a cause
    top1: int = 0
    scored: int = 0


def scenario_table(groups: list[Group], am: SideCount, bot: SideCount, state: OpsbotState) -> ScenarioResults:
    results = ScenarioResults()
    print(f"\n{'scenario incident':<44} | Alertmanager    | opsbot: channel, all, first, RCA, cause "
          "| top answer (expected) top-1")
    for group in sorted(groups, key=lambda g: g.first_alert_at or 0):
        scenario, rca = group.scenario, state.rca_for(group.labels)
        a, b = am.per_group.get(group.labels, GroupCount()), bot.per_group.get(group.labels, GroupCount())
        first_a = a.first_at - group.first_alert_at if a.first_at else None
        first_b = b.first_at - group.first_alert_at if b.first_at else None
        posted = rca.posted_at if rca is not None else None
        to_rca = posted - b.first_at if posted and b.first_at else None
        names_cause = rca is not None and rca.top_category not in (None, "unknown")
        if names_cause and to_rca is not None:
            results.causes.append(to_rca)
        mark = "-"
        if rca is not None and rca.hypotheses is not None:
            result = score(scenario.expect, rca.hypotheses, rca.text, None, rca.inconclusive)
            results.scored += 1
            results.top1 += result.top1
            mark = "yes" if result.top1 else "no"
        print(f"{scenario.id[:44]:<44} | {a.total:>2} {seconds(first_a):>10}   | {b.channel:>2} {b.total:>3} "
              f"{seconds(first_b):>8} {seconds(posted - group.first_alert_at if posted else None):>8} "
              f"{seconds(to_rca if names_cause else None):>8} | {rca.top_category if rca else 'none'} "
              f"({'|'.join(scenario.expect.categories)}) {mark}")
    print("(first: from the group's first alert posted to Alertmanager; Alertmanager flushes a new group "
          "at once when\n its alerts started more than group_wait ago, as the scenarios' did. RCA: from the "
          "first alert; cause: from\n opsbot's first message to its RCA reply, when that names a cause)")
    return results


def storm_summary(groups: list[Group], am: SideCount, bot: SideCount) -> None:
    for side, count in (("Alertmanager", am), ("opsbot", bot)):
        seen = [count.per_group[g.labels] for g in groups if g.labels in count.per_group]
        totals = [s.total for s in seen]
        first = median(first_delays(count, groups))
        channel = sum(s.channel for s in seen)
        print(f"storm, {side:<12}: {channel:>4} channel-level, {sum(totals):>4} messages "
              f"in all for {len(groups)} incidents ({sum(totals) / max(1, len(groups)):.1f} per incident, "
              f"at most {max(totals, default=0)}); first notification median {seconds(first)}")


def report(run: Run, am: SideCount, bot: SideCount, state: OpsbotState, usage: dict[str, float],
           command: str) -> int:
    scenario_groups = [g for g in run.groups.values() if g.scenario is not None]
    storm_groups = [g for g in run.groups.values() if g.scenario is None and g.first_alert_at is not None]
    every = scenario_groups + storm_groups
    print(f"\nincidents (Alertmanager groups): {len(scenario_groups)} from scenarios, {len(storm_groups)} "
          f"from the storm; opsbot opened {len(state.incidents)} incident(s)")
    results = scenario_table(scenario_groups, am, bot, state)
    print()
    storm_summary(storm_groups, am, bot)
    print()
    firsts = {}
    for side, count in (("Alertmanager", am), ("opsbot", bot)):
        firsts[side] = first_delays(count, every)
        per_incident = count.total / max(1, len(every))
        print(f"{side:<12} in all: {count.channel} channel-level messages ({count.broadcasts} of them "
              f"thread replies also sent to the channel), {count.total} messages ({per_incident:.1f} per "
              f"incident; {count.thread} thread replies, {count.files} file shares), {count.updates} edits, "
              f"{count.unattributed} not matched to an incident, {count.failed} refused; first notification "
              f"median {seconds(median(firsts[side]))}, max {seconds(max(firsts[side], default=None))}")
    channel_ratio = am.channel / max(1, bot.channel)
    messages_ratio = am.total / max(1, bot.total)
    first_am, first_bot = median(firsts["Alertmanager"]) or 0.0, median(firsts["opsbot"]) or 0.0
    first_ratio = first_bot / max(1e-9, first_am)
    # groups opsbot gave a card of their own, and those folded into a storm thread (told by the
    # storm card's next edit, at most one per OPSBOT_CARD_MIN_INTERVAL_SECONDS)
    own = [g for g in every if bot.per_group.get(g.labels, GroupCount()).channel > 0]
    folded = [g for g in every if g not in own]
    own_am, own_bot = median(first_delays(am, own)) or 0.0, median(first_delays(bot, own)) or 0.0
    print(f"first notification, the {len(own)} groups with a card of their own: opsbot median {seconds(own_bot)}, "
          f"Alertmanager {seconds(own_am)}; the {len(folded)} groups folded into a storm thread: told by the "
          f"storm card's next edit, median {seconds(median(first_delays(bot, folded)))} (Alertmanager "
          f"{seconds(median(first_delays(am, folded)))}, as a message of its own)")
    causes = results.causes
    slowest = max(causes) if causes else None
    print(f"\nopsbot process tree: {usage['cpu_seconds']:.1f} CPU seconds ({usage['cpu_run_seconds']:.1f} "
          f"during the run), peak RSS {usage['peak_rss_mb']:.0f} MB over {usage['processes']:.0f} "
          "process(es)")
    print(f"RCA accuracy on scenario incidents (top-1 as bot.eval.scoring scores it): "
          f"{results.top1}/{results.scored}; a cause named in {len(causes)}/{len(scenario_groups)}, "
          f"{seconds(median(causes))} median and {seconds(slowest)} at worst after opsbot's first message")
    all_named = len(causes) == len(scenario_groups)
    print("\ntargets:")
    print(f"  >= {TARGET_CHANNEL_RATIO:.0f}x fewer channel-level messages: {channel_ratio:.1f}x -> "
          f"{'met' if channel_ratio >= TARGET_CHANNEL_RATIO else 'NOT met'}")
    print(f"  first notification no later than Alertmanager's: opsbot's median "
          f"{(first_bot - first_am) * 1000:+.0f} ms from Alertmanager's -> "
          f"{'met' if first_bot <= first_am else 'NOT met'}")
    cause_met = all_named and slowest is not None and slowest <= TARGET_CAUSE_SECONDS
    print(f"  a cause within {TARGET_CAUSE_SECONDS:.0f} s of the first notification: at worst "
          f"{seconds(slowest)} -> {'met' if cause_met else 'NOT met'}")
    for error in run.errors[:5]:
        print(f"error: {error}")
    print(f"\nreproduce: {command}")
    cause_s = slowest if slowest is not None else float("nan")
    print(f"bench: compare_alertmanager channel_messages_ratio={channel_ratio:.1f} "
          f"messages_ratio={messages_ratio:.1f} first_notification_ratio={first_ratio:.2f} "
          f"own_card_first_s={own_bot:.2f} cause_s={cause_s:.2f}")
    return 0 if not run.errors else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path,
                        help="scenario files or folders (default ../shared/scenarios)")
    parser.add_argument("--alerts", type=int, default=5000)
    parser.add_argument("--services", type=int, default=40)
    parser.add_argument("--storm-seconds", type=float, default=90.0)
    parser.add_argument("--group-wait", default=f"{30_000 // TIME_SCALE}ms")
    parser.add_argument("--group-interval", default=f"{300 // TIME_SCALE}s")
    parser.add_argument("--opsbot-group-wait", default=f"{5_000 // TIME_SCALE}ms",
                        help="the opsbot route's group_wait ('same': the Slack route's)")
    parser.add_argument("--opsbot-group-interval", default=f"{30_000 // TIME_SCALE}ms",
                        help="the opsbot route's group_interval ('same': the Slack route's)")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory, with both Slacks' calls")
    args = parser.parse_args()
    command = (".venv/bin/python bench/compare_alertmanager.py" + "".join(f" {p}" for p in args.paths)
               + f" --alerts {args.alerts} --services {args.services} --storm-seconds {args.storm_seconds:g} "
               f"--group-wait {args.group_wait} --group-interval {args.group_interval} "
               f"--opsbot-group-wait {args.opsbot_group_wait} --opsbot-group-interval {args.opsbot_group_interval} "
               f"--seed {args.seed}")
    opsbot_timings = {key: value for key, value in (("group_wait", args.opsbot_group_wait),
                                                    ("group_interval", args.opsbot_group_interval))
                      if value != "same"}
    workdir = Path(tempfile.mkdtemp(prefix="opsbot-compare-"))
    now = datetime.now(UTC).replace(microsecond=0)
    files = scenario_files(args.paths or [shared_scenarios_dir()])
    scenarios = [rebased_scenario(path, now)[0] for path in files]
    scenarios = [s for s in scenarios if "not_an_issue" not in s.expect.categories]
    print(f"Alertmanager vs opsbot on {len(scenarios)} scenario incidents and a {args.alerts}-alert storm; "
          f"group_by {','.join(GROUP_BY)}, group_wait {args.group_wait}, group_interval "
          f"{args.group_interval}, repeat_interval {REPEAT_INTERVAL} (kube-prometheus's timings / "
          f"{TIME_SCALE}); the opsbot route: group_wait {opsbot_timings.get('group_wait', args.group_wait)}, "
          f"group_interval {opsbot_timings.get('group_interval', args.group_interval)}; {os.cpu_count()} cores",
          flush=True)
    run = Run()
    with ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        am_slack = stack.enter_context(SlackEmulator(bot_token=AM_SLACK_TOKEN))
        bot_slack = stack.enter_context(SlackEmulator(bot_token=OPSBOT_SLACK_TOKEN))
        stops: list = []
        stack.callback(lambda: [stop() for stop in reversed(stops)])
        with ThreadPoolExecutor(2) as pool:
            futures = {s.cluster.name: pool.submit(start_cluster, s, workdir, stops) for s in scenarios}
            futures[STORM_CLUSTER] = pool.submit(start_cluster, None, workdir, stops)
            clusters = {name: future.result() for name, future in futures.items()}
        opsbot = OpsbotServer(workdir, bot_slack.base_url, clusters)
        stack.callback(opsbot.stop)
        alertmanager = AlertmanagerProcess(workdir / "alertmanager", alertmanager_config(
            am_slack.base_url, opsbot.url, args.group_wait, args.group_interval, opsbot_timings))
        alertmanager.start()
        stack.callback(alertmanager.stop)
        lag = (datetime.now(UTC) - now).total_seconds()
        print(f"ready in {lag:.0f} s (the scenarios' clocks lead their alerts by that much): Alertmanager "
              f"{alertmanager.url}, opsbot {opsbot.url} (pid {opsbot.process.pid}), work in {workdir}",
              flush=True)
        cpu_before = process_usage(opsbot.process.pid)["cpu_seconds"]
        played = time.monotonic()
        play(run, alertmanager, scenarios, args)
        settled = wait_until_quiet([am_slack, bot_slack], opsbot, 2 * TICK_SECONDS + 2)
        print(f"alerts posted in {time.monotonic() - played - settled:.0f} s; both Slacks quiet after a "
              f"further {settled:.0f} s", flush=True)
        for name, slack in (("alertmanager", am_slack), ("opsbot", bot_slack)) if args.keep else ():
            dump = json.dumps([call.__dict__ for call in slack.calls], default=str)
            (workdir / f"slack-{name}.json").write_text(dump)
        usage = process_usage(opsbot.process.pid)
        usage["cpu_run_seconds"] = usage["cpu_seconds"] - cpu_before
        state = read_opsbot_state(opsbot.database, GROUP_BY)
        am = alertmanager_side(am_slack.calls, run.groups)
        bot = opsbot_side(bot_slack.calls, state)
        return report(run, am, bot, state, usage, command)


if __name__ == "__main__":
    sys.exit(main())
