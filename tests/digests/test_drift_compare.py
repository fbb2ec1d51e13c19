"""Normalising and diffing one declared object against its live counterpart, and who set a field."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.digests.drift.build import DEFAULT_IGNORE_FIELDS
from bot.digests.drift.compare import IgnoreRules, Item, diff_objects, display_path, shown_value
from bot.digests.drift.managers import fieldset_owns, looks_applied, owner_of
from bot.redaction import MASK

RULES = IgnoreRules(DEFAULT_IGNORE_FIELDS)
CONTAINERS = ("spec", "template", "spec", "containers")


def deployment(container: dict, **spec) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {**spec, "template": {"spec": {"containers": [container]}}},
    }


def diffs(declared: dict, live: dict, rules: IgnoreRules = RULES) -> dict[str, tuple]:
    return {d.display: (d.declared, d.live, d.category) for d in diff_objects(declared, live, rules)}


def test_quantities_compare_by_value_and_only_where_they_are_quantities():
    declared = deployment(
        {
            "name": "web",
            "resources": {
                "requests": {"cpu": "500m", "memory": "1024Mi"},
                "limits": {"cpu": 1, "memory": "2Gi"},
            },
            "env": [{"name": "SIZE", "value": "1k"}],
        }
    )
    same = deployment(
        {
            "name": "web",
            "resources": {
                "requests": {"cpu": "0.5", "memory": "1Gi"},
                "limits": {"cpu": "1000m", "memory": "2048Mi"},
            },
            "env": [{"name": "SIZE", "value": "1k"}],
        }
    )
    assert diffs(declared, same) == {}
    changed = deployment(
        {
            "name": "web",
            "resources": {
                "requests": {"cpu": "750m", "memory": "1Gi"},
                "limits": {"cpu": "1", "memory": "2Gi"},
            },
            "env": [{"name": "SIZE", "value": "1000"}],
        }
    )  # env text is never a quantity
    assert diffs(declared, changed) == {
        "spec.template.spec.containers[web].resources.requests.cpu": ("500m", "750m", "resources"),
        "spec.template.spec.containers[web].env[SIZE].value": ("1k", "1000", "env"),
    }


def test_fields_the_manifest_leaves_out_are_never_drift():
    declared = deployment({"name": "web", "image": "web:1", "ports": [{"containerPort": 8080}]}, replicas=2)
    live = deployment(
        {
            "name": "web",
            "image": "web:1",
            "imagePullPolicy": "IfNotPresent",
            "terminationMessagePath": "/dev/termination-log",
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        },
        replicas=2,
        strategy={"type": "RollingUpdate"},
        revisionHistoryLimit=10,
    )
    live["spec"]["template"]["spec"].update(dnsPolicy="ClusterFirst", schedulerName="default-scheduler")
    live["metadata"].update(
        uid="u-1",
        resourceVersion="42",
        generation=3,
        creationTimestamp="2024-01-01T00:00:00Z",
        annotations={"deployment.kubernetes.io/revision": "7"},
    )
    live["status"] = {"replicas": 2}
    declared["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1", "team": "storefront"}
    live["metadata"]["annotations"]["team"] = "storefront"
    assert diffs(declared, live) == {}


def test_keyed_lists_match_by_name_and_an_added_env_var_is_drift():
    declared = deployment({"name": "web", "image": "web:1", "env": [{"name": "A", "value": "1"}]})
    declared["spec"]["template"]["spec"]["containers"].append({"name": "proxy", "image": "envoy:1"})
    live = deployment({"name": "proxy", "image": "envoy:1"})
    live["spec"]["template"]["spec"]["containers"].append(
        {
            "name": "web",
            "image": "web:2",
            "env": [{"name": "B", "value": "debug"}, {"name": "A", "value": "1"}],
        }
    )
    found = {d.display: d for d in diff_objects(declared, live, RULES)}
    assert set(found) == {
        "spec.template.spec.containers[web].image",
        "spec.template.spec.containers[web].env[B]",
    }
    added = found["spec.template.spec.containers[web].env[B]"]
    assert not added.declared_present and added.path[-1] == Item("name", "B")


def test_a_declared_label_the_cluster_lacks_and_a_changed_one_are_label_drift():
    declared = {
        "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"team": "a", "tier": "web"}},
        "data": {"x": "1"},
    }
    live = {
        "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"team": "b", "extra": "fine"}},
        "data": {"x": "1", "y": "2"},
    }
    assert diffs(declared, live) == {
        "metadata.labels.team": ("a", "b", "label"),
        "metadata.labels.tier": ("web", None, "label"),
    }


def test_ignore_patterns_cover_subtrees_and_any_list_item():
    declared = deployment({"name": "web", "image": "web:1", "imagePullPolicy": "Always"}, replicas=3)
    live = deployment({"name": "web", "image": "web:1", "imagePullPolicy": "IfNotPresent"}, replicas=5)
    rules = IgnoreRules(
        [*DEFAULT_IGNORE_FIELDS, "spec.replicas", "spec.template.spec.containers[*].imagePullPolicy"]
    )
    assert diffs(declared, live, rules) == {}
    assert set(diffs(declared, live)) == {
        "spec.replicas",
        "spec.template.spec.containers[web].imagePullPolicy",
    }
    assert not IgnoreRules(["spec.rep"]).ignored(("spec", "replicas"))  # a prefix of a name is not its parent


def test_shown_values_mask_secret_env_values_but_show_references_and_plain_settings():
    env = (*CONTAINERS, Item("name", "web"), "env")
    assert shown_value((*env, Item("name", "API_TOKEN"), "value"), "s3cr3t-XkD93jfLq0Zp") == MASK
    assert shown_value((*env, Item("name", "LOG_LEVEL"), "value"), "debug") == "debug"
    assert (
        shown_value((*env, Item("name", "DSN"), "valueFrom", "secretKeyRef", "name"), "orders-db")
        == "orders-db"
    )
    assert shown_value((*env, Item("name", "PASSWORD")), {"name": "PASSWORD", "value": "hunter2"}) == MASK
    assert shown_value((*CONTAINERS, Item("name", "sidecar")), {"name": "sidecar", "env": []}) == "present"
    assert shown_value(("spec", "replicas"), None, present=False) == "absent"
    assert (
        display_path((*CONTAINERS, Item("name", "web"), "ports", 0))
        == "spec.template.spec.containers[web].ports[0]"
    )


MANAGED = [
    {
        "manager": "kube-controller-manager",
        "operation": "Update",
        "time": "2024-04-01T08:00:00Z",
        "fieldsV1": {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}},
    },
    {
        "manager": "kubectl-client-side-apply",
        "operation": "Update",
        "time": "2024-04-02T08:00:00Z",
        "fieldsV1": {
            "f:spec": {
                "f:replicas": {},
                "f:template": {
                    "f:spec": {"f:containers": {'k:{"name":"web"}': {".": {}, "f:image": {}, "f:name": {}}}}
                },
            }
        },
    },
    {
        "manager": "kubectl-edit",
        "operation": "Update",
        "time": "2024-04-03T09:30:00Z",
        "fieldsV1": {
            "f:spec": {
                "f:template": {
                    "f:spec": {"f:containers": {'k:{"name":"web"}': {"f:image": {}, "f:resources": {}}}}
                }
            }
        },
    },
]


def test_the_newest_manager_owning_a_field_is_who_set_it():
    live = {"metadata": {"managedFields": MANAGED}}
    image = owner_of(live, (*CONTAINERS, Item("name", "web"), "image"))
    assert image is not None and image.manager == "kubectl-edit" and image.manual
    assert image.time == datetime(2024, 4, 3, 9, 30, tzinfo=UTC)
    assert image.describe() == "field manager kubectl-edit (kubectl edit, Update) at 2024-04-03 09:30 UTC"
    replicas = owner_of(live, ("spec", "replicas"))
    assert replicas is not None and replicas.manager == "kubectl-client-side-apply"
    # an empty node owns its subtree atomically; a path no entry reaches has no owner
    assert (
        owner_of(live, (*CONTAINERS, Item("name", "web"), "resources", "limits", "cpu")).manager
        == "kubectl-edit"
    )
    assert owner_of(live, (*CONTAINERS, Item("name", "other"), "image")) is None
    assert not fieldset_owns({"f:spec": {"f:replicas": {}}}, ("spec", "paused"))
    assert owner_of({"metadata": {}}, ("spec", "replicas")) is None


def test_what_looks_applied_by_a_tool():
    assert looks_applied(
        {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}}}
    )
    assert "Argo CD" in looks_applied({"metadata": {"labels": {"argocd.argoproj.io/instance": "shop"}}})
    assert looks_applied({"metadata": {"managedFields": [{"manager": "kustomize-controller"}]}})
    assert looks_applied({"metadata": {"managedFields": [{"manager": "kube-controller-manager"}]}}) is None
