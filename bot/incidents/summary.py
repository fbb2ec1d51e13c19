"""What an incident is about, derived from its alerts: pure functions, no database.

The summary reads each alert through a few derived fields (`AlertScope`: normalised severity,
cluster, namespace, service, target), which are stored beside the alert when it arrives, so
that the incident flow can summarise a large incident from one GROUP BY over those columns
(`AlertGroup`) instead of loading every alert. `summarise` over individual alerts and
`summarise_groups` over such groups give the same result by construction: the first is the
second after grouping.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.alerts.service_name import derived_service
from bot.incidents.service import normalise_severity, severity_rank
from bot.redaction import redact

TITLE_MAX = 300
SCOPE_MAX = 128  # cluster, namespace (Kubernetes allows 63); service gets SERVICE_MAX
SERVICE_MAX = 256
TARGET_MAX = 256
# Labels naming the one thing an alert is about (for "how many distinct targets are firing").
TARGET_LABELS = ("pod", "node", "instance", "persistentvolumeclaim", "job_name")


@dataclass(frozen=True)
class AlertFacts:
    """The parts of an alert the summary needs (works for new and stored alerts alike)."""

    name: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str | None


@dataclass(frozen=True)
class AlertScope:
    """What one alert says about its incident's scope, derived once when it arrives."""

    severity: str
    cluster: str | None
    namespace: str | None
    service: str | None
    target: str


@dataclass(frozen=True)
class AlertGroup:
    """`count` alerts of one incident that agree on every field the summary reads."""

    name: str
    status: str
    severity: str
    cluster: str | None
    namespace: str | None
    service: str | None
    count: int = 1


@dataclass(frozen=True)
class Lead:
    """The alert whose annotations and link speak for the incident: the first firing one
    (the first of all once everything resolved)."""

    annotations: dict[str, str]
    generator_url: str | None


@dataclass(frozen=True)
class IncidentSummary:
    title: str
    severity: str
    cluster: str | None
    namespace: str | None
    service: str | None
    alert_count: int
    firing_count: int
    links: dict[str, str]


def _common(values: Iterable[str | None]) -> str | None:
    distinct = {value for value in values if value}
    return distinct.pop() if len(distinct) == 1 else None


def _cut(value: str | None, limit: int) -> str | None:
    return value[:limit] if value else value


def alert_scope(labels: dict[str, str], fingerprint: str) -> AlertScope:
    """The derived fields stored with an alert (see the module docstring)."""
    target = next((labels[key] for key in TARGET_LABELS if labels.get(key)), fingerprint)
    return AlertScope(
        severity=normalise_severity(labels.get("severity")),
        cluster=_cut(labels.get("cluster") or None, SCOPE_MAX),
        namespace=_cut(labels.get("namespace") or None, SCOPE_MAX),
        service=_cut(derived_service(labels), SERVICE_MAX),
        target=str(target)[:TARGET_MAX],
    )


def _safe_url(value: str | None) -> str | None:
    """An http(s) link from an untrusted annotation, or None. A URL carrying credentials
    (user:password@, or a secret-looking query parameter) is dropped whole: a redacted link
    is useless, and the secret must not reach Slack."""
    if not value or not value.startswith(("https://", "http://")):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.username or parts.password or redact(value) != value:
        return None
    return value


def summarise(alerts: Sequence[AlertFacts], external_url: str | None = None) -> IncidentSummary:
    """Title, severity and scope of an incident from all of its alerts, in arrival order."""
    if not alerts:
        raise ValueError("an incident summary needs at least one alert")
    groups = Counter()
    for alert in alerts:
        scope = alert_scope(alert.labels, "")
        groups[(alert.name, alert.status, scope.severity, scope.cluster, scope.namespace, scope.service)] += 1
    lead = next((alert for alert in alerts if alert.status == "firing"), alerts[0])
    return summarise_groups([AlertGroup(*key, count=count) for key, count in groups.items()],
                            Lead(lead.annotations, lead.generator_url), external_url)


def summarise_groups(groups: Sequence[AlertGroup], lead: Lead, external_url: str | None = None) -> IncidentSummary:
    """Title, severity and scope of an incident from its grouped alerts.

    Severity is the highest among firing alerts (all alerts once everything resolved); scope
    labels are reported only when every alert agrees, so a mixed incident never names a
    namespace it does not own.
    """
    if not groups:
        raise ValueError("an incident summary needs at least one alert")
    firing = [group for group in groups if group.status == "firing"]
    considered = firing or list(groups)
    names = sorted({group.name for group in considered})
    summary = lead.annotations.get("summary") or lead.annotations.get("message") or ""
    title = names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more"
    if summary and len(names) == 1:
        title = f"{title}: {summary}"
    severity = max((group.severity for group in considered), key=severity_rank)
    links = {
        "alertmanager": _safe_url(external_url),
        "source": _safe_url(lead.generator_url),
        "runbook": _safe_url(lead.annotations.get("runbook_url")),
        "dashboard": _safe_url(lead.annotations.get("dashboard_url")),
    }
    return IncidentSummary(
        title=" ".join(title.split())[:TITLE_MAX],
        severity=severity,
        cluster=_common(group.cluster for group in groups),
        namespace=_common(group.namespace for group in groups),
        service=_common(group.service for group in groups),
        alert_count=sum(group.count for group in groups),
        firing_count=sum(group.count for group in firing),
        links={key: value for key, value in links.items() if value},
    )
