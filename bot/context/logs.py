"""The log gatherer: the last lines of the pods in trouble, grouped into templates.

Which logs: the focus workloads' unhealthy pods first (at most MAX_PODS), each container that
restarted (its previous, crashed instance and its current one) or that is not ready, then one
healthy pod of the same workload for contrast, on another node when there is one (an empty
log is no contrast: the next healthy pod is read instead, at most CONTRAST_RETRIES times). Bounded: TAIL_LINES per stream, a byte limit
per read (see `KubeReader`), KEEP_LINES kept per stream after mining. Lines are redacted before
they are kept, so a secret printed by an application never reaches the timeline, Slack or
the model.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from bot.context.focus import pod_unhealthy
from bot.context.kube_read import KubeReader
from bot.context.log_templates import mine
from bot.context.model import ContainerView, LogView, PodView
from bot.redaction import redact

MAX_PODS = 4
CONTRAST_RETRIES = 2  # more healthy pods tried when a contrast pod's log is empty
TAIL_LINES = 300
KEEP_LINES = 60


def _streams(pod: PodView, healthy_contrast: bool) -> list[tuple[ContainerView, bool]]:
    """(container, previous) pairs: a crashed container's previous and current instance, any
    other container's current one; a healthy contrast pod's current logs only."""
    wanted: list[tuple[ContainerView, bool]] = []
    for container in pod.containers:
        if container.init and container.state == "terminated" and container.reason == "Completed":
            continue
        if not healthy_contrast and (container.restarts > 0 or container.last_reason is not None):
            wanted.append((container, True))
        wanted.append((container, False))
    return wanted


def choose_pods(pods: list[PodView], since: datetime) -> list[tuple[PodView, bool]]:
    """(pod, is_healthy_contrast) pairs: unhealthy pods first, then one healthy pod per workload
    for contrast; when nothing is unhealthy, a couple of the running pods."""
    unhealthy = [p for p in pods if pod_unhealthy(p, since)]
    unhealthy.sort(key=lambda p: (p.phase == "Pending", -max((c.restarts for c in p.containers), default=0)))
    if not unhealthy:  # nothing failing (an error-rate or disk alert): the running pods may say why
        return [(p, False) for p in pods if p.phase == "Running"][:MAX_PODS]
    chosen: list[tuple[PodView, bool]] = [(p, False) for p in unhealthy[:MAX_PODS]]
    workloads = {p.workload for p, _ in chosen}
    for pod in contrast_candidates(pods, [p for p, _ in chosen], since):
        if pod.workload in workloads:
            chosen.append((pod, True))
            workloads.discard(pod.workload)
    return chosen


def contrast_candidates(pods: list[PodView], troubled: list[PodView], since: datetime) -> list[PodView]:
    """Healthy running pods of the troubled pods' workloads, those on other nodes first: a
    contrast on the same node cannot tell the node's trouble from the workload's."""
    workloads = {p.workload for p in troubled}
    nodes = {p.node for p in troubled}
    healthy = [p for p in pods if p.workload in workloads and p.phase == "Running" and not pod_unhealthy(p, since)
               and p not in troubled]
    return sorted(healthy, key=lambda p: p.node in nodes)  # stable: the listing's order otherwise


def gather_logs(reader: KubeReader, pods: list[PodView], since: datetime, now: datetime) -> list[LogView]:
    """The chosen pods' logs; a healthy contrast pod whose log is empty tells nothing, so the
    next candidate of its workload is read instead (at most CONTRAST_RETRIES more)."""
    chosen = choose_pods(pods, since)
    jobs = [(pod, container, previous) for pod, contrast in chosen
            if not (pod.phase == "Pending" and all(c.state != "terminated" and c.restarts == 0
                                                   for c in pod.containers))  # never started: nothing to read
            for container, previous in _streams(pod, contrast)]

    def read(job):
        pod, container, previous = job
        text = reader.pod_log(pod.ref.namespace or "", pod.ref.name, container.name, previous, TAIL_LINES)
        return job, text

    by_container: dict[tuple, list[tuple[list[str], bool]]] = {}
    views: list[LogView] = []
    contrasts = {pod.ref for pod, contrast in chosen if contrast}
    spare = {pod.workload: [p for p in contrast_candidates(pods, [p for p, c in chosen if not c], since)
                            if p.workload == pod.workload and p.ref not in contrasts][:CONTRAST_RETRIES]
             for pod, contrast in chosen if contrast}
    with ThreadPoolExecutor(6, thread_name_prefix="opsbot-logs") as pool:
        while jobs:
            empty_contrasts = []
            for (pod, container, previous), text in pool.map(read, jobs):
                if pod.ref in contrasts and not (text or "").strip():
                    empty_contrasts.append(pod)
                if text is None:
                    continue
                lines = redact(text).splitlines()  # whole: a key block spans lines
                by_container.setdefault((pod.ref, container.name), []).append((lines, previous))
                views.append(LogView(pod=pod.ref, container=container.name, previous=previous,
                                     lines=lines[-KEEP_LINES:], templates=[], truncated=len(lines) > KEEP_LINES))
            jobs = []
            for pod in {p.ref: p for p in empty_contrasts}.values():
                if spare.get(pod.workload):
                    nxt = spare[pod.workload].pop(0)
                    contrasts.add(nxt.ref)
                    jobs += [(nxt, container, previous) for container, previous in _streams(nxt, True)]
    for view in views:
        streams = by_container.get((view.pod, view.container), [])
        if streams and not any(v.templates for v in views if (v.pod, v.container) == (view.pod, view.container)):
            view.templates = mine(streams, since, now, year=now.year)
    return views
