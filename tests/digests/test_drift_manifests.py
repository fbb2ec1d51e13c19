"""Reading declared state: plain YAML folders, malformed files, kustomize overlays."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.digests.drift.manifests import KUSTOMIZE_OUTPUT, find_kustomize, load_source, parse_manifests

MANIFESTS = Path(__file__).parent / "drift_manifests"
needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None and shutil.which("kustomize") is None,
    reason="neither kustomize nor kubectl is installed",
)


def test_a_plain_folder_is_read_recursively_and_multi_document():
    loaded = load_source(MANIFESTS / "shop")
    assert loaded.complete, loaded.problems
    found = {(o.kind, o.namespace, o.name, o.origin) for o in loaded.objects}
    assert found == {
        ("Deployment", "shop", "web", "apps/web.yaml"),
        ("Service", "shop", "web", "apps/web.yaml"),
        ("Deployment", None, "orders", "apps/orders.yml"),
        ("ConfigMap", None, "orders-config", "apps/orders.yml"),
    }
    service = next(o for o in loaded.objects if o.kind == "Service")
    assert service.line == 31  # where its document starts, after the separator


def test_malformed_files_name_the_file_and_line_and_the_rest_still_counts():
    loaded = load_source(MANIFESTS / "broken")
    assert not loaded.complete
    assert [o.name for o in loaded.objects] == ["fine-before-the-error", "web"]
    bad_yaml, no_name = loaded.problems
    assert bad_yaml.startswith("a-bad.yaml line 15: not valid YAML (expected ',' or ']'")
    assert bad_yaml.endswith("while parsing a flow sequence that starts at line 15)")
    assert no_name == "b-no-name.yaml line 1: the ConfigMap has no metadata.name"


def test_lists_are_flattened_and_scalars_are_not_objects():
    problems: list[str] = []
    text = (
        "kind: List\napiVersion: v1\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n---\njust text\n---\n"
        "metadata: {name: c}\n"
    )
    objects = parse_manifests(text, "list.yaml", problems)
    assert [o.name for o in objects] == ["a", "b"]
    assert problems == [
        "list.yaml line 7: the document is not a mapping, so not a Kubernetes object",
        "list.yaml line 9: the document has no kind or apiVersion",
    ]


def test_a_missing_directory_is_a_problem():
    loaded = load_source(MANIFESTS / "no-such-source")
    assert loaded.objects == [] and loaded.problems == [f"no such directory: {MANIFESTS / 'no-such-source'}"]


@needs_kubectl
def test_a_kustomize_overlay_is_built_with_its_base_and_patch():
    loaded = load_source(MANIFESTS / "overlay" / "prod")
    assert loaded.complete, loaded.problems
    (api,) = loaded.objects
    assert (api.namespace, api.name, api.origin) == ("payments", "api", KUSTOMIZE_OUTPUT)
    assert api.body["spec"]["replicas"] == 4  # the patch
    assert api.body["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":3.1.0")  # images: newTag
    tool = find_kustomize()
    assert tool is not None and any(tool.description in note for note in loaded.notes)
    assert "kustomize v" in tool.description or tool.description.startswith("kustomize ")


@needs_kubectl
def test_a_failing_kustomize_build_reports_kustomizes_message(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    loaded = load_source(tmp_path)
    (problem,) = loaded.problems
    assert " failed: " in problem and "missing.yaml" in problem
    assert loaded.objects == []


def test_without_kustomize_or_kubectl_a_kustomization_is_a_problem(tmp_path, monkeypatch):
    (tmp_path / "kustomization.yaml").write_text("resources: []\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    loaded = load_source(tmp_path)
    (problem,) = loaded.problems
    assert "neither the kustomize binary nor kubectl is installed" in problem
