"""Classification: every kube-prometheus alerting rule, invented alerts, incidents, escalation."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from bot.alerts.classify import (
    CATEGORIES,
    HEARTBEAT_ALERTNAMES,
    AlertView,
    categorise,
    categorise_alert,
    escalated_severity,
    is_heartbeat,
)

MIXIN = Path("/work/shared/fixtures/kubernetes-mixin")


def alert(name: str, status: str = "firing", annotations: dict[str, str] | None = None, **labels: str) -> AlertView:
    return AlertView(name, status, {"alertname": name, **labels}, dict(annotations or {}))


def _view(name: str, labels: dict, annotations: dict) -> AlertView:
    # YAML gives some label values as numbers or booleans; Alertmanager always sends strings.
    return alert(name, annotations=annotations, **{key: str(value) for key, value in labels.items()})


def _fixture_rules() -> list[AlertView]:
    groups = yaml.safe_load((MIXIN / "prometheus_alerts.yaml").read_text())["groups"]
    return [
        _view(rule["alert"], rule.get("labels", {}), rule["annotations"])
        for group in groups
        for rule in group["rules"]
        if "alert" in rule
    ]


RULES = _fixture_rules()
BY_NAME = {view.name: view for view in RULES}

# Rules allowed to come out as `other`, with the reason. None: every rule has evidence.
ALLOWED_OTHER: dict[str, str] = {}

HAND_CHECKED = {
    "KubePodCrashLooping": "availability",
    "KubePodNotReady": "availability",
    "KubeDeploymentReplicasMismatch": "availability",  # "Deployment" alone is not deployment evidence
    "KubeContainerWaiting": "availability",
    "KubeDaemonSetMisScheduled": "availability",
    "KubeJobFailed": "availability",  # the workload did not complete; see the module docstring
    "KubeJobNotCompleted": "availability",
    "KubePdbNotEnoughHealthyPods": "availability",
    "KubeNodeNotReady": "availability",
    "KubeNodeUnreachable": "availability",
    "KubeNodeReadinessFlapping": "availability",
    "KubeAggregatedAPIDown": "availability",
    "KubeletDown": "availability",
    "KubeletPodStartUpLatencyHigh": "latency",
    "KubeletPlegDurationHigh": "latency",
    "KubeAPIErrorBudgetBurn": "errors",
    "KubeClientErrors": "errors",
    "KubeAggregatedAPIErrors": "errors",
    "KubeAPITerminatedRequests": "errors",
    "KubePersistentVolumeErrors": "errors",
    "KubeCPUOvercommit": "saturation",
    "KubeMemoryQuotaOvercommit": "saturation",
    "KubeQuotaExceeded": "saturation",
    "KubeQuotaAlmostFull": "saturation",
    "CPUThrottlingHigh": "saturation",
    "KubeHpaMaxedOut": "saturation",
    "KubePersistentVolumeInodesFillingUp": "saturation",
    "KubeNodePressure": "saturation",
    "KubeNodeEviction": "saturation",
    "KubeletTooManyPods": "saturation",
    "KubeDeploymentGenerationMismatch": "deployment",  # not availability, although "failed" is in it
    "KubeDeploymentRolloutStuck": "deployment",  # "stuck" is availability; the cause wins
    "KubeStatefulSetUpdateNotRolledOut": "deployment",
    "KubeVersionMismatch": "deployment",
    "KubeClientCertificateExpiration": "security",
    "KubeletServerCertificateExpiration": "security",
    "KubeletClientCertificateRenewalErrors": "security",  # certificate beats errors
}


def test_the_fixture_is_the_full_mixin():
    assert len(BY_NAME) >= 55 and len(RULES) >= 65


def test_no_rule_in_the_mixin_is_other():
    others = {view.name for view in RULES if categorise_alert(view) == "other"}
    assert others == set(ALLOWED_OTHER)


@pytest.mark.parametrize(("name", "expected"), sorted(HAND_CHECKED.items()))
def test_hand_checked_rules(name, expected):
    assert name in BY_NAME, "the subset must come from the fixture"
    assert all(categorise_alert(view) == expected for view in RULES if view.name == name)


def test_hand_checked_subset_covers_every_non_heartbeat_category():
    assert set(HAND_CHECKED.values()) == set(CATEGORIES) - {"heartbeat", "other"}


def test_annotations_alone_reach_the_same_category():
    """With the alertname hidden, summary and description still carry the evidence."""
    differ = {}
    for view in RULES:
        anonymous = AlertView("Rule1", view.status, {"severity": view.labels["severity"]}, view.annotations)
        if categorise_alert(anonymous) != categorise_alert(view):
            differ[view.name] = categorise_alert(anonymous)
    # "PersistentVolume is having issues with provisioning": the name is the only evidence.
    assert differ == {"KubePersistentVolumeErrors": "other"}


def test_rendered_alerts_from_the_mixins_own_unit_tests_agree_with_their_rule():
    """Real label sets (reason, condition, eviction_signal, quantile) and rendered annotations."""
    checked = 0
    for path in sorted((MIXIN / "tests").glob("*.yaml")):
        for case in yaml.safe_load(path.read_text()).get("tests", []):
            for expectation in case.get("alert_rule_test", []):
                name = expectation["alertname"]
                for expected in expectation.get("exp_alerts") or []:
                    view = _view(name, expected.get("exp_labels", {}), expected.get("exp_annotations", {}))
                    assert categorise_alert(view) == categorise_alert(BY_NAME[name]), (name, view.labels)
                    checked += 1
    assert checked >= 50


# --- heartbeats ---

WATCHDOG = alert(
    "Watchdog",
    annotations={"summary": "An alert that should always be firing to certify that Alertmanager is working properly."},
    severity="none",
)
INFO_INHIBITOR = alert("InfoInhibitor", annotations={"summary": "Info-level alert inhibition."}, severity="none")


def test_kube_prometheus_heartbeats_and_nothing_else():
    assert {"Watchdog", "InfoInhibitor", "DeadMansSwitch"} <= HEARTBEAT_ALERTNAMES
    for view in (WATCHDOG, INFO_INHIBITOR, alert("DeadMansSwitch", severity="none"), alert("watchdog")):
        assert is_heartbeat(view) and categorise_alert(view) == "heartbeat"
    assert not [view.name for view in RULES if is_heartbeat(view) or categorise_alert(view) == "heartbeat"]


@pytest.mark.parametrize(
    ("view", "expected"),
    [
        (alert("BatchPipelineAlive", type="heartbeat"), True),
        (alert("BatchPipelineAlive", category="Heartbeat"), True),
        (alert("Watchdog", category="availability"), False),  # the explicit label decides
        (alert("Watchdog", severity="critical"), False),  # a page that shares the name is not dropped
        (alert("HeartbeatMissing", severity="critical"), False),  # a missing heartbeat is a real problem
        (alert("WatchdogTimerReset"), False),
    ],
)
def test_is_heartbeat(view, expected):
    assert is_heartbeat(view) is expected


def test_a_missing_heartbeat_is_an_availability_problem():
    assert categorise_alert(alert("HeartbeatMissing")) == "availability"


# --- reasoning, not a lookup ---


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CheckoutP99LatencyHigh", "latency"),
        ("SearchApiSlowResponses", "latency"),
        ("PaymentsHighErrorRate", "errors"),
        ("GatewayHTTP5xxRateHigh", "errors"),
        ("CheckoutSLOBurnRateHigh", "errors"),
        ("CheckoutLatencySLOBurn", "latency"),  # budget words yield to what the objective is about
        ("AvailabilitySLOBudgetExhausted", "availability"),  # an exhausted budget is not saturation
        ("OrdersRolloutStuck", "deployment"),
        ("ArgoAppSyncFailed", "deployment"),
        ("AlertmanagerFailedReload", "deployment"),
        ("LedgerDiskAlmostFull", "saturation"),
        ("RedisConnectionPoolExhausted", "saturation"),
        ("PodOOMKilled", "saturation"),
        ("IngressCertExpiringSoon", "security"),
        ("TLSHandshakeForbiddenSpike", "security"),
        ("InventoryServiceDown", "availability"),
        ("BlackboxProbeFailed", "availability"),
        ("TargetDown", "availability"),
        ("NodeCPUHighUsage", "saturation"),  # a resource noun alone is (weak) saturation evidence
        ("NodeRAIDDiskFailure", "availability"),  # ... and yields to stronger evidence
        ("KafkaConsumerGroupLag", "saturation"),
        ("LoadBalancerDown", "availability"),
        ("SomethingHappened", "other"),
    ],
)
def test_invented_alert_names(name, expected):
    assert categorise_alert(alert(name, severity="warning")) == expected


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"category": "deployment"}, "deployment"),
        ({"category": " Security "}, "security"),
        ({"opsbot_category": "latency", "category": "errors"}, "latency"),  # ours is checked first
        ({"category": "database"}, "availability"),  # not a category: ignored, evidence decides
    ],
)
def test_explicit_category_label(labels, expected):
    assert categorise_alert(alert("KubePodCrashLooping", **labels)) == expected


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({"summary": "Checkout p99 response time above 2s"}, "latency"),
        ({"description": "More than 5% of requests to /pay returned HTTP 5xx."}, "errors"),
        ({"message": "Pod shop/cart-1 has been restarting 6 times in 10 minutes."}, "availability"),
        ({"summary": "Payment provider TLS certificate expires in 3 days"}, "security"),
        # the summary is a tier above the description
        ({"summary": "Checkout is slow", "description": "errors rising on cart"}, "latency"),
        ({"summary": "Ping", "description": "nothing to see"}, "other"),
    ],
)
def test_annotation_only_evidence(annotations, expected):
    assert categorise_alert(alert("TeamAlert7", annotations=annotations)) == expected


def test_the_name_outranks_the_annotations():
    view = alert("InventoryServiceDown", annotations={"description": "error rate and latency rising"})
    assert categorise_alert(view) == "availability"


@pytest.mark.parametrize(
    ("name", "labels", "expected"),
    [
        ("KubeContainerWaiting", {"reason": "ImagePullBackOff"}, "deployment"),
        ("KubeContainerWaiting", {"reason": "CreateContainerConfigError"}, "deployment"),
        ("KubeContainerWaiting", {"reason": "ContainerCreating"}, "availability"),
        ("ShopPodRestarting", {"reason": "OOMKilled"}, "saturation"),  # the cause beats the symptom
        ("CheckoutSLI", {"le": "0.5"}, "latency"),
        ("CheckoutSLI", {"code": "503"}, "errors"),
        ("CheckoutSLI", {"grpc_code": "Unavailable"}, "errors"),
        ("CheckoutSLI", {"code": "200", "namespace": "cert-manager"}, "other"),  # other labels are no evidence
    ],
)
def test_label_evidence(name, labels, expected):
    assert categorise_alert(alert(name, **labels)) == expected


# --- incidents ---

CRASH = alert("KubePodCrashLooping")
ROLLOUT = alert("KubeDeploymentRolloutStuck")
LATENCY = alert("CheckoutP99LatencyHigh")
ERRORS = alert("PaymentsHighErrorRate")
UNKNOWN = alert("SomethingHappened")


def resolved(view: AlertView) -> AlertView:
    return AlertView(view.name, "resolved", view.labels, view.annotations)


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        ([CRASH, ROLLOUT, CRASH], "deployment"),  # the rollout explains the crash loops
        ([LATENCY, CRASH], "latency"),
        ([LATENCY, ERRORS], "errors"),
        ([resolved(ROLLOUT), CRASH], "availability"),  # only firing alerts count
        ([resolved(ROLLOUT), resolved(CRASH)], "deployment"),  # all resolved: all count
        ([WATCHDOG, CRASH], "availability"),
        ([WATCHDOG, UNKNOWN], "other"),  # never heartbeat while a real alert fires
        ([WATCHDOG, INFO_INHIBITOR], "heartbeat"),
        ([], "other"),
        # explicit labels agreed by every firing alert win over evidence
        ([alert("KubePodCrashLooping", category="security"), alert("KubeletDown", category="security")], "security"),
        ([alert("KubeVersionMismatch", category="latency"), resolved(ROLLOUT)], "latency"),
        # not agreed: each alert's own category, most cause-like first
        ([alert("KubeletDown", category="latency"), ROLLOUT], "deployment"),
        ([alert("KubeletDown", category="latency"), alert("KubeletDown", category="errors")], "errors"),
        ([alert("KubeletDown", category="heartbeat"), CRASH], "availability"),
    ],
)
def test_incident_category(alerts, expected):
    assert categorise(alerts) == expected


def test_incident_category_does_not_depend_on_order():
    alerts = [CRASH, LATENCY, ERRORS, alert("KubeNodePressure"), resolved(ROLLOUT), UNKNOWN, WATCHDOG]
    assert {categorise(list(order)) for order in itertools.permutations(alerts)} == {"saturation"}


# --- severity escalation ---


@pytest.mark.parametrize(
    ("base", "firing", "targets", "expected"),
    [
        ("warning", 9, 3, "warning"),
        ("warning", 10, 3, "high"),
        ("warning", 10, 2, "warning"),  # many alerts on two targets is not a storm
        ("warning", 49, 30, "high"),
        ("warning", 50, 3, "critical"),
        ("info", 10, 3, "warning"),
        ("info", 50, 3, "high"),
        ("high", 10, 3, "critical"),
        ("critical", 500, 100, "critical"),
        ("critical", 0, 0, "critical"),
        ("unknown", 9, 5, "unknown"),
        ("unknown", 10, 5, "high"),  # counts as warning when raised
        ("unknown", 50, 5, "critical"),
        ("Warning", 10, 3, "high"),
        ("page", 0, 0, "unknown"),
    ],
)
def test_escalated_severity(base, firing, targets, expected):
    assert escalated_severity(base, firing, targets) == expected


def test_escalation_thresholds_are_configurable_and_checked():
    assert escalated_severity("info", 3, 3, thresholds=(3, 5)) == "warning"
    assert escalated_severity("info", 5, 3, thresholds=(3, 5)) == "high"
    with pytest.raises(ValueError):
        escalated_severity("info", 5, 3, thresholds=(5, 3))
    with pytest.raises(ValueError):
        escalated_severity("info", 5, 3, thresholds=(0, 3))
