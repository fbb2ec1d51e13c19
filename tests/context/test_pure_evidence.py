"""Pure pieces of the context layer: subject resolution, change points, log reading, diffs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.context.changepoint import change_point
from bot.context.log_lines import parse_line
from bot.context.log_signals import classify, env_names_in, hosts_in
from bot.context.log_templates import mine
from bot.context.model import AlertView, ObjectRef
from bot.context.rollout import rollout_view, template_changes
from bot.context.subject import incident_start, resolve_subject

NOW = datetime(2026, 9, 3, 16, 20, tzinfo=UTC)


def alert(alertname="KubePodCrashLooping", status="firing", **labels):
    return AlertView(alertname, status, {"alertname": alertname, **labels}, {}, NOW - timedelta(minutes=5))


def test_subject_follows_kube_state_metrics_labels():
    subject = resolve_subject([
        alert(namespace="shop", pod="checkout-7d9f-abc12", container="app"),
        alert("KubeDeploymentReplicasMismatch", namespace="shop", deployment="checkout"),
        alert("KubePersistentVolumeFillingUp", namespace="shop", persistentvolumeclaim="data-db-0"),
        alert("KubeNodeNotReady", node="worker-3"),
    ])
    assert subject.namespaces == ["shop"]
    assert subject.pods == [ObjectRef("Pod", "shop", "checkout-7d9f-abc12")]
    assert subject.workloads == [ObjectRef("Deployment", "shop", "checkout")]
    assert subject.claims == [ObjectRef("PersistentVolumeClaim", "shop", "data-db-0")]
    assert subject.nodes == ["worker-3"]


def test_untrusted_label_values_that_are_not_kubernetes_names_are_ignored():
    subject = resolve_subject([alert(namespace="shop", pod="../../etc/passwd", deployment="a b")])
    assert subject.pods == [] and subject.workloads == []


def test_the_exporters_own_pod_label_is_not_the_subject():
    subject = resolve_subject([alert("KubeDeploymentReplicasMismatch", namespace="shop", deployment="web",
                                     pod="kube-state-metrics-6d8f7c9b4-x2k9p")])
    assert subject.pods == [] and subject.workloads == [ObjectRef("Deployment", "shop", "web")]


def test_heartbeats_and_aggregated_apis():
    assert resolve_subject([alert("Watchdog", severity="none")]).heartbeat
    subject = resolve_subject([alert("KubeAggregatedAPIDown", name="v1beta1.custom.metrics.k8s.io")])
    assert subject.other == [ObjectRef("APIService", None, "v1beta1.custom.metrics.k8s.io")]


def test_incident_start_is_before_the_first_firing_alert():
    early = AlertView("A", "firing", {}, {}, NOW - timedelta(minutes=10))
    resolved = AlertView("B", "resolved", {}, {}, NOW - timedelta(hours=3))
    assert incident_start([early, resolved], NOW) == NOW - timedelta(minutes=25)


def series(values, step=60):
    start = NOW - timedelta(seconds=step * (len(values) - 1))
    return [(start + timedelta(seconds=step * i), float(v)) for i, v in enumerate(values)]


def test_change_point_finds_a_step_and_its_time():
    points = series([0.01, 0.012, 0.011, 0.009, 0.01, 0.011] * 3 + [0.4, 0.42, 0.39, 0.41, 0.4, 0.43])
    change = change_point(points)
    assert change is not None and change.at == points[18][0]
    assert change.before < 0.02 and change.after > 0.35


def test_noise_is_not_a_change():
    assert change_point(series([10, 11, 9, 10, 12, 10, 9, 11, 10, 10, 11, 9])) is None
    assert change_point(series([5] * 20)) is None
    assert change_point(series([1, 2])) is None


def test_log_lines_of_every_common_shape():
    json_line = parse_line('{"level":"error","ts":"2026-09-03T16:17:26.004Z","msg":"db down","err":"dial tcp: refused"}')
    assert json_line.level == "error" and json_line.message == "db down: dial tcp: refused"
    assert json_line.at == datetime(2026, 9, 3, 16, 17, 26, 4000, tzinfo=UTC)
    logfmt = parse_line('ts=2026-09-03T16:17:26Z level=warn msg="slow query" duration=2s')
    assert logfmt.level == "warn" and logfmt.message == "slow query"
    klog = parse_line("E0903 16:17:26.114 1 reflector.go:138] failed to list", year=2026)
    assert klog.level == "error" and klog.at == datetime(2026, 9, 3, 16, 17, 26, tzinfo=UTC)
    python = parse_line("2026-05-02 06:57:56,114 CRITICAL token_service.app: refusing to start")
    assert python.level == "error" and python.at.minute == 57
    assert parse_line("panic: assignment to entry in nil map").level == "error"


def test_mining_groups_lines_that_differ_only_in_their_values_and_finds_the_jump():
    window = NOW - timedelta(minutes=10)
    before = [f"2026-09-03T15:{m:02d}:00Z INFO request id={m * 7919} took {m}ms" for m in range(10, 50)]
    during = [f"2026-09-03T16:{m:02d}:00Z ERROR connection to 10.0.3.{m}:5432 refused" for m in range(12, 19)]
    templates = mine([(before + during, False)], window, NOW)
    refused = next(t for t in templates if "refused" in t.template)
    assert refused.count == 7 and refused.jumped and refused.level == "error"
    assert templates[0] is refused, "the jumped error comes first"
    requests = next(t for t in templates if "request" in t.template)
    assert requests.count == 40 and not requests.jumped


def test_failure_families_and_what_they_name():
    assert "dependency" in classify("dial tcp 10.4.5.6:6379: connect: connection refused")
    assert "certificate" in classify("x509: certificate has expired or is not yet valid")
    assert "config" in classify("FATAL: required environment variable SETTLEMENT_REGION is not set")
    assert "storage" in classify('could not extend file "base/1/2": No space left on device')
    assert "code" in classify("panic: runtime error: invalid memory address or nil pointer dereference")
    assert [(h.host, h.port) for h in hosts_in("dial tcp: lookup payments.partner.example on 10.96.0.10:53: "
                                                "no such host")][0] == ("payments.partner.example", None)
    assert [h.host for h in hosts_in('connection to server at "ledger-db.finance.svc.cluster.local" (10.1.2.3), '
                                     "port 5432 failed: Connection refused")] == ["ledger-db.finance.svc.cluster.local"]
    assert hosts_in("failed to connect to redis:6379")[0].port == 6379
    assert "SETTLEMENT_REGION" in env_names_in("required environment variable SETTLEMENT_REGION is not set")


def template(image, env=None, memory="512Mi"):
    return {"metadata": {"labels": {"app": "api"}},
            "spec": {"containers": [{"name": "api", "image": image, "env": env or [],
                                     "resources": {"limits": {"memory": memory}}}]}}


def test_template_diff_names_image_env_and_resources():
    before = template("api:1.0", [{"name": "A", "value": "1"}, {"name": "B", "value": "x"}])
    after = template("api:1.1", [{"name": "A", "value": "2"}, {"name": "C", "value": "y"}], memory="256Mi")
    changes = {c.path: (c.before, c.after) for c in template_changes(before, after)}
    assert changes["containers[api].image"] == ("api:1.0", "api:1.1")
    assert changes["containers[api].env.A"] == ("1", "2")
    assert changes["containers[api].env.B"] == ("[REDACTED]", None), "not plainly harmless: masked"
    assert changes["containers[api].env.C"] == (None, "[REDACTED]")
    assert "containers[api].resources" in changes


def replica_set(name, revision, image, created):
    return {"kind": "ReplicaSet", "metadata": {
        "name": name, "namespace": "shop", "creationTimestamp": created,
        "labels": {"pod-template-hash": name.rsplit("-", 1)[1]},
        "annotations": {"deployment.kubernetes.io/revision": str(revision)},
        "ownerReferences": [{"kind": "Deployment", "name": "api", "controller": True}]},
        "spec": {"template": template(image)}, "status": {"replicas": 1, "readyReplicas": 1}}


def test_rollout_history_is_read_from_owned_replica_sets():
    deployment = {"kind": "Deployment", "metadata": {"name": "api", "namespace": "shop", "annotations": {
        "deployment.kubernetes.io/revision": "8"}}, "spec": {"replicas": 2}, "status": {"updatedReplicas": 1}}
    stranger = replica_set("other-1111", 99, "x", "2026-09-03T10:00:00Z")
    stranger["metadata"]["ownerReferences"][0]["name"] = "other"
    view = rollout_view(deployment, [replica_set("api-aaaa", 7, "api:1.0", "2026-09-01T10:00:00Z"),
                                     replica_set("api-bbbb", 8, "api:1.1", "2026-09-03T16:00:00Z"), stranger])
    assert (view.current.number, view.previous.number) == (8, 7)
    assert view.current.hash == "bbbb" and view.in_progress
    assert [c.path for c in view.changes] == ["containers[api].image"]


def _sts_pod(name, revision_hash, created, image):
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "db", "creationTimestamp": created,
                                        "labels": {"controller-revision-hash": revision_hash},
                                        "ownerReferences": [{"kind": "StatefulSet", "name": "pg", "controller": True}]},
            "spec": {"containers": [{"name": "pg", "image": image}]}}


def test_without_controller_revisions_the_pods_tell_a_statefulsets_history():
    from bot.context.rollout import rollout_from_pods

    sts = {"kind": "StatefulSet", "metadata": {"name": "pg", "namespace": "db"}, "spec": {"replicas": 3},
           "status": {"currentRevision": "pg-5c9d", "updateRevision": "pg-7f8e"}}
    pods = [_sts_pod("pg-0", "pg-5c9d", "2026-08-01T00:00:00Z", "postgres:15.4"),
            _sts_pod("pg-1", "pg-5c9d", "2026-08-01T00:01:00Z", "postgres:15.4"),
            _sts_pod("pg-2", "pg-7f8e", "2026-09-03T16:00:00Z", "postgres:16.0")]
    view = rollout_from_pods(sts, pods)
    assert view.current.hash == "pg-7f8e" and view.previous.hash == "pg-5c9d"
    assert [(c.path, c.before, c.after) for c in view.changes] == [
        ("containers[pg].image", "postgres:15.4", "postgres:16.0")]
    assert rollout_from_pods(sts, pods[:2]) is None, "one revision is no history"
