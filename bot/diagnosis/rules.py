"""The ranking rules, declared: a name, a weight and why, applied by name. Pure.

Analyzers detect (their base confidence says how telling the detector's evidence is); the
rules adjust what the detectors found, for reasons that hold across causes: an explicit
message beats timing, a cause upstream of the symptom explains it, a fault that does not
follow the version is not the version's. Each application is recorded on the hypothesis
(`Hypothesis.rules`), so the RCA, `opsbot eval --json` and the timeline show what raised and
what lowered every answer. Weights live here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.diagnosis.model import Hypothesis


@dataclass(frozen=True)
class Rule:
    name: str
    weight: float  # added to the confidence (negative: lowers it)
    why: str


RULES: dict[str, Rule] = {rule.name: rule for rule in (
    # engine: across analyzers
    Rule("upstream_cause", 0.05, "a cause in a dependency the alerted workload's errors name explains the symptom"),
    Rule("explained_by_its_cause", -0.15, "the dependency 'is not serving' because of a cause its own evidence names"),
    Rule("consequence_of_a_confident_cause", -0.1, "a node that is down takes its capacity with it"),
    Rule("superseded_by_a_later_success", -0.4, "the Job's CronJob has succeeded since it failed: history"),
    # a recent rollout (bad_deploy)
    Rule("program_errors_after_release", 0.05, "the new revision's pods print program or configuration errors"),
    Rule("release_changes_nothing_that_runs", -0.35, "the new revision changes no image, command, env or probe"),
    Rule("fault_does_not_follow_the_version", -0.35, "pods of the previous revision fail too"),
    Rule("new_revision_healthy", -0.3, "pods of the new revision itself are healthy"),
    Rule("new_pods_only_pending", -0.4, "the new pods are not scheduled: that is placement, not the release"),
    # configuration (config_error)
    Rule("release_touched_this_setting", -0.25, "a recent rollout changed exactly these settings: a bad rollout"),
    # load (capacity)
    Rule("pods_crash", -0.3, "pods are crashing: a fault, not only load"),
    Rule("cpu_limit_throttles", -0.15, "heavy CPU throttling: the limit may be the bottleneck"),
)}


def apply(hypothesis: Hypothesis, name: str, times: int = 1) -> None:
    """Adjust `hypothesis` by the rule `name` (`times` 0 applies nothing) and record it."""
    if times <= 0:
        return
    rule = RULES[name]
    hypothesis.confidence = max(0.0, min(1.0, hypothesis.confidence + rule.weight * times))
    hypothesis.rules.append(f"{name} {rule.weight * times:+.2f}")
