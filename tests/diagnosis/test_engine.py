"""The analyzers on small, hand-built evidence, and the ranking that combines them."""

from __future__ import annotations

from datetime import timedelta

from bot.context.model import ChangePoint, DependencyView, Gap, ObjectRef, ServiceView, Signal
from bot.diagnosis.engine import diagnose, is_inconclusive, rank
from bot.diagnosis.model import Hypothesis
from tests.diagnosis.builders import NOW, alert, container, context, deployment, event, pod

WEB = ObjectRef("Deployment", "shop", "web")


def h(category, name="web", confidence=0.8, explicit=False):
    return Hypothesis(category, ObjectRef("Deployment", "shop", name), confidence, "s", explicit=explicit)


def test_ranking_keeps_the_best_of_duplicates_and_prefers_explicit_causes():
    ranked = rank([h("bad_deploy", confidence=0.6), h("bad_deploy", confidence=0.7), h("memory_limit", explicit=True,
                                                                                       confidence=0.7)])
    assert [(x.category, x.confidence) for x in ranked] == [("memory_limit", 0.7), ("bad_deploy", 0.7)]


def test_inconclusive_when_weak_or_when_a_rival_cause_ties():
    assert is_inconclusive([])
    assert is_inconclusive([h("capacity", confidence=0.4)])
    assert is_inconclusive([h("capacity", confidence=0.8), h("cpu_limit", confidence=0.78)])
    assert not is_inconclusive([h("capacity", confidence=0.8), h("capacity", "hpa", confidence=0.79)])
    assert not is_inconclusive([h("capacity", confidence=0.9), h("cpu_limit", confidence=0.6)])


def test_oomkilled_containers_are_a_memory_limit_with_the_limit_as_written():
    oom = container(ready=False, restarts=6, waiting="CrashLoopBackOff", last="OOMKilled", last_exit=137,
                    memory_limit="384Mi")
    ctx = context(alerts=[alert(pod="web-7d9f-a")], pods=[pod("web-7d9f-a", containers=[oom], ready=False)],
                  workloads=[deployment(available=1)], focus=[WEB])
    top = diagnose(ctx).top
    assert top.category == "memory_limit" and top.resource == WEB
    assert "OOMKilled" in top.summary and "384Mi" in top.summary and top.explicit


def test_a_failed_scheduling_that_was_followed_by_scheduling_is_over():
    ctx = context(alerts=[alert("KubePodNotReady", pod="web-7d9f-a")],
                  pods=[pod("web-7d9f-a", containers=[container(ready=False, waiting="CreateContainerConfigError",
                                                                message='configmap "web-config" not found')],
                            ready=False)],
                  workloads=[deployment(available=1)], focus=[WEB],
                  events=[event("FailedScheduling", "0/3 nodes are available: 3 Insufficient memory.", last=9),
                          event("Scheduled", "Successfully assigned shop/web-7d9f-a to worker-1", type_="Normal",
                                last=8)])
    diagnosis = diagnose(ctx)
    assert diagnosis.top.category == "config_error" and diagnosis.top.resource == WEB
    assert "scheduling" not in [x.category for x in diagnosis.hypotheses]


def _dependency_context(ready_endpoints: int):
    crashing = container(ready=False, restarts=4, waiting="CrashLoopBackOff", last="Error", last_exit=1)
    ctx = context(alerts=[alert(pod="web-7d9f-a")], pods=[pod("web-7d9f-a", containers=[crashing], ready=False)],
                  workloads=[deployment(available=0), deployment("cache", replicas=0, available=0)], focus=[WEB])
    from bot.context.model import LogView

    line = "2026-10-01T11:59:00Z ERROR redis: dial tcp 10.96.4.4:6379: connect: connection refused"
    ctx.logs = [LogView(ObjectRef("Pod", "shop", "web-7d9f-a"), "app", True, [line], [], False)]
    cache = ObjectRef("Service", "shop", "cache")
    ctx.services = [ServiceView(cache, {"app": "cache"}, [6379], ready_endpoints, 0, cluster_ip="10.96.4.4")]
    ctx.dependencies = [DependencyView("10.96.4.4", 6379, 1, line, [ObjectRef("Pod", "shop", "web-7d9f-a")], cache,
                                       ready_endpoints, [ObjectRef("Deployment", "shop", "cache")])]
    return ctx


def test_a_dependency_still_down_is_what_to_fix_and_a_recovered_one_is_not():
    down = diagnose(_dependency_context(ready_endpoints=0))
    assert down.top.category == "dependency_unreachable"
    assert down.top.resource == ObjectRef("Deployment", "shop", "cache")
    assert down.hypotheses[1].resource == WEB
    back = diagnose(_dependency_context(ready_endpoints=2))
    assert back.top.category == "dependency_unreachable" and back.top.resource == WEB


def test_a_recovered_system_is_not_an_issue_but_a_failing_pod_is_never_called_healthy():
    healthy = context(alerts=[alert("KubePodNotReady", status="resolved", pod="web-7d9f-a", ended_minutes_ago=4)],
                      pods=[pod("web-7d9f-a")], workloads=[deployment()], focus=[WEB],
                      events=[event("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503",
                                    count=30, last=6)])
    top = diagnose(healthy).top
    assert top.category == "not_an_issue" and top.resource is None
    failing = context(alerts=[alert("KubePodNotReady", pod="web-7d9f-a")],
                      pods=[pod("web-7d9f-a", ready=False, containers=[container(ready=False)])],
                      workloads=[deployment(available=1)], focus=[WEB])
    assert "not_an_issue" not in [x.category for x in diagnose(failing).hypotheses]


def test_ready_pods_with_a_bad_golden_signal_are_never_called_healthy():
    """A release that returns 5xx, or a saturated pool that answers slowly, keeps every pod
    Ready: a bad signal is never "nothing is broken" (issue 13, class 5)."""
    def healthy_pods_with(*signals: Signal):
        ctx = context(alerts=[alert("ApiErrorBudgetBurn", status="resolved", ended_minutes_ago=4)],
                      pods=[pod("web-7d9f-a")], workloads=[deployment()], focus=[WEB])
        ctx.signals = list(signals)
        return [x.category for x in diagnose(ctx).hypotheses]

    def series(key: str, values: list[float], change: ChangePoint | None = None) -> Signal:
        points = [(NOW - timedelta(minutes=len(values) - i), v) for i, v in enumerate(values)]
        return Signal(key, key.replace("_", " "), f"{key}{{}}", "ratio", points, change=change)

    assert "not_an_issue" in healthy_pods_with(series("error_ratio", [0.001, 0.002, 0.001]))
    assert "not_an_issue" not in healthy_pods_with(series("error_ratio", [0.001, 0.2, 0.31]))
    slow = ChangePoint(NOW - timedelta(minutes=2), 0.12, 0.9)
    assert "not_an_issue" not in healthy_pods_with(series("latency_p95", [0.12, 0.11, 0.9, 0.85], slow))
    recovered = ChangePoint(NOW - timedelta(minutes=3), 0.12, 0.9)
    assert "not_an_issue" in healthy_pods_with(series("latency_p95", [0.12, 0.9, 0.9, 0.13], recovered))


def test_an_analyzer_that_breaks_is_a_gap_and_the_others_still_run():
    class Broken:
        __name__ = "broken"

        @staticmethod
        def analyze(ctx, findings):
            raise KeyError("bug")

    from bot.diagnosis.analyzers import memory

    oom = container(ready=False, restarts=2, waiting="CrashLoopBackOff", last="OOMKilled", last_exit=137)
    ctx = context(alerts=[alert(pod="web-7d9f-a")], pods=[pod("web-7d9f-a", containers=[oom], ready=False)],
                  workloads=[deployment(available=1)], focus=[WEB])
    diagnosis = diagnose(ctx, analyzers=(Broken(), memory))
    assert diagnosis.top.category == "memory_limit"
    assert Gap("the broken analysis", "it failed (KeyError)") in diagnosis.gaps


def test_a_command_that_cannot_be_executed_is_a_config_error():
    start_error = container(ready=False, restarts=3, waiting="CrashLoopBackOff", last="StartError", last_exit=128)
    start_error[1]["lastState"]["terminated"]["message"] = (
        'failed to create containerd task: exec: "/app/server": stat /app/server: no such file or directory: unknown')
    ctx = context(alerts=[alert(pod="web-7d9f-a")], pods=[pod("web-7d9f-a", containers=[start_error], ready=False)],
                  workloads=[deployment(available=1)], focus=[WEB])
    top = diagnose(ctx).top
    assert top.category == "config_error" and top.resource == WEB and top.explicit


def test_a_runtime_that_says_it_ran_out_of_memory_is_a_memory_limit():
    from bot.context.model import LogView

    crashed = container(ready=False, restarts=5, waiting="CrashLoopBackOff", last="Error", last_exit=1)
    ctx = context(alerts=[alert(pod="web-7d9f-a")], pods=[pod("web-7d9f-a", containers=[crashed], ready=False)],
                  workloads=[deployment(available=1)], focus=[WEB])
    ctx.logs = [LogView(ObjectRef("Pod", "shop", "web-7d9f-a"), "app", True,
                        ['Exception in thread "main" java.lang.OutOfMemoryError: Java heap space'], [], False)]
    top = diagnose(ctx).top
    assert top.category == "memory_limit" and "Java heap space" in top.summary
