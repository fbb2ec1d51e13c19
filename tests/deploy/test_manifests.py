"""Deployment artefacts: the Kubernetes manifests of the base, file by file (the kustomize
builds, the ConfigMaps and the example overlay are checked in test_overlays.py; the Slack app
manifest and the Dockerfile in test_slack_app_and_image.py).

Every manifest in deploy/kubernetes/base is validated against the Kubernetes OpenAPI schemas that
kubernetes-validate ships (strict: unknown fields are errors, so a typo such as
`readOnlyRootFSystem` cannot silently drop a protection). The rest pins the properties a
careless edit could regress without any schema noticing: non-root, read-only, capability-free
containers; an RBAC role that never reads Secrets and whose writes are exactly the runbooks';
probes on the right routes; secrets from the right Secret. Offline and fast: no cluster, no
Docker, no network.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
K8S_DIR = DEPLOY_DIR / "kubernetes" / "base"

# The oldest Kubernetes minor the manifests promise to work on (every field used is GA there).
# They are also validated against the newest schemas the installed kubernetes-validate ships,
# so a field removed upstream shows up here before it does on a cluster.
MIN_KUBERNETES_VERSION = "1.30"
KUBERNETES_VERSIONS = tuple(
    dict.fromkeys(
        [MIN_KUBERNETES_VERSION, kubernetes_validate.utils.major_minor(kubernetes_validate.latest_version())]
    )
)

# Not Kubernetes API objects: kustomize's own file, and the example Secret that is validated
# but deliberately kept out of the kustomization.
KUSTOMIZATION = "kustomization.yaml"
EXAMPLE_SECRET = "secret.example.yaml"

SECRET_NAME = "opsbot"
# The ConfigMaps the base generates (kustomization.yaml) and the Deployment mounts, with the
# setting that points the bot at each.
CONFIG_MAP_SETTINGS = {"opsbot-policies": "OPSBOT_POLICIES_DIR", "opsbot-runbooks": "OPSBOT_RUNBOOKS_DIR"}
# Only for Socket Mode: its presence switches the bot to it, so the example leaves it out.
SOCKET_MODE_KEY = "slack-app-token"
NAMESPACE = "opsbot"
SERVICE_ACCOUNT = "opsbot"
IMAGE_UID = 10001

# Settings that are credentials: they may only ever come from the Secret.
SECRET_ENV_NAMES = frozenset(
    {
        "OPSBOT_DATABASE_URL",
        "OPSBOT_SLACK_BOT_TOKEN",
        "OPSBOT_SLACK_SIGNING_SECRET",
        "OPSBOT_SLACK_APP_TOKEN",
        "OPSBOT_WEBHOOK_TOKEN",
        "OPSBOT_ANTHROPIC_API_KEY",
    }
)

READ_VERBS = frozenset({"get", "list"})

# Every write the ClusterRole grants, as (apiGroup, resource, verb): exactly what the built-in
# runbooks perform. Adding a runbook that writes something new means extending this set and
# rbac.yaml together, with a reason.
EXPECTED_WRITES = frozenset(
    {
        ("apps", "deployments", "patch"),  # rollback, restart, raise memory/cpu limit
        ("apps", "statefulsets", "patch"),  # raise memory/cpu limit of a StatefulSet's container
        ("apps", "daemonsets", "patch"),  # ... or a DaemonSet's
        ("autoscaling", "horizontalpodautoscalers", "patch"),  # scale-deployment under an HPA
        ("apps", "deployments/scale", "patch"),  # scale-deployment
        ("apps", "deployments/scale", "update"),
        ("apps", "statefulsets/scale", "patch"),
        ("apps", "statefulsets/scale", "update"),
        ("", "pods", "delete"),  # delete-pod
        ("", "pods/eviction", "create"),  # drain-node
        ("", "nodes", "patch"),  # cordon-node, drain-node
        ("", "persistentvolumeclaims", "patch"),  # expand-pvc
        ("batch", "jobs", "create"),  # rerun-job
        ("cert-manager.io", "certificates/status", "patch"),  # renew-certificate
    }
)

# What the context gatherers read (get and list); the role must cover all of it.
EXPECTED_READS = frozenset(
    {
        ("", "pods"),
        ("", "events"),
        ("events.k8s.io", "events"),
        ("", "nodes"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("apps", "controllerrevisions"),
        ("apiregistration.k8s.io", "apiservices"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
        ("", "services"),
        ("", "endpoints"),
        ("discovery.k8s.io", "endpointslices"),
        ("", "configmaps"),
        ("", "persistentvolumeclaims"),
        ("", "persistentvolumes"),
        ("storage.k8s.io", "storageclasses"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("", "resourcequotas"),
        ("", "limitranges"),
        ("policy", "poddisruptionbudgets"),
        ("", "namespaces"),
        ("networking.k8s.io", "networkpolicies"),
        ("networking.k8s.io", "ingresses"),
        ("cert-manager.io", "certificates"),  # the credentials digest
        ("monitoring.coreos.com", "probes"),
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    }
)

# Subresources that give a shell, a tunnel or a proxy into workloads or nodes; any verb on
# them (even get: nodes/proxy GET reaches the kubelet API) would let the bot run commands.
FORBIDDEN_SUBRESOURCES = frozenset(
    {"pods/exec", "pods/attach", "pods/portforward", "pods/proxy", "nodes/proxy", "services/proxy"}
)


# --------------------------------------------------------------------------- loading


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.glob("*.y*ml") if p.name != KUSTOMIZATION)


@cache
def _load_docs(path: Path) -> tuple[dict[str, Any], ...]:
    with path.open(encoding="utf-8") as f:
        return tuple(doc for doc in yaml.safe_load_all(f) if doc is not None)


def _applied_docs() -> list[dict[str, Any]]:
    """The objects `kubectl apply -k` creates (everything but the example Secret)."""
    return [doc for path in _manifest_files() if path.name != EXAMPLE_SECRET for doc in _load_docs(path)]


def _docs_of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in _applied_docs() if doc["kind"] == kind]


def _one(kind: str) -> dict[str, Any]:
    docs = _docs_of_kind(kind)
    assert len(docs) == 1, f"expected exactly one {kind}, found {len(docs)}"
    return docs[0]


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) for every workload that runs containers."""
    specs = []
    for doc in _applied_docs():
        if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            specs.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "CronJob":
            spec = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            specs.append((f"CronJob/{doc['metadata']['name']}", spec))
        elif doc["kind"] == "Pod":
            specs.append((f"Pod/{doc['metadata']['name']}", doc["spec"]))
    return specs


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def _server_container() -> dict[str, Any]:
    deployment = _one("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


# --------------------------------------------------------------------------- schema


def test_manifest_folder_is_not_empty() -> None:
    names = {p.name for p in _manifest_files()}
    for required in (
        "serviceaccount.yaml",
        "rbac.yaml",
        "deployment.yaml",
        "service.yaml",
        "migration-job.yaml",
        EXAMPLE_SECRET,
    ):
        assert required in names


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: p.name)
def test_manifest_validates_against_kubernetes_schema(path: Path, version: str) -> None:
    docs = _load_docs(path)
    assert docs, f"{path.name} holds no document"
    errors = schema_errors(docs, version)
    assert not errors, f"{path.name} (Kubernetes {version}):\n" + "\n".join(errors)


def schema_errors(objects: list[dict[str, Any]], version: str) -> list[str]:
    """One line per object that the strict schema of `version` refuses (collected outside the
    except block, so a failure shows the message, not the schema)."""
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']} at {where}: {exc.message}")
    return errors


def test_namespaced_objects_live_in_the_opsbot_namespace() -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for path in _manifest_files():
        for doc in _load_docs(path):
            if doc["kind"] in cluster_scoped:
                assert "namespace" not in doc["metadata"], f"{path.name}: {doc['kind']} is cluster-scoped"
            else:
                assert doc["metadata"].get("namespace") == NAMESPACE, f"{path.name}: {doc['kind']}"


def test_kustomization_lists_every_manifest_except_the_example_secret() -> None:
    kustomization = yaml.safe_load((K8S_DIR / KUSTOMIZATION).read_text(encoding="utf-8"))
    assert kustomization["namespace"] == NAMESPACE
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    expected = {p.name for p in _manifest_files() if p.name != EXAMPLE_SECRET}
    assert set(listed) == expected
    assert EXAMPLE_SECRET not in listed


def test_example_secret_holds_only_placeholders() -> None:
    (secret,) = _load_docs(K8S_DIR / EXAMPLE_SECRET)
    assert secret["kind"] == "Secret"
    assert secret["metadata"]["name"] == SECRET_NAME
    assert "data" not in secret, "use stringData with visible placeholders, not base64"
    for key, value in secret["stringData"].items():
        assert "REPLACE_ME" in value, f"{key} does not look like a placeholder"


# --------------------------------------------------------------------------- pod security


def test_there_are_workloads_to_check() -> None:
    names = {name for name, _ in _pod_specs()}
    assert "Deployment/opsbot" in names
    assert "Job/opsbot-db-upgrade" in names


@pytest.mark.parametrize("name_and_spec", _pod_specs(), ids=lambda item: item[0])
def test_every_container_is_non_root_read_only_and_capability_free(
    name_and_spec: tuple[str, dict[str, Any]],
) -> None:
    """The Pod Security "restricted" profile, plus a read-only root filesystem."""
    name, pod_spec = name_and_spec
    pod_sc = pod_spec.get("securityContext", {})
    assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
    assert not pod_spec.get("hostNetwork") and not pod_spec.get("hostPID") and not pod_spec.get("hostIPC")
    assert pod_spec.get("enableServiceLinks") is False, f"{name}: Service env vars collide with OPSBOT_*"

    for container in _containers(pod_spec):
        sc = container.get("securityContext", {})
        where = f"{name}/{container['name']}"
        run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        run_as_user = sc.get("runAsUser", pod_sc.get("runAsUser"))
        assert run_as_non_root is True, where
        assert run_as_user == IMAGE_UID, f"{where}: runAsUser must match the image's USER"
        assert sc.get("readOnlyRootFilesystem") is True, where
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("privileged", False) is False, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not sc.get("capabilities", {}).get("add"), where
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], where


@pytest.mark.parametrize("name_and_spec", _pod_specs(), ids=lambda item: item[0])
def test_writable_paths_are_empty_dirs(name_and_spec: tuple[str, dict[str, Any]]) -> None:
    """With a read-only root, /tmp and the data dir must be mounted emptyDirs; the only other
    volumes are ConfigMaps, mounted read-only."""
    name, pod_spec = name_and_spec
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    for volume in volumes.values():
        assert set(volume) in ({"name", "emptyDir"}, {"name", "configMap"}), f"{name}: {volume['name']}"
    for container in _containers(pod_spec):
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        assert {"/tmp", "/var/lib/opsbot"} <= set(mounts), name
        for path, mount in mounts.items():
            writable = "emptyDir" in volumes[mount["name"]]
            assert writable == (path in {"/tmp", "/var/lib/opsbot"}), f"{name}: {path}"
            assert writable or mount.get("readOnly") is True, f"{name}: {path} must be read-only"
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env.get("OPSBOT_DATA_DIR") == "/var/lib/opsbot", name


def test_policies_and_runbooks_are_the_config_maps_mounted_where_the_settings_point() -> None:
    """The bot reads its policies and runbooks from the generated ConfigMaps, not the image."""
    pod_spec = _one("Deployment")["spec"]["template"]["spec"]
    by_volume = {v["name"]: v["configMap"]["name"] for v in pod_spec["volumes"] if "configMap" in v}
    assert sorted(by_volume.values()) == sorted(CONFIG_MAP_SETTINGS)
    container = _server_container()
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounted = {by_volume[m["name"]]: m["mountPath"] for m in container["volumeMounts"] if m["name"] in by_volume}
    for config_map, setting in CONFIG_MAP_SETTINGS.items():
        assert env[setting] == mounted[config_map], f"{setting} must name where {config_map} is mounted"
        assert env[setting].startswith("/"), "a relative folder falls back to the shipped one"


def test_only_the_server_mounts_a_kubernetes_token() -> None:
    for name, pod_spec in _pod_specs():
        if name == "Deployment/opsbot":
            assert pod_spec["serviceAccountName"] == SERVICE_ACCOUNT
            assert pod_spec["automountServiceAccountToken"] is True
        else:
            assert pod_spec.get("automountServiceAccountToken") is False, name
    assert _one("ServiceAccount").get("automountServiceAccountToken") is False


# --------------------------------------------------------------------------- deployment


def test_probes_hit_healthz_and_readyz() -> None:
    container = _server_container()
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    if "startupProbe" in container:
        # Startup gates liveness, so it must not depend on the database either.
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port_names == {"http": 8080}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", 8080)


def test_deployment_runs_serve_in_cluster_mode() -> None:
    container = _server_container()
    assert container.get("args", ["serve"]) == ["serve"]
    assert "command" not in container, "keep the image's ENTRYPOINT (opsbot)"
    env = {e["name"]: e for e in container["env"]}
    assert env["OPSBOT_KUBE_MODE"]["value"] == "in-cluster"
    assert env["OPSBOT_HTTP_PORT"]["value"] == "8080"


def test_migration_job_runs_db_upgrade_with_the_same_image() -> None:
    job = _one("Job")
    spec = job["spec"]
    assert spec["backoffLimit"] >= 1
    assert spec["ttlSecondsAfterFinished"] > 0
    (container,) = spec["template"]["spec"]["containers"]
    assert container["args"] == ["db", "upgrade"]
    assert "command" not in container
    assert container["image"] == _server_container()["image"]
    env = {e["name"] for e in container["env"]}
    assert "OPSBOT_DATABASE_URL" in env


def test_every_secret_reference_points_at_the_opsbot_secret() -> None:
    refs = 0
    for name, pod_spec in _pod_specs():
        for container in _containers(pod_spec):
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                if "secretKeyRef" in source:
                    refs += 1
                    assert source["secretKeyRef"]["name"] == SECRET_NAME, f"{name}: {env['name']}"
                # A credential written inline would end up in Git and in `kubectl describe`.
                if env["name"] in SECRET_ENV_NAMES:
                    assert "secretKeyRef" in source, f"{name}: {env['name']} must come from the Secret"
            for env_from in container.get("envFrom", []):
                if "secretRef" in env_from:
                    assert env_from["secretRef"]["name"] == SECRET_NAME, name
    assert refs > 0


def _secret_refs() -> list[tuple[str, dict[str, Any]]]:
    """(workload/env name, secretKeyRef) for every Secret reference of every container."""
    return [
        (f"{name}: {env['name']}", env["valueFrom"]["secretKeyRef"])
        for name, pod_spec in _pod_specs()
        for container in _containers(pod_spec)
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    ]


def test_secret_keys_referenced_exist_in_the_example_secret() -> None:
    """The example documents every key the pods read, so an operator copying it misses none:
    required keys as placeholders, optional ones as placeholders or commented-out lines."""
    (secret,) = _load_docs(K8S_DIR / EXAMPLE_SECRET)
    text = (K8S_DIR / EXAMPLE_SECRET).read_text(encoding="utf-8")
    for where, ref in _secret_refs():
        if ref.get("optional"):
            documented = ref["key"] in secret["stringData"] or f"  # {ref['key']}: " in text
            assert documented, f"{where} -> {ref['key']}"
        else:
            assert ref["key"] in secret["stringData"], f"{where} -> {ref['key']}"


def test_the_socket_mode_token_is_optional_and_left_out_of_the_example() -> None:
    """Its mere presence turns Socket Mode on, so copying the example must not set it."""
    (secret,) = _load_docs(K8S_DIR / EXAMPLE_SECRET)
    assert SOCKET_MODE_KEY not in secret["stringData"]
    text = (K8S_DIR / EXAMPLE_SECRET).read_text(encoding="utf-8")
    assert f'  # {SOCKET_MODE_KEY}: "xapp-REPLACE_ME"' in text, "document it, commented out"
    refs = [ref for where, ref in _secret_refs() if ref["key"] == SOCKET_MODE_KEY]
    assert refs and all(ref.get("optional") is True for ref in refs)


def test_service_and_pdb_select_the_server_pods() -> None:
    pod_labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = _one("Service")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    pdb = _one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    job_labels = _one("Job")["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= job_labels.items(), "the Service must not pick the Job"


# --------------------------------------------------------------------------- RBAC


def _cluster_role() -> dict[str, Any]:
    return _one("ClusterRole")


def _grants() -> set[tuple[str, str, str]]:
    grants = set()
    for rule in _cluster_role()["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    grants.add((group, resource, verb))
    return grants


def test_cluster_role_rules_are_plain_resource_rules() -> None:
    role = _cluster_role()
    assert "aggregationRule" not in role
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, f"unexpected keys in {rule}"
        assert len(rule["apiGroups"]) == 1, f"one API group per rule: {rule}"


def test_cluster_role_uses_no_wildcards() -> None:
    for rule in _cluster_role()["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert not any("*" in item for item in rule[field]), f"wildcard in {field}: {rule}"


def test_cluster_role_never_grants_secrets() -> None:
    resources = {resource for _, resource, _ in _grants()}
    assert not any(r == "secrets" or r.startswith("secrets/") for r in resources)


def test_cluster_role_grants_no_escalation_paths() -> None:
    for group, resource, verb in _grants():
        assert resource not in FORBIDDEN_SUBRESOURCES, resource
        assert group not in {"rbac.authorization.k8s.io", "coordination.k8s.io", "certificates.k8s.io"}
        assert verb not in {"bind", "escalate", "impersonate", "watch", "deletecollection"}, verb
        assert resource != "serviceaccounts/token"


def test_cluster_role_writes_are_exactly_the_runbooks() -> None:
    writes = {grant for grant in _grants() if grant[2] not in READ_VERBS}
    assert writes == EXPECTED_WRITES


def test_cluster_role_covers_every_read_the_gatherers_need() -> None:
    grants = _grants()
    missing = {(g, r) for g, r in EXPECTED_READS if not {(g, r, "get"), (g, r, "list")} <= grants}
    assert not missing
    assert ("", "pods/log", "get") in grants


def test_cluster_role_reads_nothing_unexpected() -> None:
    reads = {(g, r) for g, r, v in _grants() if v in READ_VERBS}
    scale = {("apps", "deployments/scale"), ("apps", "statefulsets/scale")}
    assert reads <= EXPECTED_READS | {("", "pods/log")} | scale


def test_cluster_role_binding_binds_only_the_service_account() -> None:
    binding = _one("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": _cluster_role()["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
    ]
    assert _docs_of_kind("RoleBinding") == [] and _docs_of_kind("Role") == []


def test_rbac_rules_are_commented() -> None:
    """Every rule says why it exists: a rule without a reason is a rule nobody can review."""
    lines = (K8S_DIR / "rbac.yaml").read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert len(starts) == len(_cluster_role()["rules"])
    for i in starts:
        assert lines[i - 1].strip().startswith("#"), f"rbac.yaml line {i + 1}: rule without a comment"
