"""What a newcomer should hear when `opsbot serve` starts: configuration that runs, but not as
they probably expect.

Invariants:
- `startup_warnings` is pure: it reads the settings, the loaded policy and the cluster directory
  and returns one line per finding; it performs no I/O and never raises for a finding (the
  caller logs each line with `log.warning`).
- It warns, it never refuses: every situation named here is a valid local trial setup
  (the defaults produce all three warnings), so start-up goes on.
- The lines name the setting that changes the behaviour, so the fix is in the message.
"""

from __future__ import annotations

from bot.config import Settings
from bot.context.clusters import ClusterAccess, ClusterDirectory
from bot.policy.model import ApproverGroup, Policy

# The settings a reader changes to remove each warning, named in the lines themselves.
CLUSTER_SETTINGS = "OPSBOT_KUBE_MODE / OPSBOT_KUBE_API_URL, or OPSBOT_PROMETHEUS_URL"
APPROVER_FIELDS = "users, slack_usergroup, pagerduty_schedules or pagerduty_escalation_policies"
SLACK_TOKEN_SETTING = "OPSBOT_SLACK_BOT_TOKEN"


def names_nobody(group: ApproverGroup) -> bool:
    """True when a group can never have a member: no (non-blank) user, Slack user group, or
    PagerDuty schedule or escalation policy."""
    return not (any(user.strip() for user in group.users) or (group.slack_usergroup or "").strip()
                or group.uses_pagerduty)


def approver_group_warnings(policy: Policy) -> list[str]:
    return [f"approver group {name!r} names nobody ({APPROVER_FIELDS} are all empty): nobody can approve "
            f"steps that need {name}"
            for name, group in sorted(policy.approver_groups.items()) if names_nobody(group)]


def _blind(access: ClusterAccess | None) -> bool:
    return access is None or (access.api_client is None and not access.prometheus_url)


def cluster_warnings(clusters: ClusterDirectory) -> list[str]:
    """One line when the single cluster has neither Kubernetes nor Prometheus; with several
    clusters, one line per cluster that has neither."""
    if not clusters.names:
        if _blind(clusters.resolve(None)):
            return ["no Kubernetes cluster and no Prometheus configured: investigations will be skipped "
                    f"(set {CLUSTER_SETTINGS})"]
        return []
    return [f"cluster {name!r} has neither Kubernetes nor Prometheus configured: its incidents will not be "
            "investigated" for name in clusters.names if _blind(clusters.resolve(name))]


def slack_warnings(settings: Settings) -> list[str]:
    if settings.slack_bot_token:
        return []
    if settings.slack_api_url:
        return [f"no Slack token: talking to the Slack emulator at {settings.slack_api_url}, not to Slack "
                f"(set {SLACK_TOKEN_SETTING} for a real workspace)"]
    return ["emulator mode: no Slack token, so incidents go to the embedded Slack emulator and no one in Slack "
            f"sees them (set {SLACK_TOKEN_SETTING} for a real workspace)"]


def startup_warnings(settings: Settings, policy: Policy, clusters: ClusterDirectory) -> list[str]:
    """Every warning, in a stable order: approvers, clusters, Slack."""
    return approver_group_warnings(policy) + cluster_warnings(clusters) + slack_warnings(settings)
