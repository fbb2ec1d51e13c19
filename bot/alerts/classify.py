"""Incident classification: a category for every alert and incident, and severity escalation.

Pure functions over `AlertView` (what classification needs from any source's alert; a
`NormalizedAlert` has the same four attributes and can be passed as it is).

Categories are inferred from evidence in the alert, never from a table of alert names:

1. An explicit label ``opsbot_category`` (checked first) or ``category`` holding one of
   `CATEGORIES` (case-insensitive) wins outright.
2. Heartbeats (`is_heartbeat`) are ``heartbeat``.
3. Otherwise keyword rules (`_RULES`) are matched against the alert's text, tier by tier, and
   the first tier with any evidence decides:

   - the alertname, split into words (``KubeAPIErrorBudgetBurn`` -> "kube api error budget
     burn"), with the values of the labels that name a condition (``reason``, ``condition``,
     ``eviction_signal``: ``reason="ImagePullBackOff"`` is deployment evidence);
   - the ``summary`` annotation;
   - the ``description`` and ``message`` annotations;
   - the shape of the labels: a histogram bucket or quantile (``le``, ``quantile``) is latency,
     an HTTP 5xx or a failing gRPC ``code``/``status_code`` is errors. Other label values
     (namespaces, pod names) are never evidence.

   Within a tier the most cause-like category wins (`PRECEDENCE`: a certificate renewal
   *error* is a security problem, a *stuck rollout* a deployment problem, an OOM-killed restart
   saturation). Weak words (SLO/burn/budget for errors; CPU/memory/disk for saturation) count
   only when nothing stronger is in the same text: "CheckoutLatencySLOBurn" is latency,
   "NodeRAIDDiskFailure" availability, "NodeCPUHighUsage" saturation.
   No evidence at all is ``other``.

Judgement calls: a failed or unfinished Job (``KubeJobFailed``, ``KubeJobNotCompleted``) is
*availability*, not errors: the workload itself did not run to completion, like a crash-looping
pod, whereas ``errors`` means a rate of failed requests or operations (error ratios, 5xx, SLO
burn). Eviction and node pressure are saturation (the kubelet evicts because a resource ran
out); a terminated/rejected request ratio is errors (what clients see).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

CATEGORIES: tuple[str, ...] = (
    "availability",
    "latency",
    "errors",
    "saturation",
    "deployment",
    "security",
    "heartbeat",
    "other",
)

# Most cause-like first. `other` beats `heartbeat` so that a real alert grouped with a
# heartbeat still opens a thread.
PRECEDENCE: tuple[str, ...] = (
    "deployment",
    "security",
    "saturation",
    "errors",
    "latency",
    "availability",
    "other",
    "heartbeat",
)

# Well-known always-firing alerts (kube-prometheus, older prometheus-operator, dead man's
# switch services). Exact names only: "HeartbeatMissing" is a real problem, not a heartbeat.
HEARTBEAT_ALERTNAMES: frozenset[str] = frozenset(
    {"Watchdog", "InfoInhibitor", "DeadMansSwitch", "DeadManSwitch", "DeadMansSnitch", "AlwaysFiring", "Heartbeat"}
)
_HEARTBEAT_NAMES_LOWER = frozenset(name.lower() for name in HEARTBEAT_ALERTNAMES)
# A heartbeat by name only if it does not declare a paging severity: never drop a page.
_PAGING_SEVERITIES = frozenset({"critical", "high", "page"})

SEVERITIES: tuple[str, ...] = ("info", "warning", "high", "critical")  # plus "unknown"
MIN_DISTINCT_TARGETS = 3

_EXPLICIT_LABELS = ("opsbot_category", "category")
_CONDITION_LABELS = ("reason", "condition", "eviction_signal")
_LATENCY_LABELS = frozenset({"le", "quantile", "percentile"})
_STATUS_LABELS = ("code", "status_code", "http_status", "response_code", "grpc_code", "status")
_GRPC_ERRORS = frozenset({"unknown", "internal", "unavailable", "deadlineexceeded", "dataloss"})


@dataclass(frozen=True)
class AlertView:
    """What classification needs from an alert."""

    name: str  # the alertname label
    status: str  # "firing" | "resolved"
    labels: dict[str, str]
    annotations: dict[str, str]


def _rule(*fragments: str) -> re.Pattern[str]:
    """One regex per category, matched against lower-case words separated by single spaces."""
    return re.compile("|".join(rf"\b(?:{fragment})" for fragment in fragments))


_RULES: dict[str, re.Pattern[str]] = {
    "deployment": _rule(
        r"roll ?outs?\b", r"rolled (out|back)", r"roll ?back", r"generation mismatch",
        r"version (mismatch|skew)", r"different (semantic )?versions", r"image pull", r"err image",
        r"invalid image", r"config(uration)? (reload|error|inconsistent|mismatch|drift)",
        r"(failed|bad) (config|reload)", r"reload(ing)? fail", r"deploy(ment)? (failed|failing|stuck)",
        r"(sync|reconcil\w*) (fail|error)", r"out of sync\b", r"canary", r"(release|upgrade) (failed|stuck)",
    ),
    "security": _rule(
        r"cert(ificate)?s?\b", r"tls\b", r"ssl\b", r"x 509\b", r"expir", r"unauthori[sz]ed",
        r"forbidden", r"audit", r"vulnerab", r"cve\b", r"intrusion", r"brute ?force",
        r"(auth|authentication|login) fail", r"security", r"privilege", r"malware", r"suspicious",
    ),
    "saturation": _rule(
        r"inodes?\b", r"ephemeral storage", r"throttl", r"oom\b", r"out of (memory|space)",
        r"no space", r"low space", r"pressure", r"quota", r"full\b", r"fill(s|ing)? up", r"capacity",
        r"saturat", r"overcommit", r"(?<!budget )exhaust", r"maxed out", r"at max", r"max(imum)? replicas",
        r"evict", r"connection pool", r"too many (open )?(files|connections|pods|threads)",
        r"rejected connections", r"file descriptors?", r"rate limit", r"conntrack", r"load average",
        r"high (\w+ )?load\b", r"limit (hit|reached|exceeded)", r"(near|at|hit|reached|exceed\w*) (its |the )?(\w+ )?limits?\b",
        r"lag\b", r"lagging", r"behind\b", r"backlog",
    ),
    "errors": _rule(
        r"errors?\b", r"errs\b", r"erroring", r"failures\b", r"failing\b", r"fail(ure)? rate", r"5 ?xx\b",
        r"exceptions?\b", r"panic", r"error budget", r"failed to (?!complete|start)\w+",
        r"failed (\w+ )?(requests|calls|queries|writes|reads|rpcs)", r"(terminated|rejected|dropped) (\w+ )*requests",
        r"unsuccessful", r"timeouts?\b", r"timed out", r"bad gateway",
    ),
    "latency": _rule(
        r"latenc", r"slow", r"duration", r"p ?9\d\b", r"9\dth percentile", r"percentile",
        r"response ?times?\b", r"round ?trip", r"rtt\b", r"delay", r"apdex", r"too long",
    ),
    "availability": _rule(
        r"down\b", r"unavailab", r"not available", r"availab", r"not ready", r"unready",
        r"non ?ready", r"readiness", r"absent", r"missing\b", r"disappeared", r"crash",
        r"restart", r"killed\b", r"unreachable", r"not reachable", r"not connected", r"disconnected",
        r"connection (lost|refused)", r"unhealthy", r"healthy (pods|replicas)", r"degraded",
        r"not enough (healthy|ready|replicas)", r"replicas? mismatch",
        r"not matched (the )?(expected|desired) number of replicas", r"no (healthy|ready)\b",
        r"no endpoints", r"no leader", r"leader changes", r"quorum", r"insufficient (members|replicas|nodes)",
        r"outage", r"flapping", r"waiting\b", r"pending\b", r"stuck", r"not scheduled", r"mis ?scheduled",
        r"unschedulable", r"not (running|ingesting|receiving|processing|scraping)", r"not complet",
        r"did not complete", r"failed to (complete|start)", r"failure\b", r"probes? fail", r"health ?check",
        r"(jobs?|pods?|containers?|services?|units?|backups?|tasks?|nodes?) (has |have )?failed",
        r"failed (jobs?|pods?|containers?)", r"no data\b",
    ),
}

# Weak evidence counts only when the same text holds no evidence above. Budget language says
# *that* an objective is at risk, not which one ("LatencySLOBurn" is latency); a resource noun
# names what is involved, not what is wrong ("NodeRAIDDiskFailure" is availability).
_WEAK_RULES: dict[str, re.Pattern[str]] = {
    "errors": _rule(r"slos?\b", r"burn", r"budget"),
    "saturation": _rule(
        r"cpu\b", r"memory\b", r"mem\b", r"ram\b", r"disk", r"file ?system", r"(node|image)fs\b",
        r"usage\b", r"utili[sz]ation", r"io\b",
    ),
}


def _words(text: str) -> str:
    """Lower-case words separated by single spaces: CamelCase split, template markup dropped."""
    text = re.sub(r"\{\{.*?\}\}", " ", text, flags=re.S)
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)  # KubePod -> Kube Pod, P99Latency -> P99 Latency
    text = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", " ", text)  # APIError -> API Error
    text = re.sub(r"(?<=[A-Za-z])(?=\d)", " ", text)  # P99 -> P 99, HTTP5xx -> HTTP 5xx
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


CACHED_TEXT_MAX = 512  # longer texts (free-form descriptions) are rare and not worth keeping


def _evidence(text: str) -> frozenset[str]:
    """Categories a text gives evidence for. Short texts are cached: a storm repeats the
    same alert names and summaries thousands of times."""
    return _cached_evidence(text) if len(text) <= CACHED_TEXT_MAX else _text_evidence(text)


def _text_evidence(text: str) -> frozenset[str]:
    words = _words(text)
    found = {category for category, pattern in _RULES.items() if pattern.search(words)}
    return frozenset(found or {category for category, pattern in _WEAK_RULES.items() if pattern.search(words)})


_cached_evidence = functools.lru_cache(maxsize=4096)(_text_evidence)


def _label_shape_evidence(labels: Mapping[str, str]) -> set[str]:
    found: set[str] = set()
    if _LATENCY_LABELS & set(labels):
        found.add("latency")
    for key in _STATUS_LABELS:
        value = str(labels.get(key, "")).strip().lower()
        if re.fullmatch(r"5(\d\d|xx)", value) or value in _GRPC_ERRORS:
            found.add("errors")
    return found


def _most_cause_like(categories: Iterable[str]) -> str:
    return min(categories, key=PRECEDENCE.index)


def combine_categories(categories: Iterable[str]) -> str:
    """The incident category from its counted alerts' own categories (`categorise_alert`).

    Equal to `categorise` over the same alerts: an agreed explicit label is what every
    alert's own category already is. Lets a caller store each alert's category once instead
    of re-classifying the whole incident on every notification. No categories: ``other``.
    """
    return min(categories, key=PRECEDENCE.index, default="other")


def _explicit_category(alert: AlertView) -> str | None:
    for key in _EXPLICIT_LABELS:
        value = str(alert.labels.get(key, "")).strip().lower()
        if value in CATEGORIES:
            return value
    return None


def is_heartbeat(alert: AlertView) -> bool:
    """True for alerts that fire all the time to prove the pipeline works; they never open a thread.

    - an explicit valid category label decides (``category="heartbeat"`` yes, any other no);
    - otherwise a label ``type="heartbeat"``;
    - otherwise the alertname is one of `HEARTBEAT_ALERTNAMES` (case-insensitive) and its
      ``severity`` is not a paging one (critical/high/page): kube-prometheus ships Watchdog and
      InfoInhibitor with ``severity="none"``; a page that merely shares the name is not dropped.
    """
    explicit = _explicit_category(alert)
    if explicit is not None:
        return explicit == "heartbeat"
    if str(alert.labels.get("type", "")).strip().lower() == "heartbeat":
        return True
    severity = str(alert.labels.get("severity", "")).strip().lower()
    return alert.name.strip().lower() in _HEARTBEAT_NAMES_LOWER and severity not in _PAGING_SEVERITIES


def categorise_alert(alert: AlertView) -> str:
    """The category of one alert (see the module docstring for the rules)."""
    explicit = _explicit_category(alert)
    if explicit is not None:
        return explicit
    if is_heartbeat(alert):
        return "heartbeat"
    labels, notes = alert.labels, alert.annotations
    condition_values = " ".join(str(labels[key]) for key in _CONDITION_LABELS if key in labels)
    tiers = (
        lambda: _evidence(f"{alert.name} {condition_values}"),
        lambda: _evidence(notes.get("summary", "")),
        lambda: _evidence(f"{notes.get('description', '')} {notes.get('message', '')}"),
        lambda: _label_shape_evidence(labels),
    )
    for tier in tiers:
        found = tier()
        if found:
            return _most_cause_like(found)
    return "other"


def categorise(alerts: Sequence[AlertView]) -> str:
    """The incident's category.

    Only firing alerts count (all of them when every alert is resolved). When every counted
    alert carries the same explicit category label, that label wins. Otherwise each alert is
    categorised and the most cause-like category wins (`PRECEDENCE`: deployment > security >
    saturation > errors > latency > availability > other > heartbeat), a total order, so the
    result never depends on the alerts' order. So an incident is ``heartbeat`` only when all its
    alerts are heartbeats. No alerts at all: ``other``.
    """
    firing = [alert for alert in alerts if alert.status.strip().lower() == "firing"]
    counted = firing or list(alerts)
    if not counted:
        return "other"
    explicit = {_explicit_category(alert) for alert in counted}
    if len(explicit) == 1:
        (agreed,) = explicit
        if agreed is not None:
            return agreed
    return _most_cause_like(categorise_alert(alert) for alert in counted)


def escalated_severity(
    base: str, firing_count: int, distinct_targets: int, thresholds: tuple[int, int] = (10, 50)
) -> str:
    """The incident's severity, raised when a storm of related alerts fires.

    Severities are ``info < warning < high < critical`` plus ``unknown`` (anything else,
    case-insensitive). With at least `MIN_DISTINCT_TARGETS` (3) distinct targets (pods, nodes,
    instances), ``thresholds[0]`` firing alerts raise the base one level and ``thresholds[1]``
    two levels, capped at critical. ``unknown`` counts as warning when raised and is returned
    unchanged otherwise. Never lowers.
    """
    low, high = thresholds
    if not 0 < low <= high:
        raise ValueError(f"thresholds must satisfy 0 < low <= high, got {thresholds!r}")
    severity = base.strip().lower()
    if severity not in SEVERITIES:
        severity = "unknown"
    steps = 0
    if distinct_targets >= MIN_DISTINCT_TARGETS:
        steps = 2 if firing_count >= high else 1 if firing_count >= low else 0
    if steps == 0:
        return severity
    start = SEVERITIES.index("warning" if severity == "unknown" else severity)
    return SEVERITIES[min(start + steps, len(SEVERITIES) - 1)]
