"""A failed Job that its CronJob has made good since: the failure is history, not an outage. Pure.

KubeJobFailed keeps firing as long as the failed Job object exists (`failedJobsHistoryLimit`
keeps it), long after later runs of the same CronJob succeeded. Judged as Kubernetes records
it: the Job's Failed condition (or its last pod's end) against the CronJob's
`status.lastSuccessfulTime` and the Jobs it created afterwards that succeeded.
"""

from __future__ import annotations

from datetime import datetime

from bot.context.kube_facts import controller_of, parse_time
from bot.context.model import Context, ObjectRef
from bot.diagnosis import evidence as ev
from bot.diagnosis.model import Evidence


def _failed_at(raw: dict) -> datetime | None:
    status = raw.get("status") or {}
    failed = next((c for c in status.get("conditions") or [] if c.get("type") == "Failed" and c.get("status") == "True"),
                  None)
    return parse_time((failed or {}).get("lastTransitionTime")) or parse_time(status.get("completionTime")) \
        or parse_time(status.get("startTime"))


def later_success(ctx: Context, job: ObjectRef) -> Evidence | None:
    """Evidence that the CronJob owning the failed `job` succeeded after it failed, else None."""
    view = ctx.workload(job)
    if job.kind != "Job" or view is None or not (view.updated or 0):
        return None
    owner = controller_of(view.raw)
    cron = ctx.workload(owner) if owner is not None and owner.kind == "CronJob" else None
    failed_at = _failed_at(view.raw)
    if cron is None or failed_at is None:
        return None
    last = parse_time((cron.raw.get("status") or {}).get("lastSuccessfulTime"))
    later = [w for w in ctx.workloads if w.ref.kind == "Job" and w.ref != job and controller_of(w.raw) == owner
             and (w.ready or 0) >= 1 and (parse_time((w.raw.get("status") or {}).get("completionTime")) or failed_at)
             > failed_at]
    if (last is None or last <= failed_at) and not later:
        return None
    when = ev.ago(last, ctx.now) if last and last > failed_at else "since"
    return Evidence(f"{job.name} failed {ev.ago(failed_at, ctx.now)}, and {owner} has succeeded since (last success "
                    f"{when}; {len(later)} later run(s) succeeded): the failure is history", "kubernetes",
                    f"{owner} status.lastSuccessfulTime; Jobs of {owner}")
