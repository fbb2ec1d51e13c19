"""Policy files (`policies/*.yaml`): the rules every proposed step is checked against.

Strict: an unknown key is an error, so a typo cannot silently weaken a rule. Several files
combine into one policy: lists add up, named maps merge, a kill switch set in any file is set.
Glob patterns (`prod-*`) match namespaces and runbook ids; `*` matches everything.

    id: default
    kill_switch: {global: false, namespaces: [], runbooks: []}
    freeze_windows:
      - {id: friday-evening, cron: "* 16-23 * * fri", timezone: Europe/Berlin, namespaces: ["prod-*"],
         reason: "no changes on Friday evenings"}
    channels: []                      # channel ids/names where buttons act; empty: any
    actors: {users: [], groups: []}   # who may act at all; empty: anyone
    approver_groups:
      oncall: {users: [U01ONCALL], slack_usergroup: S0ONCALL, pagerduty_schedules: [P1ONCAL]}
    freeze_managers: [oncall]         # groups allowed to /ops freeze and /ops unfreeze
    merge_managers: [oncall]          # groups allowed to Merge incidents; absent: anyone channels/actors allow
    incident_managers: [oncall]       # groups allowed to resolve, reopen, re-grade and declare; absent: anyone
    blast_radius: {max_pods: 20, max_replica_factor: 2.0, max_namespaces: 1}
    rate_limits:
      - {id: restarts, runbooks: [restart-deployment], per: target, max: 3, window_seconds: 3600}
    concurrency_per_target: 1
    environments:
      production: {namespaces: ["prod-*"], labels: {environment: production}}
    autonomy:
      default: approve
      rules: [{runbooks: [delete-pod], environments: [staging], level: auto}]
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from bot.policy.cron import CronError, parse_cron, zone

AutonomyLevel = Literal["observe", "suggest", "approve", "auto"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KillSwitch(_Strict):
    global_: bool = Field(False, alias="global")
    namespaces: list[str] = Field(default_factory=list)
    runbooks: list[str] = Field(default_factory=list)


class FreezeWindow(_Strict):
    id: str
    cron: str
    timezone: str = "UTC"
    namespaces: list[str] = Field(default_factory=lambda: ["*"])
    runbooks: list[str] = Field(default_factory=lambda: ["*"])
    reason: str = "change freeze"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            parse_cron(value)
        except CronError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zone(value)
        except CronError as exc:
            raise ValueError(str(exc)) from None
        return value


class Actors(_Strict):
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)


PagerDutyId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,64}$")]


class ApproverGroup(_Strict):
    """Members: the listed Slack ids, a Slack user group's members, and whoever PagerDuty has
    on call now in the listed schedules or escalation policies (matched to Slack by email)."""

    users: list[str] = Field(default_factory=list)
    slack_usergroup: str | None = None
    pagerduty_schedules: list[PagerDutyId] = Field(default_factory=list)
    pagerduty_escalation_policies: list[PagerDutyId] = Field(default_factory=list)

    @property
    def uses_pagerduty(self) -> bool:
        return bool(self.pagerduty_schedules or self.pagerduty_escalation_policies)


class BlastRadius(_Strict):
    max_pods: int = Field(20, ge=0)
    max_replica_factor: float = Field(2.0, gt=0)
    max_namespaces: int = Field(1, ge=1)


class RateLimit(_Strict):
    id: str
    runbooks: list[str] = Field(default_factory=lambda: ["*"])
    per: Literal["target", "namespace", "runbook"] = "target"
    max: int = Field(ge=0)
    window_seconds: int = Field(gt=0)


class Environment(_Strict):
    namespaces: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)


class AutonomyRule(_Strict):
    runbooks: list[str] = Field(default_factory=lambda: ["*"])
    environments: list[str] = Field(default_factory=lambda: ["*"])
    level: AutonomyLevel


class Autonomy(_Strict):
    default: AutonomyLevel = "approve"
    rules: list[AutonomyRule] = Field(default_factory=list)


class Policy(_Strict):
    id: str = "default"
    description: str = ""
    kill_switch: KillSwitch = KillSwitch()
    freeze_windows: list[FreezeWindow] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)
    actors: Actors = Actors()
    approver_groups: dict[str, ApproverGroup] = Field(default_factory=dict)
    freeze_managers: list[str] = Field(default_factory=list)
    merge_managers: list[str] | None = None  # None: not restricted beyond channels and actors
    incident_managers: list[str] | None = None  # resolve, reopen, severity, declare; None: as actors allow
    blast_radius: BlastRadius = BlastRadius()
    rate_limits: list[RateLimit] = Field(default_factory=list)
    concurrency_per_target: int = Field(1, ge=1)
    environments: dict[str, Environment] = Field(default_factory=dict)
    autonomy: Autonomy = Autonomy()


def matches(patterns: list[str], value: str | None) -> bool:
    return any(fnmatchcase(value or "", pattern) for pattern in patterns)


class PolicyError(ValueError):
    """A policy file that cannot be used: one line per problem, naming the file and field."""


def _problems(path: Path, exc: ValidationError) -> list[str]:
    return [f"{path.name}: {'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
            for error in exc.errors()]


def combine(policies: list[Policy]) -> Policy:
    """One policy from several: lists add up, maps merge (later wins), kill switches OR, and
    any other setting is taken from the last file that sets it. Only what a file sets counts:
    a file that leaves a setting out never resets another file's (its defaults are not
    settings), so adding a file can never silently loosen `actors`, `blast_radius` and the like."""
    if not policies:
        return Policy()
    if len(policies) == 1:
        return policies[0]
    data: dict = {}
    for policy in policies:
        for key, value in policy.model_dump(by_alias=True, exclude_unset=True).items():
            if isinstance(value, list):
                data[key] = (data.get(key) or []) + value
            elif isinstance(value, dict) and key in ("approver_groups", "environments"):
                data[key] = {**data.get(key, {}), **value}
            elif key == "kill_switch":
                old = data.get(key, {"global": False, "namespaces": [], "runbooks": []})
                data[key] = {"global": old["global"] or value.get("global", False),
                             "namespaces": old["namespaces"] + value.get("namespaces", []),
                             "runbooks": old["runbooks"] + value.get("runbooks", [])}
            elif value is not None or key not in data:
                data[key] = value
    data["id"] = "+".join(p.id for p in policies)
    return Policy.model_validate(data)


def load_policies(folder: Path) -> Policy:
    """All `*.yaml` files in `folder` combined; PolicyError lists every problem."""
    problems: list[str] = []
    policies: list[Policy] = []
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            document = yaml.safe_load(path.read_text()) or {}
            policies.append(Policy.model_validate(document))
        except yaml.YAMLError as exc:
            problems.append(f"{path.name}: not YAML: {str(exc).splitlines()[0]}")
        except ValidationError as exc:
            problems += _problems(path, exc)
    if problems:
        raise PolicyError("\n".join(problems))
    return combine(policies)
