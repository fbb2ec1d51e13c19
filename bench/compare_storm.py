"""Helpers of `compare_alertmanager.py`: its inputs (a deterministic storm, scenarios moved to the
present) and its counting (whose Slack message belongs to which incident, opsbot's /proc usage).

Storm invariants:
- `storm_ticks` is a pure function of its arguments (a seeded `random.Random`), so two runs
  with the same seed post the same alerts in the same order;
- every tick posts each alert at most once (Alertmanager would collapse two states of one
  alert in one request), and the ticks hold exactly `total` alerts;
- an alert is posted firing (a first start, a repeat, or a re-fire after a resolve: a flap)
  or resolved (only when it was firing); services in `RECOVERING_SHARE` stop firing in the
  last `RECOVERY_SHARE` of the storm and resolve what still fires, the others keep flapping.

Rebasing invariant: a scenario is moved to a new `now` by one shift, applied to every absolute
time in the file (RFC 3339 strings, timestamps inside log lines and annotations, YAML
datetimes) and to the Unix-time samples of time-valued series (`*_time`, `*_expiry`,
`*_timestamp`...), so all its intervals (age of a rollout, minutes past a certificate's
`not_after`, the last sample at `now`) stay as written. The bot can then run on the wall
clock, which is what lets one bot serve several scenarios and a storm at once.

Counting invariants: a message belongs to the Alertmanager group whose label values open its
title (Alertmanager's default template), or, on opsbot's side, to the incident whose card is its
thread's root (opsbot's own database says which card is whose); what matches nothing is counted
as unattributed, never dropped. A message is channel-level unless it is a thread reply that was
not also sent to the channel.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.sandbox.thread_text import message_text

STORM_CLUSTER = "storm-prod-1"
STORM_NAMESPACES = ("checkout", "catalog", "payments", "search", "identity", "media", "logistics", "data")
# alertname -> (labels it needs beyond service/namespace, severity, summary); weights pick them per service
STORM_ALERTS: dict[str, tuple[str, str, str]] = {
    "KubePodCrashLooping": ("pod", "warning", "Pod is crash looping."),
    "KubePodNotReady": ("pod", "warning", "Pod has been in a non-ready state for more than 15 minutes."),
    "KubeContainerWaiting": ("pod", "warning", "Pod container waiting longer than 1 hour."),
    "CPUThrottlingHigh": ("pod", "info", "Processes experience elevated CPU throttling."),
    "KubeDeploymentReplicasMismatch": ("deployment", "warning", "Deployment has not matched the expected "
                                                                  "number of replicas."),
    "TargetDown": ("job", "warning", "One or more targets are unreachable."),
}
POD_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the characters Kubernetes uses in generated names
PODS_PER_SERVICE = (2, 9)  # inclusive range
ALERTNAMES_PER_SERVICE = (2, 4)
FLAP_RESOLVE_PROBABILITY = 0.45  # a firing alert picked again resolves (and may fire again later: a flap)
RECOVERING_SHARE = 0.5  # services whose alerts all resolve before the storm ends
RECOVERY_SHARE = 0.25  # the last quarter of the storm: recovering services only resolve
RAMP_SHARE = 0.15  # the first 15 % of the storm ramps up to the peak rate


@dataclass(frozen=True)
class StormAlert:
    """One alert instance of the storm (its labels never change)."""

    service: str
    namespace: str
    labels: dict[str, str]
    summary: str


@dataclass
class StormTick:
    """The alerts posted at `offset_seconds` after the storm starts: (alert, 'firing' | 'resolved')."""

    offset_seconds: float
    changes: list[tuple[StormAlert, str]] = field(default_factory=list)


@dataclass(frozen=True)
class StormPlan:
    alerts: list[StormAlert]
    ticks: list[StormTick]

    def counts(self) -> dict[str, int]:
        posted = [status for tick in self.ticks for _, status in tick.changes]
        return {"posted": len(posted), "firing": posted.count("firing"), "resolved": posted.count("resolved"),
                "instances": len(self.alerts), "services": len({a.service for a in self.alerts})}


def _service_alerts(rng: random.Random, index: int) -> list[StormAlert]:
    namespace = STORM_NAMESPACES[index % len(STORM_NAMESPACES)]
    service = f"{namespace}-svc-{index:02d}"
    template = "".join(rng.choices(POD_NAME_ALPHABET, k=10))
    pods = [f"{service}-{template}-{''.join(rng.choices(POD_NAME_ALPHABET, k=5))}"
            for _ in range(rng.randint(*PODS_PER_SERVICE))]
    names = rng.sample(sorted(STORM_ALERTS), rng.randint(*ALERTNAMES_PER_SERVICE))
    alerts = []
    for alertname in sorted(names):
        scope, severity, summary = STORM_ALERTS[alertname]
        base = {"alertname": alertname, "cluster": STORM_CLUSTER, "namespace": namespace, "service": service,
                "severity": severity}
        if scope == "pod":
            alerts += [StormAlert(service, namespace, {**base, "pod": pod, "container": "app"}, summary)
                       for pod in pods]
        elif scope == "deployment":
            alerts.append(StormAlert(service, namespace, {**base, "deployment": service}, summary))
        else:
            alerts.append(StormAlert(service, namespace, {**base, "job": service}, summary))
    return alerts


def _rate_weights(ticks: int) -> list[float]:
    """Relative alert volume per tick: a ramp to the peak, then a slow decay to a third of it."""
    ramp = max(1, int(ticks * RAMP_SHARE))
    peak_to_end = max(1, ticks - ramp)
    return [(i + 1) / ramp if i < ramp else 1.0 - 0.66 * (i - ramp) / peak_to_end for i in range(ticks)]


def storm_ticks(total: int, services: int, seconds: float, tick_seconds: float, seed: int) -> StormPlan:
    """`total` alerts across `services` services over `seconds`, posted every `tick_seconds`."""
    rng = random.Random(seed)
    per_service = [_service_alerts(rng, index) for index in range(services)]
    noise = [rng.paretovariate(1.3) for _ in range(services)]  # a few services carry most of the storm
    recovering = set(rng.sample(range(services), int(services * RECOVERING_SHARE)))
    count = max(1, int(seconds / tick_seconds))
    weights = _rate_weights(count)
    scale = total / sum(weights)
    quotas = [int(w * scale) for w in weights]
    for i in range(total - sum(quotas)):
        quotas[i % count] += 1
    firing: set[tuple[int, int]] = set()
    ticks: list[StormTick] = []
    for number, quota in enumerate(quotas):
        tick = StormTick(round(number * tick_seconds, 3))
        late = number >= count * (1 - RECOVERY_SHARE)
        touched: set[tuple[int, int]] = set()
        attempts = 0
        while len(tick.changes) < quota and attempts < quota * 20:
            attempts += 1
            service = rng.choices(range(services), weights=noise)[0]
            key = (service, rng.randrange(len(per_service[service])))
            if key in touched:
                continue
            if late and service in recovering:
                still = sorted(k for k in firing if k[0] == service and k not in touched)
                if not still:
                    continue
                key = still[0]
                status = "resolved"
            elif key in firing:
                status = "resolved" if rng.random() < FLAP_RESOLVE_PROBABILITY else "firing"
            else:
                status = "firing"
            touched.add(key)
            (firing.discard if status == "resolved" else firing.add)(key)
            tick.changes.append((per_service[key[0]][key[1]], status))
        ticks.append(tick)
    short = total - sum(len(t.changes) for t in ticks)
    if short:  # the last ticks could not find enough distinct alerts: top up with repeats of firing ones
        for key in sorted(firing)[:short]:
            ticks[-1].changes.append((per_service[key[0]][key[1]], "firing"))
    return StormPlan([a for alerts in per_service for a in alerts], ticks)


def storm_alert_body(alert: StormAlert, status: str, at: datetime,
                     started: dict[tuple, datetime]) -> dict[str, Any]:
    """The alert as Prometheus posts it to /api/v2/alerts; `started` keeps each firing alert's startsAt."""
    key = tuple(sorted(alert.labels.items()))
    body: dict[str, Any] = {"labels": alert.labels, "annotations": {"summary": alert.summary},
                            "generatorURL": f"http://prometheus.{STORM_CLUSTER}/graph"}
    if status == "firing":
        return {**body, "startsAt": started.setdefault(key, at)}
    return {**body, "startsAt": started.pop(key, at - timedelta(seconds=1)), "endsAt": at}


# --- counting what each side posted ---------------------------------------------------------------

GroupKey = tuple[tuple[str, str], ...]
_LABEL_PAIR = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
SLACK_WRITES = frozenset({"chat.postMessage", "chat.update", "files.completeUploadExternal"})


@dataclass
class GroupCount:
    total: int = 0
    channel: int = 0
    first_at: float | None = None

    def add(self, at: float, channel_level: bool) -> None:
        self.total += 1
        self.channel += channel_level
        self.first_at = at if self.first_at is None else min(self.first_at, at)


@dataclass
class SideCount:
    """One side's Slack traffic: messages (posts and file shares), the channel-level ones, edits."""

    total: int = 0
    channel: int = 0
    broadcasts: int = 0  # thread replies also sent to the channel (counted in `channel`)
    thread: int = 0
    files: int = 0
    updates: int = 0
    failed: int = 0
    unattributed: int = 0
    per_group: dict[GroupKey, GroupCount] = field(default_factory=dict)

    def add(self, group: GroupKey | None, at: float, channel_level: bool) -> None:
        self.total += 1
        self.channel += channel_level
        self.thread += not channel_level
        if group is None:
            self.unattributed += 1
        else:
            self.per_group.setdefault(group, GroupCount()).add(at, channel_level)


def alertmanager_side(calls: list, groups: dict[GroupKey, Any]) -> SideCount:
    """Alertmanager's default title starts `[FIRING:n] <group label values> (<other common labels>)`:
    the values (sorted by label name, as `group_by` is here) name the group."""
    by_values = {tuple(value for _, value in key): key for key in groups}
    side = SideCount()
    for call in calls:
        if call.method not in SLACK_WRITES:
            continue
        if not call.ok:
            side.failed += 1
            continue
        title = str(((call.args.get("attachments") or [{}])[0]).get("title", ""))
        values = tuple(title.partition("] ")[2].partition(" (")[0].split())
        side.add(by_values.get(values), call.at, not call.args.get("thread_ts"))
    return side


@dataclass
class Rca:
    """An investigation's result and the Slack reply that carried it."""

    post_ts: str | None
    result: dict[str, Any] | None
    posted_at: float | None = None
    text: str = ""

    @property
    def hypotheses(self) -> list[dict[str, Any]] | None:
        return None if self.result is None else list(self.result.get("hypotheses") or [])

    @property
    def top_category(self) -> str | None:
        return (self.hypotheses or [{}])[0].get("category") if self.hypotheses else None

    @property
    def inconclusive(self) -> bool:
        return bool((self.result or {}).get("inconclusive"))


@dataclass
class OpsbotState:
    """What opsbot's database says: each incident's group, its card's ts, its first RCA."""

    incidents: dict[int, GroupKey]
    card_ts: dict[str, int]
    rcas: dict[int, Rca]
    # groups folded into a storm thread: member incident id -> (storm incident id, folded at, epoch)
    folded: dict[int, tuple[int, float]] = field(default_factory=dict)

    def rca_for(self, group: GroupKey) -> Rca | None:
        ids = sorted(i for i, key in self.incidents.items() if key == group and i in self.rcas)
        return self.rcas[ids[0]] if ids else None


def group_key_labels(group_key: str, group_by: tuple[str, ...]) -> GroupKey:
    """The group labels in an Alertmanager groupKey (`{}/{}:{cluster="a", namespace="b"}`)."""
    labels = dict(_LABEL_PAIR.findall(group_key.rpartition(":{")[2]))
    return tuple((name, labels[name]) for name in group_by if labels.get(name))


def read_opsbot_state(database: Path, group_by: tuple[str, ...]) -> OpsbotState:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        incidents = {row[0]: group_key_labels(row[1], group_by)
                     for row in connection.execute("SELECT id, group_key FROM incidents")}
        cards = {row[1]: row[0] for row in connection.execute(
            "SELECT incident_id, ts FROM slack_messages WHERE purpose = 'card'")}
        folded = {row[0]: (row[1], datetime.fromisoformat(row[2]).replace(tzinfo=UTC).timestamp())
                  for row in connection.execute(
                      "SELECT id, merged_into_id, created_at FROM incidents WHERE merged_into_id IS NOT NULL "
                      "AND card_version = 0")}
        rcas: dict[int, Rca] = {}
        for incident_id, post_ts, result in connection.execute(
                "SELECT incident_id, post_ts, result FROM investigations ORDER BY round"):
            rcas.setdefault(incident_id, Rca(post_ts, json.loads(result) if result else None))
    return OpsbotState(incidents, cards, rcas, folded)


def opsbot_side(calls: list, state: OpsbotState) -> SideCount:
    """Every message is attributed through its thread's root, the incident's card. A group folded
    into a storm thread has no message of its own: it is first told by the storm thread's first
    write (a post, or the card's edit that counts it) after it was folded."""
    side = SideCount()
    by_post_ts = {rca.post_ts: rca for rca in state.rcas.values() if rca.post_ts}
    writes: dict[int, list[float]] = {}  # incident -> when its card or thread was written to
    for call in calls:
        if call.method not in SLACK_WRITES:
            continue
        if not call.ok:
            side.failed += 1
            continue
        written = state.card_ts.get(str(call.args.get("thread_ts") or call.args.get("ts") or call.response.get("ts")))
        if written is not None:
            writes.setdefault(written, []).append(call.at)
        if call.method == "chat.update":
            side.updates += 1
            continue
        thread_ts = call.args.get("thread_ts")
        root = thread_ts or call.response.get("ts")
        incident = state.card_ts.get(str(root))
        channel_level = not thread_ts or bool(call.args.get("reply_broadcast"))
        side.broadcasts += bool(thread_ts) and channel_level
        side.add(state.incidents.get(incident) if incident is not None else None, call.at, channel_level)
        if call.method == "files.completeUploadExternal":
            side.files += 1
        rca = by_post_ts.get(call.response.get("ts"))
        if rca is not None and rca.posted_at is None:
            rca.posted_at = call.at
            rca.text = message_text({"blocks": call.args.get("blocks"), "text": call.args.get("text", "")})
    for member, (storm, folded_at) in state.folded.items():
        told = [at for at in writes.get(storm, []) if at >= folded_at]
        if told and state.incidents.get(member):
            group = side.per_group.setdefault(state.incidents[member], GroupCount())
            group.first_at = min(told) if group.first_at is None else min(group.first_at, min(told))
    return side


def process_usage(pid: int) -> dict[str, float]:
    """CPU seconds (user + system, reaped children included) and the sum of peak RSS over `pid`
    and its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    pending, seen = [pid], []
    while pending:
        current = pending.pop()
        seen.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                pending += [int(child) for child in (task / "children").read_text().split()]
    cpu = rss_kb = 0.0
    for current in seen:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            cpu += sum(int(value) for value in fields[11:15]) / tick  # utime stime cutime cstime
            status = Path(f"/proc/{current}/status").read_text()
            rss_kb += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return {"cpu_seconds": cpu, "peak_rss_mb": rss_kb / 1024, "processes": float(len(seen))}
