"""`/ops explain <alert name>`: the alerting rule as Prometheus holds it, and what it meant here.

Two sources, read apart so that neither can fail the answer:

- Prometheus' `/api/v1/rules?type=alert` (every cluster's Prometheus the bot knows, first one
  holding the rule wins): the rule's expression, `for:`, labels, annotations and runbook URL.
  Fetched before the database snapshot is opened (`read_rules`), bounded in time; a Prometheus
  that is not configured, unreachable or answering nonsense becomes one line in the answer.
- the database: the `Alert` rows of that name first seen in the 30 days before `now`, their
  incidents, and the category of each incident's latest finished RCA ("what it usually turned
  out to be").

Invariants: reads only; the same rules and rows give the same answer (`now` is passed in, no
clock is read); annotations are untrusted text, kept as plain lines for the renderers to escape.
A name neither Prometheus nor the database knows is `NotAnswered`, unless Prometheus could not
be asked: then the answer says so instead of claiming the rule does not exist.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.ask.explain import Explanation, NotAnswered, Part
from bot.context.clusters import ClusterDirectory
from bot.db.models import Alert, Incident, Investigation
from bot.diagnosis.model import CATEGORY_TITLES

WINDOW = timedelta(days=30)
RULES_TIMEOUT_SECONDS = 3.0
MAX_ANNOTATION_CHARS = 500
MAX_INCIDENTS_SHOWN = 3
CAMEL_CASE = re.compile(r"[A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+")


def looks_like_alert(word: str) -> bool:
    """A CamelCase word (`KubePodCrashLooping`): what the kube-prometheus rules are called."""
    return bool(CAMEL_CASE.fullmatch(word))


@dataclass(frozen=True)
class RulesRead:
    """The alerting rules of every reachable Prometheus (`cluster` → groups), and one line per
    Prometheus that could not be read."""

    groups: dict[str | None, list[dict[str, Any]]] = field(default_factory=dict)
    failures: tuple[str, ...] = ()

    def find(self, name: str) -> tuple[str | None, dict[str, Any], dict[str, Any]] | None:
        """(cluster, group, rule) of the first alerting rule called `name`, or None."""
        for cluster, groups in self.groups.items():
            for group in groups:
                for rule in group.get("rules") or []:
                    if rule.get("type", "alerting") == "alerting" and rule.get("name") == name:
                        return cluster, group, rule
        return None

    def names(self) -> set[str]:
        return {str(r.get("name")) for groups in self.groups.values() for g in groups for r in g.get("rules") or []
                if r.get("type", "alerting") == "alerting"}


def _prometheus_urls(clusters: ClusterDirectory) -> list[tuple[str | None, str | None]]:
    if clusters.names:
        return [(name, access.prometheus_url) for name in clusters.names if (access := clusters.resolve(name))]
    default = clusters.resolve(None)
    return [(None, default.prometheus_url if default else None)]


def read_rules(clusters: ClusterDirectory, timeout_seconds: float = RULES_TIMEOUT_SECONDS) -> RulesRead:
    """Every configured Prometheus' alerting rules; never raises (a failure is a line)."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    failures = []
    for cluster, url in _prometheus_urls(clusters):
        where = f"Prometheus of {cluster}" if cluster else "Prometheus"
        if not url:
            failures.append(f"Could not read the rule: {where} is not configured.")
            continue
        try:
            response = requests.get(f"{url.rstrip('/')}/api/v1/rules", params={"type": "alert"},
                                    timeout=timeout_seconds)
            response.raise_for_status()
            groups[cluster] = list(response.json()["data"]["groups"])
        except requests.Timeout:
            failures.append(f"Could not read the rule: {where} did not answer within {timeout_seconds:g} s.")
        except requests.RequestException as exc:
            status = getattr(exc.response, "status_code", None)
            failures.append(f"Could not read the rule: {where} " + (f"answered HTTP {status}." if status
                                                                     else "is unreachable."))
        except (ValueError, KeyError, TypeError):
            failures.append(f"Could not read the rule: {where} answered something that is not a rules list.")
    return RulesRead(groups, tuple(failures))


def _one_line(text: Any, limit: int = MAX_ANNOTATION_CHARS) -> str:
    words = " ".join(str(text).split())
    return words if len(words) <= limit else words[: limit - 1] + "…"


def _duration(seconds: Any) -> str:
    seconds = int(float(seconds or 0))
    if not seconds:
        return "at once (no for:)"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _rule_parts(found: tuple[str | None, dict[str, Any], dict[str, Any]] | None, read: RulesRead) -> list[Part]:
    if found is None:
        missing = [] if not read.groups else ["No Prometheus the bot reads has an alerting rule of this name."]
        return [Part("The rule", tuple(missing + list(read.failures)))]
    cluster, group, rule = found
    annotations = dict(rule.get("annotations") or {})
    meaning = [_one_line(annotations[k]) for k in ("summary", "description", "message") if annotations.get(k)]
    labels = ", ".join(f"{k}={v}" for k, v in sorted((rule.get("labels") or {}).items()))
    where = f"rule group {group.get('name')}" + (f" of the Prometheus of {cluster}" if cluster else "")
    firing = [a for a in rule.get("alerts") or [] if a.get("state") == "firing"]
    pending = [a for a in rule.get("alerts") or [] if a.get("state") == "pending"]
    rule_lines = [f"Expression: {_one_line(rule.get('query'), 1500)}",
                  f"Fires after the expression holds for {_duration(rule.get('duration'))}.",
                  f"Labels: {labels or 'none'}.", f"From {where}.",
                  f"Now: {len(firing)} series firing, {len(pending)} pending."]
    if rule.get("health") == "err":
        rule_lines.append(f"The rule fails to evaluate: {_one_line(rule.get('lastError'))}")
    others = [f"{k}: {_one_line(v)}" for k, v in sorted(annotations.items())
              if k not in ("summary", "description", "message", "runbook_url")]
    runbook = annotations.get("runbook_url")
    return [Part("What the rule means", tuple(meaning) or ("The rule has no summary or description.",)),
            Part("The rule", tuple(rule_lines) + read.failures),
            Part("Annotations and runbook", tuple(others) + (f"Runbook: {runbook}" if runbook else
                                                             "No runbook_url annotation.",))]


def _history(session: Session, name: str, now: datetime) -> tuple[int, list[tuple[int, str, str | None]]]:
    """(alert rows, [(incident id, title, category of its latest finished RCA)]) in the window."""
    since = now - WINDOW
    rows = session.execute(select(func.count(Alert.id)).where(Alert.name == name, Alert.first_seen_at >= since,
                                                              Alert.first_seen_at <= now)).scalar_one()
    incidents = session.execute(
        select(Incident.id, Incident.title).where(Incident.id.in_(
            select(Alert.incident_id).where(Alert.name == name, Alert.first_seen_at >= since,
                                            Alert.first_seen_at <= now)))
        .order_by(Incident.id.desc())).all()
    found = []
    for incident_id, title in incidents:
        latest = session.execute(select(Investigation).where(Investigation.incident_id == incident_id)
                                 .order_by(Investigation.round.desc())).scalars().first()
        report = latest.result if latest is not None and latest.status == "done" else None
        top = ((report or {}).get("hypotheses") or [{}])[0]
        found.append((incident_id, title, top.get("category") if report else None))
    return rows, found


def _history_parts(rows: int, incidents: list[tuple[int, str, str | None]]) -> list[Part]:
    if not rows:
        return [Part("Here in the last 30 days", ("It did not fire here.",))]
    shown = ", ".join(f"INC-{i}" for i, _, _ in incidents[:MAX_INCIDENTS_SHOWN]) + \
        (f" and {len(incidents) - MAX_INCIDENTS_SHOWN} more" if len(incidents) > MAX_INCIDENTS_SHOWN else "")
    fired = [f"Fired {rows} time(s) (distinct alerts) in {len(incidents)} incident(s): {shown}."]
    causes = Counter(c or "No RCA stored" for _, _, c in incidents)
    lines = [f"{CATEGORY_TITLES.get(c, c)}: {n} of {len(incidents)}" for c, n in
             sorted(causes.items(), key=lambda item: (-item[1], item[0]))]
    return [Part("Here in the last 30 days", tuple(fired)),
            Part("What it usually turned out to be", tuple(lines))]


def explain_alert(session: Session, name: str, read: RulesRead, now: datetime) -> Explanation:
    """The rule `name` (from `read`) and its last 30 days here; NotAnswered when nothing knows it."""
    found = read.find(name)
    rows, incidents = _history(session, name, now)
    if found is None and not rows and not read.failures:
        raise NotAnswered(f"No alert named {name!r}: no Prometheus the bot reads has that rule, and it never "
                          "fired here in the last 30 days.")
    severity = ((found[2].get("labels") or {}).get("severity") if found else None)
    headline = f"Alert {name}" + (f" (severity {severity})" if severity else "") + \
        f" — fired here {rows} time(s) in the last 30 days"
    return Explanation(f"alert {name}", headline, tuple(_rule_parts(found, read) + _history_parts(rows, incidents)))
