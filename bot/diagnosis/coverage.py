"""Which analyzers can explain each kubernetes-mixin alert about workloads, nodes, storage and
quotas. Documentation as data: the README's table is checked against it, and so is the mixin's
rule file (tests/diagnosis/test_coverage.py), so a new alert cannot go unmapped.

The alert is a symptom; these are the causes the engine looks for behind it. Control-plane
alerts (API server, scheduler, controller manager, kube-proxy, client errors, version skew) are
outside the RCA's scope: the bot investigates what runs on the cluster, not the cluster's
own control plane.
"""

from __future__ import annotations

WORKLOAD_CAUSES = ("bad_deploy", "config_error", "memory_limit", "cpu_limit", "image_pull",
                   "dependency_unreachable", "certificate_expired", "node_failure", "storage")

ALERT_ANALYZERS: dict[str, tuple[str, ...]] = {
    # kubernetes-apps
    "KubePodCrashLooping": WORKLOAD_CAUSES,
    "KubePodNotReady": (*WORKLOAD_CAUSES, "scheduling", "quota_exceeded", "capacity", "not_an_issue"),
    "KubeContainerWaiting": ("image_pull", "config_error", "storage", "bad_deploy"),
    "KubeDeploymentGenerationMismatch": ("bad_deploy", "quota_exceeded"),
    "KubeDeploymentReplicasMismatch": (*WORKLOAD_CAUSES, "scheduling", "quota_exceeded", "capacity"),
    "KubeDeploymentRolloutStuck": ("bad_deploy", "image_pull", "config_error", "scheduling", "quota_exceeded"),
    "KubeStatefulSetReplicasMismatch": (*WORKLOAD_CAUSES, "scheduling", "quota_exceeded"),
    "KubeStatefulSetGenerationMismatch": ("bad_deploy", "storage"),
    "KubeStatefulSetUpdateNotRolledOut": ("bad_deploy", "image_pull", "config_error", "storage"),
    "KubeDaemonSetRolloutStuck": ("bad_deploy", "image_pull", "config_error", "node_failure"),
    "KubeDaemonSetNotScheduled": ("scheduling", "node_failure"),
    "KubeDaemonSetMisScheduled": ("scheduling", "node_failure"),
    "KubeJobNotCompleted": ("dependency_unreachable", "image_pull", "memory_limit", "quota_exceeded", "scheduling"),
    "KubeJobFailed": ("dependency_unreachable", "memory_limit", "config_error", "image_pull", "quota_exceeded",
                      "certificate_expired"),
    "KubeHpaReplicasMismatch": ("capacity", "scheduling", "quota_exceeded"),
    "KubeHpaMaxedOut": ("capacity", "cpu_limit"),
    "KubePdbNotEnoughHealthyPods": (*WORKLOAD_CAUSES, "scheduling"),
    # kubernetes-resources
    "KubeCPUOvercommit": ("capacity", "scheduling"),
    "KubeMemoryOvercommit": ("capacity", "scheduling"),
    "KubeCPUQuotaOvercommit": ("quota_exceeded", "capacity"),
    "KubeMemoryQuotaOvercommit": ("quota_exceeded", "capacity"),
    "KubeQuotaAlmostFull": ("quota_exceeded",),
    "KubeQuotaFullyUsed": ("quota_exceeded",),
    "KubeQuotaExceeded": ("quota_exceeded",),
    "CPUThrottlingHigh": ("cpu_limit", "capacity", "not_an_issue"),
    # kubernetes-storage
    "KubePersistentVolumeFillingUp": ("storage",),
    "KubePersistentVolumeInodesFillingUp": ("storage",),
    "KubePersistentVolumeErrors": ("storage",),
    # kubernetes-system-apiserver: aggregated APIs are workloads behind an APIService
    "KubeAggregatedAPIErrors": ("certificate_expired", "dependency_unreachable", *WORKLOAD_CAUSES[:5]),
    "KubeAggregatedAPIDown": ("certificate_expired", "dependency_unreachable", *WORKLOAD_CAUSES[:5]),
    # kubernetes-system-kubelet
    "KubeNodeNotReady": ("node_failure",),
    "KubeNodePressure": ("node_failure",),
    "KubeNodeUnreachable": ("node_failure",),
    "KubeNodeReadinessFlapping": ("node_failure",),
    "KubeNodeEviction": ("node_failure",),
    "KubeletTooManyPods": ("node_failure", "capacity"),
    "KubeletPlegDurationHigh": ("node_failure",),
    "KubeletPodStartUpLatencyHigh": ("node_failure", "image_pull"),
    "KubeletDown": ("node_failure",),
    "KubeletInstanceUnreachable": ("node_failure",),
    "KubeletClientCertificateExpiration": ("certificate_expired",),
    "KubeletServerCertificateExpiration": ("certificate_expired",),
    "KubeletClientCertificateRenewalErrors": ("certificate_expired",),
    "KubeletServerCertificateRenewalErrors": ("certificate_expired",),
}

# Heartbeats: never a thread; asked directly, the engine says there is nothing to fix.
HEARTBEATS = {"Watchdog": ("not_an_issue",), "InfoInhibitor": ("not_an_issue",)}

OUT_OF_SCOPE_GROUPS = ("kubernetes-system", "kube-apiserver-slos", "kubernetes-system-scheduler",
                       "kubernetes-system-controller-manager", "kubernetes-system-kube-proxy")
