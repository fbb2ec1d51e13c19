"""The runbook catalog: load and lint `runbooks/*.yaml`, match runbooks to a diagnosis, fill
their typed parameters.

Parameters come from the diagnosis' facts (`from: diagnosis.container`) or an alert label
(`from: alert.namespace`). Both are untrusted inputs: every value is checked against its
param's type, pattern and bounds before it is used, and values only ever fill typed operation
inputs (never a command line). A runbook whose required param cannot be filled is not
proposed, and the reason is kept.

The lint is strictest for a step on a database (`postgres.*`, `sql_operations.lint_step`): it
must need approval by the `dba` group, at least two approvals, never the requester's (so no
autonomy level can run it on its own), and is never retried.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bot.alerts.matchers import parse_matchers
from bot.context.kube_facts import parse_quantity
from bot.remediation import operations, sql_operations
from bot.remediation.runbook_model import ParamSpec, Runbook, Verify, fill

_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_QUANTITY = re.compile(operations.QUANTITY)


class CatalogError(ValueError):
    """Runbook files that cannot be used: one line per problem, naming the file and field."""


@dataclass
class Catalog:
    runbooks: dict[str, Runbook]
    warnings: list[str] = field(default_factory=list)

    def get(self, runbook_id: str) -> Runbook | None:
        return self.runbooks.get(runbook_id)


def _lint(runbook: Runbook) -> tuple[list[str], list[str]]:
    """Problems (the runbook cannot be used) and warnings (it can, but look)."""
    problems, warnings = [], []
    for step in runbook.steps:
        op = operations.REGISTRY.get(step.operation) or sql_operations.REGISTRY.get(step.operation)
        if op is None:
            problems.append(f"steps[{step.id}].operation: unknown operation {step.operation!r}; known: "
                            f"{', '.join(sorted({*operations.REGISTRY, *sql_operations.REGISTRY}))}")
            continue
        if sql_operations.is_sql(step.operation):  # dba approval by two, never retried, drops only what it built
            problems += sql_operations.lint_step(runbook, step)
        problems += sql_operations.lint_verify(runbook, step)
        accepted = set(op.input_model.model_fields)
        unknown = set(step.input) - accepted
        if unknown:
            problems.append(f"steps[{step.id}].input: {sorted(unknown)} are not inputs of {step.operation} "
                            f"(it takes {sorted(accepted)})")
        if op.mutating and step.verify is None and step.rollback is None:
            problems.append(f"steps[{step.id}]: a mutating step needs a verify block, or a rollback "
                            "(an operation, or `none` with a reason)")
        if step.on_failure == "rollback" and not (step.rollback and step.rollback.operation):
            problems.append(f"steps[{step.id}]: on_failure is rollback but there is no rollback operation")
        if step.rollback and step.rollback.operation and step.rollback.operation != operations.RESTORE \
                and step.rollback.operation not in operations.REGISTRY:
            problems.append(f"steps[{step.id}].rollback.operation: unknown operation {step.rollback.operation!r}")
        if step.rollback and step.rollback.operation == operations.RESTORE and "target" not in step.capture:
            problems.append(f"steps[{step.id}]: {operations.RESTORE} needs `capture: [target]`")
        if op.mutating and step.verify is None:
            warnings.append(f"{runbook.id}: steps[{step.id}] changes the cluster without a verify block")
    for name, spec in runbook.params.items():
        if spec.type == "string" and not spec.pattern:
            warnings.append(f"{runbook.id}: params.{name} is a free string without a pattern")
    return problems, warnings


def load_catalog(folder: Path) -> Catalog:
    """Every runbook in `folder`; CatalogError lists every problem of every file at once."""
    problems: list[str] = []
    catalog = Catalog({})
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            runbook = Runbook.model_validate(yaml.safe_load(path.read_text()) or {})
        except yaml.YAMLError as exc:
            problems.append(f"{path.name}: not YAML: {str(exc).splitlines()[0]}")
            continue
        except ValidationError as exc:
            problems += [f"{path.name}: {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
                         for e in exc.errors()]
            continue
        if runbook.id != path.stem:
            problems.append(f"{path.name}: id {runbook.id!r} differs from the file name")
        if runbook.id in catalog.runbooks:
            problems.append(f"{path.name}: runbook {runbook.id!r} is defined twice")
        errors, warnings = _lint(runbook)
        problems += [f"{path.name}: {e}" for e in errors]
        catalog.warnings += warnings
        catalog.runbooks[runbook.id] = runbook
    if problems:
        raise CatalogError("\n".join(problems))
    return catalog


class ParamError(ValueError):
    pass


def check_param(name: str, spec: ParamSpec, raw: Any) -> Any:
    """`raw` converted to the param's type and checked; ParamError says what is wrong."""
    text = str(raw).strip()
    if spec.type == "boolean":
        if text.lower() not in ("true", "false"):
            raise ParamError(f"{name}: {text!r} is not true or false")
        return text.lower() == "true"
    if spec.type in ("integer", "number"):
        try:
            value: Any = int(text) if spec.type == "integer" else float(text)
        except ValueError:
            raise ParamError(f"{name}: {text!r} is not a{'n integer' if spec.type == 'integer' else ' number'}") \
                from None
        measure = float(value)
    elif spec.type == "quantity":
        if not _QUANTITY.fullmatch(text):
            raise ParamError(f"{name}: {text!r} is not a Kubernetes quantity (e.g. 512Mi, 250m)")
        value, measure = text, parse_quantity(text) or 0.0
    else:
        if spec.type == "name" and not (len(text) <= 253 and _NAME.fullmatch(text)):
            raise ParamError(f"{name}: {text!r} is not a Kubernetes name")
        if len(text) > 1024:
            raise ParamError(f"{name}: too long")
        value, measure = text, None
    if spec.pattern and not re.fullmatch(spec.pattern, text):
        raise ParamError(f"{name}: {text!r} does not match {spec.pattern}")
    if measure is not None and spec.minimum is not None and measure < spec.minimum:
        raise ParamError(f"{name}: {text} is below the minimum {spec.minimum:g}")
    if measure is not None and spec.maximum is not None and measure > spec.maximum:
        raise ParamError(f"{name}: {text} is above the maximum {spec.maximum:g}")
    return value


def resolve_params(runbook: Runbook, facts: dict[str, str], labels: dict[str, str],
                   given: dict[str, str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Typed values for the runbook's params: given explicitly, else from the diagnosis facts
    or the alert labels, else the default. Returns (values, problems)."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    given = given or {}
    unknown = set(given) - set(runbook.params)
    problems += [f"{name}: not a parameter of {runbook.id}" for name in sorted(unknown)]
    for name, spec in runbook.params.items():
        raw: Any = given.get(name)
        if raw is None and spec.source:
            origin, _, key = spec.source.partition(".")
            raw = (facts if origin == "diagnosis" else labels).get(key)
        if raw is None:
            raw = spec.default
        if raw is None:
            if spec.required:
                problems.append(f"{name}: no value ({spec.source or 'no source'} is unknown)")
            continue
        try:
            values[name] = check_param(name, spec, raw)
        except ParamError as exc:
            problems.append(str(exc))
    return values, problems


def render(template: Any, values: dict[str, Any]) -> Any:
    """Fill `${param}` placeholders (strings only); a value that is only a placeholder keeps
    its type (`"${replicas}"` → 3)."""
    if not isinstance(template, str):
        return template
    whole = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", template)
    if whole:
        return values[whole.group(1)]
    return fill(template, {k: str(v) for k, v in values.items()})


def promql_values(values: dict[str, Any]) -> dict[str, str]:
    """Values escaped for a PromQL string literal."""
    return {k: str(v).replace("\\", "\\\\").replace('"', '\\"') for k, v in values.items()}


@dataclass(frozen=True)
class Candidate:
    runbook: Runbook
    params: dict[str, Any]


def check_query(verify: Verify, params: dict[str, Any]) -> str:
    """The check as shown: PromQL with its values filled in (escaped), or the SQL as written
    (its values are bound when it runs)."""
    if verify.sql is not None:
        return " ".join(verify.sql.split())
    return fill(verify.promql, promql_values(params))


def match(catalog: Catalog, category: str, facts: dict[str, str], alerts: list[dict[str, Any]]
          ) -> tuple[list[Candidate], list[str]]:
    """Enabled runbooks that remedy `category` for this resource and these alerts, with their
    params filled; and why the others that matched the category were left out."""
    candidates: list[Candidate] = []
    skipped: list[str] = []
    labels = next((a["labels"] for a in alerts if a.get("status") == "firing"), alerts[0]["labels"] if alerts else {})
    if facts.get("gitops"):  # a GitOps controller would revert any direct change at its next sync
        return [], [f"{r.id}: {facts['gitops']} applies the object; change it in Git"
                    for r in catalog.runbooks.values() if r.enabled and category in r.match.categories]
    for runbook in catalog.runbooks.values():
        rule = runbook.match
        if not runbook.enabled or category not in rule.categories:
            continue
        if rule.resource_kinds and facts.get("kind") not in rule.resource_kinds:
            continue
        if rule.alerts and not any(fnmatchcase(a.get("name", ""), p) for a in alerts for p in rule.alerts):
            continue
        if rule.labels and not any(all(parse_matchers(m).matches(a["labels"]) for m in rule.labels) for a in alerts):
            continue
        if any(facts.get(key) != value for key, value in rule.facts.items()):
            continue
        values, problems = resolve_params(runbook, facts, labels)
        if problems:
            skipped.append(f"{runbook.id}: {'; '.join(problems)}")
            continue
        candidates.append(Candidate(runbook, values))
    return candidates, skipped
