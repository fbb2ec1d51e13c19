"""The runbook format (`runbooks/*.yaml`): documented, strict, validated before anything runs.

    id: raise-memory-limit                 # kebab-case, the file's name without .yaml
    title: Raise a container's memory limit
    owners: [platform-team]
    enabled: true
    match:                                 # when the bot proposes it
      categories: [memory_limit]           # diagnosis categories
      resource_kinds: [Deployment, StatefulSet]
      alerts: []                           # alert names (globs); empty: any
      labels: []                           # Alertmanager matchers, e.g. 'namespace=~"prod-.*"'
      facts: {}                            # diagnosis facts that must hold, e.g. {node_ready: "true"}
    params:                                # typed; filled from the diagnosis or an alert label
      namespace: {type: name, from: diagnosis.namespace}   # used as ${namespace} below
      memory: {type: quantity, from: diagnosis.suggested_memory_limit, maximum: 17179869184}
    preconditions:
      - exists: {kind: "${kind}", namespace: "${namespace}", name: "${name}"}
    steps:
      - id: raise
        title: Raise the memory limit of ${container} to ${memory}
        operation: container.set_memory      # from the operation registry, never a shell string
        input: {namespace: "${namespace}", kind: "${kind}", name: "${name}", container: "${container}",
                limit: "${memory}"}
        risk: medium
        approval: {groups: [oncall], approvals: 1, requester_may_approve: false,
                   request_ttl_seconds: 3600, approval_ttl_seconds: 900}
        blast_radius: {max_pods: 50}
        timeout_seconds: 60
        retry: {attempts: 3, on_errors: [conflict, unavailable]}
        capture: [target]
        verify: {promql: 'sum(kube_deployment_status_replicas_available{...})', compare: ">=",
                 threshold: 1, within_seconds: 300, poll_seconds: 15}
        on_failure: rollback                # stop | continue | rollback
        rollback: {operation: restore.captured}   # or {none: "why there is no safe undo"}

A step on a PostgreSQL database (an operation `postgres.*`, e.g. `postgres.create_index` of the
`create-index` runbook) verifies with SQL instead, values bound by the driver:

        verify: {database: "${database}", sql: "SELECT indisvalid FROM ... WHERE relname = %(index)s",
                 within_seconds: 60, poll_seconds: 5}

Rules beyond the schema (checked here and by `opsbot runbooks lint`): a mutating step needs a
`verify`, or a `rollback` (an operation, or `none` with a reason); `on_failure: rollback` needs a
rollback operation; every `${placeholder}` in inputs, titles and queries names a declared param
(`${...}` rather than `{...}` because PromQL uses braces);
the operation exists and its input keys are the ones it takes.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.alerts.matchers import parse_matchers

ParamType = Literal["string", "name", "integer", "number", "quantity", "boolean"]
_KEBAB = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_CATEGORIES = ("memory_limit", "cpu_limit", "bad_deploy", "config_error", "image_pull", "dependency_unreachable",
               "scheduling", "node_failure", "storage", "capacity", "certificate_expired", "quota_exceeded",
               "not_an_issue")


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def fill(text: str, values: dict[str, str]) -> str:
    """`text` with each `${name}` replaced; every name must be in `values`."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ParamSpec(_Strict):
    type: ParamType
    description: str = ""
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    default: Any = None
    source: str | None = Field(None, alias="from")  # alert.<label> | diagnosis.<fact>
    secret: bool = False
    required: bool = True

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"(alert|diagnosis)\.[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("`from` is alert.<label> or diagnosis.<fact>")
        return value


class Match(_Strict):
    categories: list[str] = Field(default_factory=list)
    resource_kinds: list[str] = Field(default_factory=list)
    alerts: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    facts: dict[str, str] = Field(default_factory=dict)

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in _CATEGORIES]
        if unknown:
            raise ValueError(f"unknown categories {unknown}; known: {', '.join(_CATEGORIES)}")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: list[str]) -> list[str]:
        for text in value:
            parse_matchers(text)
        return value


class Approval(_Strict):
    required: bool = True
    groups: list[str] = Field(default_factory=list)
    approvals: int = Field(1, ge=1, le=5)
    requester_may_approve: bool = False
    request_ttl_seconds: int = Field(3600, gt=0)
    approval_ttl_seconds: int = Field(900, gt=0)


class StepBlastRadius(_Strict):
    max_pods: int | None = Field(None, ge=0)
    max_replica_factor: float | None = Field(None, gt=0)


class Retry(_Strict):
    attempts: int = Field(1, ge=1, le=10)
    # not `on`: YAML 1.1 reads a bare `on` key as the boolean true
    on_errors: list[Literal["conflict", "unavailable", "timeout"]] = Field(
        default_factory=lambda: ["conflict", "unavailable"])


SQL_BIND = re.compile(r"%\(([A-Za-z_][A-Za-z0-9_]*)\)s")  # a value bound by the driver, never filled in


class Verify(_Strict):
    """A PromQL check (`promql`, `compare`, `threshold`), or a SQL one (`sql` on `database`):
    a query whose first column is true once the step worked. In `sql`, values are bound as
    parameters (`%(name)s`: a declared param or a value the step's operation names, see
    `sql_operations.bind_values`), never filled into the text; `${...}` is refused there."""

    promql: str | None = None
    compare: Literal[">", ">=", "<", "<=", "==", "!="] | None = None
    threshold: float | None = None
    sql: str | None = None
    database: str | None = None  # a configured database's name, usually "${database}"
    within_seconds: int = Field(300, gt=0, le=3600)
    poll_seconds: int = Field(15, gt=0, le=600)
    description: str = ""

    @model_validator(mode="after")
    def _one_kind(self) -> Verify:
        if (self.promql is None) == (self.sql is None):
            raise ValueError("a verify block has exactly one of `promql` and `sql`")
        if self.promql is not None and (self.compare is None or self.threshold is None):
            raise ValueError("a `promql` check needs `compare` and `threshold`")
        if self.sql is not None:
            if not self.database:
                raise ValueError("a `sql` check names its `database`")
            if self.compare is not None or self.threshold is not None:
                raise ValueError("a `sql` check passes when its query returns true: no `compare` or `threshold`")
            if placeholders(self.sql):
                raise ValueError("`sql` binds values as %(name)s parameters; ${...} would fill them into the text")
        return self

    def sql_binds(self) -> set[str]:
        return set(SQL_BIND.findall(self.sql or ""))

    @property
    def expectation(self) -> tuple[str, float]:
        """(compare, threshold): a SQL check holds when its query returns true (1)."""
        return ("==", 1.0) if self.sql is not None else (self.compare, self.threshold)

    @property
    def expectation_text(self) -> str:
        return "is true" if self.sql is not None else f"{self.compare} {self.threshold:g}"


class Rollback(_Strict):
    operation: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    none: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Rollback:
        if bool(self.operation) == bool(self.none):
            raise ValueError("a rollback names an `operation`, or says `none` with the reason there is no safe undo")
        return self


class Precondition(_Strict):
    exists: dict[str, str] | None = None  # {kind, namespace?, name}
    promql: Verify | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Precondition:
        if (self.exists is None) == (self.promql is None):
            raise ValueError("a precondition is either `exists` or `promql`")
        if self.promql is not None and self.promql.promql is None:
            raise ValueError("a `promql` precondition is a PromQL check")
        if self.exists is not None and not {"kind", "name"} <= set(self.exists):
            raise ValueError("`exists` needs kind and name")
        return self


class Step(_Strict):
    id: str
    title: str
    operation: str
    input: dict[str, Any] = Field(default_factory=dict)
    risk: Literal["low", "medium", "high"] = "medium"
    approval: Approval = Approval()
    blast_radius: StepBlastRadius = StepBlastRadius()
    timeout_seconds: int = Field(60, gt=0, le=3600)
    retry: Retry = Retry()
    capture: list[Literal["target"]] = Field(default_factory=list)
    verify: Verify | None = None
    on_failure: Literal["stop", "continue", "rollback"] = "stop"
    rollback: Rollback | None = None


class Runbook(_Strict):
    id: str
    title: str
    description: str = ""
    owners: list[str] = Field(min_length=1)
    enabled: bool = True
    match: Match = Match()
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    preconditions: list[Precondition] = Field(default_factory=list)
    steps: list[Step] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _KEBAB.fullmatch(value):
            raise ValueError("a runbook id is kebab-case (a-z, 0-9, inner hyphens), at most 63 characters")
        return value

    @model_validator(mode="after")
    def _placeholders(self) -> Runbook:
        declared = set(self.params)
        for where, text in self._templates():
            used = placeholders(text)
            unknown = used - declared
            if unknown:
                raise ValueError(f"{where} uses undeclared params {sorted(unknown)}")
        ids = [step.id for step in self.steps]
        if len(ids) != len(set(ids)):
            raise ValueError("step ids must be unique")
        return self

    def _templates(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for step in self.steps:
            found.append((f"steps[{step.id}].title", step.title))
            found += [(f"steps[{step.id}].input.{k}", v) for k, v in step.input.items() if isinstance(v, str)]
            if step.verify and step.verify.promql is not None:
                found.append((f"steps[{step.id}].verify.promql", step.verify.promql))
            if step.verify and step.verify.database is not None:
                found.append((f"steps[{step.id}].verify.database", step.verify.database))
            if step.rollback and step.rollback.input:
                found += [(f"steps[{step.id}].rollback.input.{k}", v) for k, v in step.rollback.input.items()
                          if isinstance(v, str)]
        for index, pre in enumerate(self.preconditions):
            if pre.exists:
                found += [(f"preconditions[{index}].exists.{k}", v) for k, v in pre.exists.items()]
            if pre.promql:
                found.append((f"preconditions[{index}].promql", pre.promql.promql))
        return found
