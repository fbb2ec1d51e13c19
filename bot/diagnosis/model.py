"""Hypotheses and the diagnosis: what the analyzers conclude, with the evidence for and against.

Invariants:
- a hypothesis names one taxonomy category (`CATEGORIES`, the root-cause taxonomy of
  SCENARIOS.md) and the object to fix (None only for `not_an_issue`), or `unknown`: the honest
  answer that symptoms are real and no rule explains them, naming the object to look at first;
- every evidence item carries a reference a person can follow (an object and field, an event,
  a log template, a PromQL query), so nothing in the RCA is unsupported;
- confidence is in [0, 1]; `explicit` marks hypotheses backed by a message that names the cause
  (OOMKilled, "Insufficient nvidia.com/gpu", "certificate has expired") rather than by timing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.context.model import Gap, ObjectRef

CATEGORIES: tuple[str, ...] = (
    "memory_limit", "cpu_limit", "bad_deploy", "config_error", "image_pull", "dependency_unreachable",
    "scheduling", "node_failure", "storage", "capacity", "certificate_expired", "quota_exceeded", "not_an_issue",
    "unknown",
)

CATEGORY_TITLES = {
    "memory_limit": "Memory limit too low", "cpu_limit": "CPU limit too low", "bad_deploy": "Bad rollout",
    "config_error": "Configuration error", "image_pull": "Image cannot be pulled",
    "dependency_unreachable": "Dependency unreachable", "scheduling": "Pods cannot be scheduled",
    "node_failure": "Node failure", "storage": "Storage problem", "capacity": "Capacity exhausted",
    "certificate_expired": "Certificate expired", "quota_exceeded": "Quota exceeded", "not_an_issue": "Nothing to fix",
    "unknown": "Cause unknown",
}


@dataclass(frozen=True)
class Evidence:
    text: str  # one line a person reads
    source: str  # kubernetes | event | log | rollout | prometheus | alert
    ref: str  # where it comes from: "Pod shop/x status", "PromQL: ...", "Event BackOff on Pod/shop/x"


@dataclass
class Hypothesis:
    category: str
    resource: ObjectRef | None
    confidence: float
    summary: str  # the cause in one sentence, with the resource and the numbers
    supporting: list[Evidence] = field(default_factory=list)
    contradicting: list[Evidence] = field(default_factory=list)
    explicit: bool = False
    action: str = ""  # what a person should do next
    signal_key: str | None = None  # the metric that shows it best (for the graph)
    facts: dict[str, str] = field(default_factory=dict)  # values runbooks can use (container, suggested limit...)
    rules: list[str] = field(default_factory=list)  # the engine's ranking rules that raised or lowered it

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r}")
        self.confidence = max(0.0, min(1.0, self.confidence))

    @property
    def resource_text(self) -> str:
        return str(self.resource) if self.resource is not None else "-"


@dataclass
class Diagnosis:
    hypotheses: list[Hypothesis]  # ranked, most likely first
    inconclusive: bool
    gaps: list[Gap]
    subject: str  # what was investigated, in words

    @property
    def top(self) -> Hypothesis | None:
        return self.hypotheses[0] if self.hypotheses else None
