"""What a digest says, independent of how it is built, scheduled, stored or rendered. Pure.

A digest builder (`drift`, `credentials`, `cost`, `database`) returns one `DigestReport`. The
report holds facts, not Slack markup: `bot.slack.render.digest` turns it into Block Kit (the
first findings in the message, the long tail in an attached file) and the CLI into text.

Invariants:
- A report is never empty-handed: when there is nothing to say, `headline` says so plainly
  ("No drift: 41 objects match what is declared"), and `problems` says what could not be
  checked and why (Prometheus down, a manifest unreadable, a database unreachable). A failure
  is a line in the digest, never an exception out of a builder.
- `Finding.key` is stable across runs for the same condition on the same object, so the store
  can say "still drifted since <date>" and report a fixed finding once (`bot.digests.store`).
- Every number a reader might want to reproduce has its query in `queries` (PromQL or SQL).
- Text fields are plain text (the renderer escapes them): names, values and log lines here may
  come from the cluster or a database and are untrusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Severity = Literal["critical", "warning", "info"]
SEVERITY_ORDER: Mapping[str, int] = {"critical": 0, "warning": 1, "info": 2}
DIGEST_NAMES: tuple[str, ...] = ("drift", "credentials", "cost", "database")


@dataclass(frozen=True)
class Fix:
    """A runbook step that would repair a finding, proposed with the usual buttons and policy
    when a person asks for it from the digest. `params` are the runbook's parameters."""

    runbook: str
    params: Mapping[str, Any]
    title: str
    cluster: str | None = None


@dataclass(frozen=True)
class Finding:
    """One thing the digest reports about one object.

    key: stable identity of the condition (e.g. `drift/Deployment/shop/orders-api/spec.replicas`).
    section: the heading it is listed under ("Changed by hand", "Expiring within 21 days").
    subject: the object, as a person names it ("Deployment shop/orders-api").
    detail: one line of plain text: the field, declared versus live, who, when, how to renew...
    since: when the condition began, where the evidence says (None: unknown; the store then
      uses the first digest that saw it).
    numbers: figures used for ordering and totals (e.g. `monthly_saving`, `days_left`).
    """

    key: str
    section: str
    subject: str
    detail: str
    severity: Severity = "warning"
    since: datetime | None = None
    fix: Fix | None = None
    numbers: Mapping[str, float] = field(default_factory=dict)
    reported_since: datetime | None = None  # set by the store: the first digest that reported it


@dataclass(frozen=True)
class Attachment:
    """A file attached to the digest message (a PNG chart, the full list as Markdown)."""

    filename: str
    title: str
    content: bytes


@dataclass(frozen=True)
class DigestReport:
    """One digest run's result.

    name: one of DIGEST_NAMES. title: "Drift", "Expiring credentials", ...
    headline: one plain sentence that stands alone ("3 objects drifted", "Nothing to save").
    findings: most important first (the renderer keeps this order).
    problems: what could not be checked and why, one line each.
    notes: how the digest was made ("kustomize built with `kubectl kustomize` v5.5.0",
      "look-back 7 days, prices $0.031 per vCPU-hour").
    queries: the PromQL or SQL behind every figure, listed at the bottom.
    summary: named figures for the headline and the metrics (e.g. `monthly_saving`).
    """

    name: str
    title: str
    headline: str
    generated_at: datetime
    findings: tuple[Finding, ...] = ()
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    queries: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    summary: Mapping[str, float] = field(default_factory=dict)
    fixed: tuple[Finding, ...] = ()  # filled by the store: findings of the last run that are gone
    partial_sections: tuple[str, ...] = ()  # sections cut to their top N: a finding missing there is not fixed

    @property
    def clean(self) -> bool:
        """Nothing found and nothing failed: the plain "no drift" case."""
        return not self.findings and not self.problems


@dataclass(frozen=True)
class DigestContext:
    """What a builder may use. `clusters` is a `bot.context.clusters.ClusterDirectory` (the
    Kubernetes API client and Prometheus URL of each cluster); `base_dir` is the folder that
    relative paths in the digests file resolve against; `now` is the run's time (UTC)."""

    clusters: Any
    now: datetime
    base_dir: Any = None
    previous_summary: Mapping[str, float] = field(default_factory=dict)  # the last run's `summary`
    previous_at: datetime | None = None  # when that run was made
