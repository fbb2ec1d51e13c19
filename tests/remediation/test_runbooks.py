"""The runbook format, the shipped catalog, parameter checks and matching."""

from __future__ import annotations

import pytest

from bot.remediation import catalog
from bot.remediation.runbook_model import ParamSpec
from bot.runtime import REPO

BUILTIN = {"create-index", "renew-certificate", "rollback-deployment", "restart-deployment", "scale-deployment", "raise-memory-limit", "raise-cpu-limit",
           "delete-pod", "cordon-node", "drain-node", "expand-pvc", "rerun-job",
           "raise-hpa-max-replicas"}  # SCENARIOS.md's built-in ids, and the project's own
MINIMAL = """
id: {id}
title: t
owners: [me]
params:
  namespace: {{type: name}}
  name: {{type: name}}
steps:
  - id: s
    title: restart ${{name}}
    operation: deployment.restart
    input: {{namespace: "${{namespace}}", name: "${{name}}"}}
{extra}
"""


def write(tmp_path, name, extra="    rollback: {none: nothing to undo}", runbook_id=None):
    (tmp_path / f"{name}.yaml").write_text(MINIMAL.format(id=runbook_id or name, extra=extra))


def test_the_shipped_runbooks_lint_clean():
    loaded = catalog.load_catalog(REPO / "runbooks")
    assert set(loaded.runbooks) == BUILTIN
    assert all(r.owners and r.steps for r in loaded.runbooks.values())


@pytest.mark.parametrize(("extra", "problem"), [
    ("", "needs a verify block, or a rollback"),
    ("    surprise: 1", "surprise: Extra inputs are not permitted"),
    ("    on_failure: rollback\n    rollback: {none: nothing to undo}", "no rollback operation"),
    ("    rollback: {operation: restore.captured}", "needs `capture: [target]`"),
    ("    rollback: {operation: x, none: y}", "names an `operation`, or says `none`"),
    ("    verify: {promql: 'up{job=\"${job}\"}', compare: '>', threshold: 0}", "undeclared params ['job']"),
])
def test_invalid_runbooks_are_refused_with_the_file_and_field(tmp_path, extra, problem):
    write(tmp_path, "bad", extra)
    with pytest.raises(catalog.CatalogError) as refused:
        catalog.load_catalog(tmp_path)
    assert "bad.yaml" in str(refused.value) and problem in str(refused.value)


def test_ids_match_file_names_and_operations_exist(tmp_path):
    write(tmp_path, "one", runbook_id="two")
    (tmp_path / "three.yaml").write_text(MINIMAL.format(id="three", extra="    rollback: {none: x}").replace(
        "deployment.restart", "shell.run"))
    with pytest.raises(catalog.CatalogError) as refused:
        catalog.load_catalog(tmp_path)
    text = str(refused.value)
    assert "one.yaml: id 'two' differs" in text and "unknown operation 'shell.run'" in text


@pytest.mark.parametrize(("spec", "raw", "expected"), [
    ({"type": "name"}, "web-1", "web-1"),
    ({"type": "integer", "minimum": 1, "maximum": 10}, "3", 3),
    ({"type": "quantity", "maximum": 2**31}, "768Mi", "768Mi"),
    ({"type": "boolean"}, "True", True),
    ({"type": "string", "pattern": "Deployment|StatefulSet"}, "StatefulSet", "StatefulSet"),
])
def test_parameters_are_typed(spec, raw, expected):
    assert catalog.check_param("p", ParamSpec.model_validate(spec), raw) == expected


@pytest.mark.parametrize(("spec", "raw", "problem"), [
    ({"type": "name"}, "web; rm -rf /", "not a Kubernetes name"),
    ({"type": "integer", "maximum": 10}, "11", "above the maximum"),
    ({"type": "integer"}, "3.5", "not an integer"),
    ({"type": "quantity"}, "lots", "not a Kubernetes quantity"),
    ({"type": "quantity", "maximum": 2**30}, "2Gi", "above the maximum"),
    ({"type": "string", "pattern": "Deployment"}, "Pod", "does not match"),
])
def test_bad_parameter_values_are_refused(spec, raw, problem):
    with pytest.raises(catalog.ParamError, match=problem):
        catalog.check_param("p", ParamSpec.model_validate(spec), raw)


def test_matching_uses_category_kind_facts_and_fills_params():
    loaded = catalog.load_catalog(REPO / "runbooks")
    facts = {"kind": "Node", "name": "worker-3", "node_ready": "false"}
    candidates, _ = catalog.match(loaded, "node_failure", facts, [])
    assert [c.runbook.id for c in candidates] == ["cordon-node"] and candidates[0].params == {"node": "worker-3"}
    candidates, _ = catalog.match(loaded, "node_failure", {**facts, "node_ready": "true"}, [])
    assert [c.runbook.id for c in candidates] == ["drain-node"]
    memory = {"kind": "Deployment", "namespace": "shop", "name": "web", "container": "app",
              "suggested_memory_limit": "1Gi"}
    candidates, _ = catalog.match(loaded, "memory_limit", memory, [])
    assert candidates[0].params["memory"] == "1Gi"
    candidates, skipped = catalog.match(loaded, "memory_limit", {**memory, "suggested_memory_limit": "128Gi"}, [])
    assert candidates == [] and "above the maximum" in skipped[0]
    assert catalog.match(loaded, "certificate_expired", {"kind": "Secret"}, [])[0] == []


def test_rendering_keeps_types_and_escapes_promql():
    assert catalog.render("${replicas}", {"replicas": 4}) == 4
    assert catalog.render("scale ${name} to ${replicas}", {"name": "web", "replicas": 4}) == "scale web to 4"
    assert catalog.promql_values({"name": 'we"b'}) == {"name": 'we\\"b'}
