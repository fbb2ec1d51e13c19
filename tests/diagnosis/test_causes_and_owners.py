"""Issue 13: causes in a dependency (the chain), credentials refused by a reached peer, a
saturated worker pool, settings a traceback names, objects a GitOps controller applies, an
HPA that owns the replica count, and owner kinds other than Deployment."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bot.context import kube_facts as facts
from bot.context.model import DependencyView, LogView, ObjectRef, ServiceView
from bot.diagnosis.engine import diagnose
from bot.remediation import catalog
from tests.diagnosis.builders import NOW, alert, container, context, deployment, pod, stamp

WEB = ObjectRef("Deployment", "shop", "web")
RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
WEB_POD = ObjectRef("Pod", "shop", "web-7d9f-a")


def _logs(pod_ref: ObjectRef, *lines: str, previous=False) -> LogView:
    return LogView(pod_ref, "app", previous, list(lines), [], False)


def test_a_cause_in_the_dependency_behind_a_service_is_the_answer_with_its_chain():
    oom = container(restarts=5, last="OOMKilled", last_exit=137, last_minutes_ago=2, memory_limit="1Gi")
    cache = pod("cache-5c6d-x", owner=("ReplicaSet", "cache-5c6d"), containers=[oom], labels={"app": "cache"})
    ctx = context(alerts=[alert("HighErrorRate", service="web")], pods=[pod("web-7d9f-a"), cache],
                  workloads=[deployment(), deployment("cache", replicas=1, available=1)], focus=[WEB])
    ctx.pods[1].workload = ObjectRef("Deployment", "shop", "cache")
    line = "2026-10-01T11:59:00Z ERROR redis: dial tcp 10.96.4.4:6379: connect: connection refused"
    ctx.logs = [_logs(WEB_POD, line)]
    service = ObjectRef("Service", "shop", "cache")
    ctx.services = [ServiceView(service, {"app": "cache"}, [6379], 1, 0, cluster_ip="10.96.4.4")]
    ctx.dependencies = [DependencyView("10.96.4.4", 6379, 1, line, [WEB_POD], service, 1,
                                       [ObjectRef("Deployment", "shop", "cache")])]
    ctx.upstream = [ObjectRef("Deployment", "shop", "cache")]
    top = diagnose(ctx).top
    assert (top.category, str(top.resource)) == ("memory_limit", "Deployment/shop/cache")
    assert top.supporting[0].text.startswith("chain: web-7d9f-a's errors name 10.96.4.4 → Service Service/shop/cache")
    assert any(rule.startswith("upstream_cause") for rule in top.rules)


def test_credentials_refused_by_a_reached_peer_are_not_an_unreachable_dependency():
    old = pod("web-7d9f-a")
    old["metadata"]["creationTimestamp"] = stamp(300)
    new = pod("web-7d9f-b")
    new["metadata"]["creationTimestamp"] = stamp(10)
    for item in (old, new):
        item["spec"]["containers"][0]["env"] = [{"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {
            "name": "web-db", "key": "password"}}}]
    ctx = context(alerts=[alert("HighErrorRate", service="web")], pods=[old, new], workloads=[deployment()],
                  focus=[WEB])
    ctx.logs = [_logs(WEB_POD, '2026-10-01T11:59:00Z ERROR connection to server at "10.88.0.3", port 5432 failed: '
                               'FATAL:  password authentication failed for user "web"')]
    top = diagnose(ctx).top
    assert (top.category, top.resource) == ("config_error", WEB)
    assert top.facts.get("restart_remedies") == "true" and "web-db" in top.summary


def test_a_program_that_says_its_workers_are_full_is_at_capacity():
    ctx = context(alerts=[alert("PortalLatencyHigh", service="web")], pods=[pod("web-7d9f-a")],
                  workloads=[deployment()], focus=[WEB])
    ctx.logs = [_logs(WEB_POD, '*** uWSGI listen queue of socket ":8000" (fd: 3) full !!! (101/100) ***')]
    top = diagnose(ctx).top
    assert (top.category, top.resource) == ("capacity", WEB)
    assert top.facts["replicas_owner"] == "deployment"


def test_a_setting_named_by_the_traceback_leads_to_the_configmap_that_holds_it():
    crash = container(ready=False, restarts=4, waiting="CrashLoopBackOff", last="Error", last_exit=1)
    failing = pod("web-7d9f-a", containers=[crash], ready=False)
    failing["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "web-env"}}]
    ctx = context(alerts=[alert(pod="web-7d9f-a")], pods=[failing], workloads=[deployment(available=0)], focus=[WEB])
    ctx.config_maps = {ObjectRef("ConfigMap", "shop", "web-env"): {"JOB_TIMEOUT_SECONDS": "45s"}}
    ctx.logs = [_logs(WEB_POD, "Traceback (most recent call last):", '    timeout=int(os.environ["JOB_TIMEOUT_SECONDS"]),',
                      "ValueError: invalid literal for int() with base 10: '45s'", previous=True)]
    top = diagnose(ctx).top
    assert (top.category, str(top.resource)) == ("config_error", "ConfigMap/shop/web-env")


def test_an_object_a_gitops_controller_applies_gets_no_direct_change():
    oom = container(ready=False, restarts=6, waiting="CrashLoopBackOff", last="OOMKilled", last_exit=137)
    managed = deployment(available=1)
    managed["metadata"]["annotations"] = {"argocd.argoproj.io/tracking-id": "maps:apps/Deployment:shop/web"}
    ctx = context(alerts=[alert(pod="web-7d9f-a")], pods=[pod("web-7d9f-a", containers=[oom], ready=False)],
                  workloads=[managed], focus=[WEB])
    top = diagnose(ctx).top
    assert top.category == "memory_limit" and top.facts["gitops"].startswith("Argo CD")
    assert "Git" in top.action
    loaded = catalog.load_catalog(RUNBOOKS)
    candidates, skipped = catalog.match(loaded, "memory_limit", {"kind": "Deployment", "name": "web",
                                                                 "namespace": "shop", "gitops": top.facts["gitops"]},
                                        [])
    assert candidates == [] and any("change it in Git" in why for why in skipped)


def test_the_hpa_owns_the_replica_count_so_only_its_maximum_is_raised():
    loaded = catalog.load_catalog(RUNBOOKS)
    base = {"kind": "HorizontalPodAutoscaler", "namespace": "shop", "name": "web", "scale_target": "web",
            "suggested_replicas": "12"}
    proposed, _ = catalog.match(loaded, "capacity", {**base, "replicas_owner": "hpa"}, [])
    assert [c.runbook.id for c in proposed] == ["raise-hpa-max-replicas"]
    direct, _ = catalog.match(loaded, "capacity", {**base, "kind": "Deployment", "replicas_owner": "deployment"}, [])
    assert [c.runbook.id for c in direct] == ["scale-deployment"]


def test_a_bare_pod_and_a_replicaset_without_a_deployment_are_their_own_workloads():
    bare = pod("reindex-manual", owner=("ReplicaSet", "x"))
    del bare["metadata"]["ownerReferences"]
    view = facts.pod_view(bare, {})
    assert view.workload == ObjectRef("Pod", "shop", "reindex-manual")
    as_workload = facts.workload_view(dict(bare, kind="Pod"))
    assert (as_workload.desired, as_workload.ready) == (1, 1)
    assert facts.gitops_owner({"metadata": {"labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}}}).startswith("Flux")
    assert NOW - timedelta(minutes=60) <= as_workload.created_at


def test_a_client_that_cannot_verify_an_outside_peer_points_at_its_ca_bundle():
    failing = pod("web-7d9f-a", containers=[container(ready=False, restarts=3, waiting="CrashLoopBackOff",
                                                      last="Error", last_exit=1)], ready=False)
    failing["spec"]["volumes"] = [{"name": "partner-ca", "configMap": {"name": "partner-ca-bundle"}},
                                  {"name": "serving", "secret": {"secretName": "web-tls"}}]
    failing["spec"]["containers"][0]["volumeMounts"] = [{"name": "partner-ca", "mountPath": "/etc/ssl/partner"},
                                                        {"name": "serving", "mountPath": "/etc/tls"}]
    ctx = context(alerts=[alert(pod="web-7d9f-a")], pods=[failing], workloads=[deployment(available=0)], focus=[WEB])
    ctx.logs = [_logs(WEB_POD, "2026-10-01T11:58:00Z ERROR requests.exceptions.SSLError: HTTPSConnectionPool("
                               "host='api.partner.example', port=443): [SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                               "verify failed: certificate has expired (_ssl.c:1000)", previous=True)]
    top = diagnose(ctx).top
    assert (top.category, str(top.resource)) == ("certificate_expired", "ConfigMap/shop/partner-ca-bundle")
    ctx.logs = [_logs(WEB_POD, "2026-10-01T11:58:00Z ERROR remote error: tls: expired certificate", previous=True)]
    assert str(diagnose(ctx).top.resource) == "Secret/shop/web-tls", "the peer refused our own certificate"


def test_a_daemonset_that_does_not_tolerate_a_new_taint_is_misscheduled():
    from bot.context.model import NodeView
    from bot.diagnosis.analyzers.scheduling import tolerates

    agent = {"kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "shop", "creationTimestamp": stamp(9000)},
             "spec": {"selector": {"matchLabels": {"app": "agent"}},
                      "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                          "containers": [], "tolerations": [{"key": "node-role.kubernetes.io/control-plane",
                                                             "operator": "Exists", "effect": "NoSchedule"}]}}},
             "status": {"desiredNumberScheduled": 3, "numberReady": 3, "numberAvailable": 3, "numberMisscheduled": 2}}
    ref = ObjectRef("DaemonSet", "shop", "agent")
    ctx = context(alerts=[alert("KubeDaemonSetMisScheduled", daemonset="agent")], workloads=[agent], focus=[ref])
    taint = {"key": "dedicated", "value": "ml", "effect": "NoSchedule"}
    ctx.nodes = [NodeView("gpu-1", {}, [taint], False, {}, {}), NodeView("cp-1", {}, [
        {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}], False, {}, {})]
    top = diagnose(ctx).top
    assert (top.category, top.resource) == ("scheduling", ref) and "dedicated=ml:NoSchedule" in top.summary
    assert tolerates([{"operator": "Exists"}], taint) and tolerates([{"key": "dedicated", "value": "ml"}], taint)
    assert not tolerates([{"key": "dedicated", "value": "web"}], taint)


def test_a_job_failure_its_cronjob_made_good_since_is_history():
    cron = ObjectRef("CronJob", "shop", "sweep")
    failed = {"kind": "Job", "metadata": {"name": "sweep-1", "namespace": "shop", "creationTimestamp": stamp(2900),
                                          "ownerReferences": [{"kind": "CronJob", "name": "sweep", "controller": True}]},
              "spec": {"template": {"spec": {}}}, "status": {"failed": 4, "conditions": [
                  {"type": "Failed", "status": "True", "lastTransitionTime": stamp(2880)}]}}
    cronjob = {"kind": "CronJob", "metadata": {"name": "sweep", "namespace": "shop", "creationTimestamp": stamp(90000)},
               "spec": {"jobTemplate": {"spec": {"template": {"spec": {}}}}},
               "status": {"lastSuccessfulTime": stamp(14)}}
    job = ObjectRef("Job", "shop", "sweep-1")
    crashed = container(ready=False, last="Error", last_exit=1, last_minutes_ago=2880)
    ctx = context(alerts=[alert("KubeJobFailed", job_name="sweep-1", minutes_ago=2870)],
                  pods=[pod("sweep-1-x", owner=("Job", "sweep-1"), phase="Failed", containers=[crashed], ready=False)],
                  workloads=[failed, cronjob], focus=[job])
    top = diagnose(ctx).top
    assert top.category == "not_an_issue" and str(cron) in top.summary


def test_an_injected_sidecar_that_outlives_the_jobs_container_keeps_the_job_from_completing():
    job = {"kind": "Job", "metadata": {"name": "export-1", "namespace": "shop", "creationTimestamp": stamp(600)},
           "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "export:1"}]}}},
           "status": {"active": 1}}
    done = container("app", ready=False)
    done[1]["state"] = {"terminated": {"reason": "Completed", "exitCode": 0, "finishedAt": stamp(500)}}
    proxy = container("istio-proxy")
    stuck = pod("export-1-x", owner=("Job", "export-1"), containers=[done, proxy])
    ref = ObjectRef("Job", "shop", "export-1")
    ctx = context(alerts=[alert("KubeJobNotCompleted", job_name="export-1")], pods=[stuck], workloads=[job],
                  focus=[ref])
    top = diagnose(ctx).top
    assert (top.category, top.resource) == ("config_error", ref) and "istio-proxy" in top.summary


def test_pods_refused_by_an_admission_webhook_that_does_not_answer_name_its_configuration():
    from bot.context.model import WebhookView

    events = [{"involvedObject": {"kind": "ReplicaSet", "name": "web-7d9f", "namespace": "shop"}, "type": "Warning",
               "reason": "FailedCreate", "count": 40, "firstTimestamp": stamp(20), "lastTimestamp": stamp(1),
               "message": 'Error creating: Internal error occurred: failed calling webhook "verify.gate.io": '
                          'no endpoints available for service "gate"'}]
    ctx = context(alerts=[alert("KubeDeploymentReplicasMismatch", deployment="web")],
                  workloads=[deployment(available=0)], events=events, focus=[WEB])
    from bot.context.model import Revision, RolloutView

    revision = Revision(3, "web-7d9f", "7d9f", NOW - timedelta(days=3), {}, 2, 0)
    ctx = context(alerts=ctx.alerts, workloads=[deployment(available=0)], events=events, focus=[WEB])
    ctx.rollouts = [RolloutView(WEB, [revision], revision, None, [], False)]
    ctx.webhooks = [WebhookView(ObjectRef("ValidatingWebhookConfiguration", None, "gate-pods"), "verify.gate.io",
                                "Fail", ObjectRef("Service", "gate", "gate"))]
    top = diagnose(ctx).top
    assert (top.category, str(top.resource)) == ("dependency_unreachable", "ValidatingWebhookConfiguration/gate-pods")
