"""What `kubectl apply -k` creates from deploy/kubernetes/base and from the example overlay, and
the README commands that apply them.

The kustomizations are built by tests/deploy/kustomize_build.py (no Debian package ships
kustomize) and, where `kubectl` or `kustomize` is installed, by the real tool too: the two
builds must be identical, object for object (under CI=true a missing tool fails that test).
Then every built object is validated against the Kubernetes schemas (strict), the
ServiceMonitor, which has no schema there, by hand; the generated ConfigMaps must hold exactly
the policies and runbooks the repository ships (so the base's copies cannot drift) and load with
the bot's own loaders; the overlay's policy replaces the shipped one; the Ingress publishes
Slack's routes and the webhooks but never /metrics or the probes; and the README's commands
name the image the manifests run, in an order that works on a fresh cluster.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.digests.drift.manifests import find_kustomize
from bot.policy.model import load_policies
from bot.remediation.catalog import load_catalog
from bot.startup_checks import approver_group_warnings
from handlers.slack.routes import PATHS as SLACK_PATHS
from handlers.webhooks import SOURCES as WEBHOOK_SOURCES
from tests.deploy import kustomize_build
from tests.deploy.test_manifests import (
    CONFIG_MAP_SETTINGS,
    DEPLOY_DIR,
    K8S_DIR,
    KUBERNETES_VERSIONS,
    NAMESPACE,
    REPO_ROOT,
    SECRET_NAME,
    SOCKET_MODE_KEY,
    schema_errors,
)

BASE_DIR = K8S_DIR
OVERLAY_DIR = DEPLOY_DIR / "kubernetes" / "overlays" / "example"
BUILDS = {"base": BASE_DIR, "overlay": OVERLAY_DIR}

IMAGE_NAME = "ghcr.io/opsbot/opsbot"
VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
RELEASE_IMAGE = f"{IMAGE_NAME}:{VERSION}"

# The folders the bot loads `*.yaml` from, by the ConfigMap that carries them.
SHIPPED_FOLDERS = {"opsbot-policies": REPO_ROOT / "policies", "opsbot-runbooks": REPO_ROOT / "runbooks"}
OVERLAY_POLICY = OVERLAY_DIR / "policies" / "team.yaml"
# Served by the bot but only for the cluster itself: Prometheus, the kubelet, in-cluster CD.
INTERNAL_ROUTES = ("/metrics", "/healthz", "/readyz", "/api/deploy-check")
CONFIG_MAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")
# Kinds without a schema in kubernetes-validate: checked field by field below.
HAND_CHECKED_KINDS = frozenset({"ServiceMonitor"})
DURATION = re.compile(r"(\d+(ms|s|m|h))+")
README_SECTION = "### Against a real cluster"


# --------------------------------------------------------------------------- building


@cache
def _cached_build(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize_build.build(BUILDS[name]))


def _built(name: str) -> list[dict[str, Any]]:
    return kustomize_build.deep_copy(list(_cached_build(name)))


def _by_identity(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    keyed = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objects}
    assert len(keyed) == len(objects), "two objects share kind, namespace and name"
    return keyed


def _of_kind(name: str, kind: str) -> list[dict[str, Any]]:
    return [obj for obj in _built(name) if obj["kind"] == kind]


def _one(name: str, kind: str) -> dict[str, Any]:
    (obj,) = _of_kind(name, kind)
    return obj


def _config_map(name: str, generated_name: str) -> dict[str, Any]:
    """The ConfigMap generated as `generated_name` (its built name carries a hash suffix)."""
    (found,) = [cm for cm in _of_kind(name, "ConfigMap") if cm["metadata"]["name"].startswith(f"{generated_name}-")]
    return found


def _shipped(config_map: str) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(SHIPPED_FOLDERS[config_map].glob("*.yaml"))}


@pytest.mark.parametrize("name", BUILDS)
def test_the_helper_builds_exactly_what_kustomize_builds(name: str) -> None:
    tool = find_kustomize()
    if tool is None:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail("neither kustomize nor kubectl is installed: the kustomize builds cannot be cross-checked")
        pytest.skip("neither kustomize nor kubectl is installed (the helper's builds are still checked below)")
    result = subprocess.run([*tool.command, str(BUILDS[name])], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{tool.description}: {result.stderr.strip()}"
    real = _by_identity([doc for doc in yaml.safe_load_all(result.stdout) if doc is not None])
    helper = _by_identity(_built(name))
    assert sorted(helper) == sorted(real), f"{tool.description} builds other objects"
    for identity, obj in real.items():
        assert helper[identity] == obj, f"{identity} differs from {tool.description}'s build"


def test_the_helper_refuses_what_kustomize_refuses(tmp_path: Path) -> None:
    """The two rules that shaped the layout: no file outside the root (copies, not links, of
    policies/ and runbooks/), and no overlay inside its base (hence base/)."""
    outside = tmp_path / "policies.yaml"
    outside.write_text("id: x\n", encoding="utf-8")
    base = tmp_path / "base"
    (base / "overlay").mkdir(parents=True)
    (base / "linked.yaml").symlink_to(outside)
    (base / "kustomization.yaml").write_text(
        "configMapGenerator:\n  - name: p\n    files: [linked.yaml]\n", encoding="utf-8"
    )
    with pytest.raises(kustomize_build.KustomizeError, match="load restrictor"):
        kustomize_build.build(base)
    (base / "kustomization.yaml").write_text("resources: []\n", encoding="utf-8")
    (base / "overlay" / "kustomization.yaml").write_text("resources: [..]\n", encoding="utf-8")
    with pytest.raises(kustomize_build.KustomizeError, match="cycle"):
        kustomize_build.build(base / "overlay")
    (base / "kustomization.yaml").write_text("patches: []\n", encoding="utf-8")
    with pytest.raises(kustomize_build.KustomizeError, match="patches"):
        kustomize_build.build(base)


# --------------------------------------------------------------------------- schema


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", BUILDS)
def test_every_built_object_validates_against_kubernetes_schema(name: str, version: str) -> None:
    errors = schema_errors([obj for obj in _built(name) if obj["kind"] not in HAND_CHECKED_KINDS], version)
    assert not errors, f"{name} (Kubernetes {version}):\n" + "\n".join(errors)


@pytest.mark.parametrize("name", BUILDS)
def test_every_built_object_lives_in_the_opsbot_namespace(name: str) -> None:
    for obj in _built(name):
        if obj["kind"] not in kustomize_build.CLUSTER_SCOPED_KINDS:
            assert obj["metadata"]["namespace"] == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"


# --------------------------------------------------------------------------- ConfigMaps


@pytest.mark.parametrize("config_map", sorted(SHIPPED_FOLDERS))
def test_the_base_config_maps_hold_exactly_the_shipped_files(config_map: str) -> None:
    folder = SHIPPED_FOLDERS[config_map].relative_to(REPO_ROOT)
    data = _config_map("base", config_map)["data"]
    shipped = _shipped(config_map)
    fix = (f"run `make deploy-config` (copies {folder}/*.yaml to {BASE_DIR.relative_to(REPO_ROOT)}/config/{folder}/)"
           " and list new files in its kustomization.yaml")
    assert sorted(data) == sorted(shipped), f"{config_map} has other files than {folder}/: {fix}"
    for key, text in shipped.items():
        assert data[key] == text, f"{config_map}: {key} differs from {folder}/{key}: {fix}"


@pytest.mark.parametrize("name", BUILDS)
def test_the_deployment_mounts_the_generated_config_maps(name: str) -> None:
    built_names = {cm["metadata"]["name"] for cm in _of_kind(name, "ConfigMap")}
    pod_spec = _one(name, "Deployment")["spec"]["template"]["spec"]
    referenced = {v["configMap"]["name"] for v in pod_spec["volumes"] if "configMap" in v}
    assert referenced == built_names, "every generated ConfigMap is mounted, under its hashed name"
    assert {n.rsplit("-", 1)[0] for n in referenced} == set(CONFIG_MAP_SETTINGS)
    for config_map in _of_kind(name, "ConfigMap"):
        assert config_map["data"], f"{config_map['metadata']['name']} is empty"
        bad = [key for key in config_map["data"] if not CONFIG_MAP_KEY.fullmatch(key)]
        assert not bad, f"not valid ConfigMap keys (a folder cannot be one): {bad}"


@pytest.mark.parametrize("name", BUILDS)
def test_the_built_config_maps_load_with_the_bots_loaders(name: str, tmp_path: Path) -> None:
    """What the pod sees in /app/policies and /app/runbooks is a catalog and a policy the bot
    starts with, and every approver group a runbook asks for is defined."""
    folders = {}
    for config_map in SHIPPED_FOLDERS:
        folder = folders[config_map] = tmp_path / config_map
        folder.mkdir()
        for key, text in _config_map(name, config_map)["data"].items():
            (folder / key).write_text(text, encoding="utf-8")
    catalog = load_catalog(folders["opsbot-runbooks"])
    policy = load_policies(folders["opsbot-policies"])
    assert catalog.runbooks
    asked = {group for runbook in catalog.runbooks.values() for step in runbook.steps for group in step.approval.groups}
    assert asked <= set(policy.approver_groups), f"runbooks ask for undefined groups: {asked - set(policy.approver_groups)}"
    if name == "overlay":
        assert approver_group_warnings(policy) == [], "the example names its approvers"


def test_the_overlay_policy_replaces_the_shipped_one() -> None:
    base_policies = _config_map("base", "opsbot-policies")
    overlay_policies = _config_map("overlay", "opsbot-policies")
    assert overlay_policies["data"] == {OVERLAY_POLICY.name: OVERLAY_POLICY.read_text(encoding="utf-8")}
    assert overlay_policies["metadata"]["name"] != base_policies["metadata"]["name"], "new content, new hash"
    assert overlay_policies["metadata"]["labels"] == base_policies["metadata"]["labels"]
    assert _config_map("overlay", "opsbot-runbooks") == _config_map("base", "opsbot-runbooks")


# --------------------------------------------------------------------------- Ingress


def _ingress_routes(path: str) -> bool:
    """True when the example Ingress forwards a request for `path` (Exact and Prefix as the
    Ingress API defines them: Prefix matches whole path elements)."""
    for rule in _one("overlay", "Ingress")["spec"]["rules"]:
        for entry in rule["http"]["paths"]:
            prefix = entry["path"].rstrip("/")
            if entry["pathType"] == "Exact" and path == entry["path"]:
                return True
            if entry["pathType"] == "Prefix" and (path == prefix or path.startswith(f"{prefix}/") or not prefix):
                return True
    return False


def test_the_ingress_publishes_slack_and_the_webhooks_but_not_metrics_or_probes() -> None:
    for path in (*SLACK_PATHS, *(f"/webhooks/{source}" for source in WEBHOOK_SOURCES)):
        assert _ingress_routes(path), f"{path} is not routed"
    for path in (*INTERNAL_ROUTES, "/metrics/", "/"):
        assert not _ingress_routes(path), f"{path} must stay inside the cluster"


def test_the_ingress_terminates_tls_and_sends_to_the_services_http_port() -> None:
    ingress = _one("overlay", "Ingress")
    service = _one("overlay", "Service")
    port_names = {port["name"] for port in service["spec"]["ports"]}
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    tls_hosts = {host for entry in ingress["spec"]["tls"] for host in entry["hosts"]}
    assert hosts and hosts <= tls_hosts, "every host is served over TLS"
    for rule in ingress["spec"]["rules"]:
        for entry in rule["http"]["paths"]:
            assert entry["pathType"] in {"Exact", "Prefix"}, "ImplementationSpecific varies by controller"
            backend = entry["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in port_names
    manifest = (DEPLOY_DIR / "slack-app-manifest.yaml").read_text(encoding="utf-8")
    slack_hosts = set(re.findall(r"request_url: https://([^/\s]+)/", manifest))
    assert slack_hosts == hosts, "the Slack app manifest and the Ingress name the same host"


# --------------------------------------------------------------------------- ServiceMonitor


def test_the_service_monitor_scrapes_metrics_on_the_services_http_port() -> None:
    """ServiceMonitor has no schema in kubernetes-validate: its required fields by hand."""
    monitor = _one("overlay", "ServiceMonitor")
    service = _one("overlay", "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    assert set(spec["selector"]) == {"matchLabels"}
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items(), (
        "a ServiceMonitor selects Services by their own labels"
    )
    others = [s for s in _of_kind("overlay", "Service") if spec["selector"]["matchLabels"].items()
              <= s["metadata"].get("labels", {}).items()]
    assert others == [service]
    port_names = {port["name"] for port in service["spec"]["ports"]}
    assert spec["endpoints"]
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        for field in ("interval", "scrapeTimeout"):
            assert DURATION.fullmatch(endpoint[field]), f"{field}: {endpoint[field]!r} is not a Prometheus duration"
        assert _seconds(endpoint["scrapeTimeout"]) <= _seconds(endpoint["interval"])


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", duration))


def test_the_network_policy_lets_the_ingress_controller_and_prometheus_reach_the_port() -> None:
    """Both send to the pods' "http" port (the Service's targetPort, the ServiceMonitor's
    port); the allow policy must open exactly it, from any source (see networkpolicy.yaml)."""
    service = _one("overlay", "Service")
    (port,) = service["spec"]["ports"]
    pod_labels = _one("overlay", "Deployment")["spec"]["template"]["metadata"]["labels"]
    opened = [
        rule
        for policy in _of_kind("overlay", "NetworkPolicy")
        if policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        for rule in policy["spec"].get("ingress", [])
    ]
    assert opened, "no policy admits traffic to the server pods"
    assert any(not rule.get("from") and {"port": port["targetPort"], "protocol": "TCP"} in rule["ports"]
               for rule in opened)


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("name", BUILDS)
def test_every_container_runs_the_release_image(name: str) -> None:
    for obj in _built(name):
        for pod_spec in kustomize_build.pod_specs(obj):
            for container in kustomize_build.containers(pod_spec):
                assert container["image"] == RELEASE_IMAGE, f"{obj['kind']}/{obj['metadata']['name']}"


def test_the_raw_manifests_and_the_overlay_name_the_release_image() -> None:
    """Even before kustomize's `images:` rewrite, and in the overlay's own pin."""
    for path in (BASE_DIR / "deployment.yaml", BASE_DIR / "migration-job.yaml"):
        images = re.findall(r"image: (\S+)", path.read_text(encoding="utf-8"))
        assert images == [RELEASE_IMAGE], path.name
    for directory in BUILDS.values():
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
        assert kustomization["images"] == [{"name": IMAGE_NAME, "newTag": VERSION}], directory.name


# --------------------------------------------------------------------------- README


@cache
def _readme_commands() -> tuple[tuple[str, ...], ...]:
    """The shell commands of the section's code block, each split into words."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(README_SECTION) :]
    section = section[: section.index("\n## ")]
    block = section[section.index("```sh\n") + 6 :]
    block = block[: block.index("```")]
    return tuple(tuple(shlex.split(line, comments=True)) for line in block.replace("\\\n", " ").splitlines()
                 if line.strip())


def _command_index(prefix: tuple[str, ...], *, last: bool = False) -> int:
    found = [i for i, words in enumerate(_readme_commands()) if words[: len(prefix)] == prefix]
    assert found, f"the README does not run {' '.join(prefix)}"
    return found[-1] if last else found[0]


def _selector_matches(selector: str, labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, _, value in (term.partition("=") for term in selector.split(",")))


def test_readme_builds_the_image_the_manifests_run() -> None:
    (build,) = [words for words in _readme_commands() if words[:2] == ("docker", "build")]
    assert build[build.index("-t") + 1] == RELEASE_IMAGE


def test_readme_applies_in_an_order_that_works_on_a_fresh_cluster() -> None:
    """Namespace, then the Secret in it, then the migration Job (and its completion), then the rest."""
    base = str(BASE_DIR.relative_to(REPO_ROOT))
    namespace_file = f"{base}/namespace.yaml"
    job = _one("base", "Job")["metadata"]["name"]
    order = [
        _command_index(("kubectl", "apply", "-f", namespace_file)),
        _command_index(("kubectl", "-n", NAMESPACE, "create", "secret", "generic", SECRET_NAME)),
        _command_index(("kubectl", "apply", "-k", base, "-l")),
        _command_index(("kubectl", "-n", NAMESPACE, "wait", "--for=condition=complete", f"job/{job}")),
        _command_index(("kubectl", "apply", "-k", base), last=True),
    ]
    assert order == sorted(order) and len(set(order)) == len(order), order
    assert len(_readme_commands()[order[-1]]) == 4, "the last apply takes everything"
    (namespace,) = yaml.safe_load_all((REPO_ROOT / namespace_file).read_text(encoding="utf-8"))
    assert (namespace["kind"], namespace["metadata"]["name"]) == ("Namespace", NAMESPACE)


def test_readme_migration_step_selects_only_the_job() -> None:
    base = str(BASE_DIR.relative_to(REPO_ROOT))
    words = _readme_commands()[_command_index(("kubectl", "apply", "-k", base, "-l"))]
    selector = words[words.index("-l") + 1]
    selected = [obj for obj in _built("base") if _selector_matches(selector, obj["metadata"].get("labels", {}))]
    assert [(obj["kind"], obj["metadata"]["name"]) for obj in selected] == [("Job", _one("base", "Job")["metadata"]["name"])]


def test_readme_secret_holds_the_required_keys_and_not_the_socket_mode_token() -> None:
    words = _readme_commands()[_command_index(("kubectl", "-n", NAMESPACE, "create", "secret"))]
    keys = {word.split("=", 2)[1] for word in words if word.startswith("--from-literal=")}
    refs = [
        env["valueFrom"]["secretKeyRef"]
        for obj in _built("base")
        for pod_spec in kustomize_build.pod_specs(obj)
        for container in kustomize_build.containers(pod_spec)
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    ]
    required = {ref["key"] for ref in refs if not ref.get("optional")}
    assert required <= keys, f"missing: {required - keys}"
    assert keys <= {ref["key"] for ref in refs}, "a key no pod reads"
    assert SOCKET_MODE_KEY not in keys, "it would switch the bot to Socket Mode"


def test_readme_names_only_paths_that_exist() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(README_SECTION) :]
    section = section[: section.index("\n## ")]
    paths = set(re.findall(r"deploy/[\w./-]+", section))
    assert paths
    for path in paths:
        assert (REPO_ROOT / path.rstrip(".")).exists(), path
