"""Who may do what touches no cluster: merge incidents, flip the kill switch, run an incident's
life (acknowledge, resolve, reopen, change its severity, take command, post updates, follow-ups).

Both answer from the combined policy and the clicking user's groups (static lists, Slack user
groups or PagerDuty's on-call, see `bot.remediation.kit.GroupResolver`; a failed lookup is no
membership, so an outage of Slack or PagerDuty refuses rather than allows). Each returns why
not, or None when allowed. Lists of managers from several policy files add up.
"""

from __future__ import annotations

from bot.policy.model import Policy


def _groups_text(groups: list[str]) -> str:
    return ", ".join(groups) or "(none configured)"


def channel_refusal(policy: Policy, channel: str | None) -> str | None:
    """Every button (Approve, Reject, Merge, Acknowledge, Roll back, Accept): where the policy
    lists `channels`, a click from another channel, or from none (a payload without one), is
    refused; an empty list allows any."""
    if policy.channels and channel not in policy.channels:
        return f"buttons do not act in channel {channel}" if channel else \
            "the click came from no channel, and buttons act only in the listed channels"
    return None


def freeze_refusal(policy: Policy, groups: frozenset[str]) -> str | None:
    """`/ops freeze` and `/ops unfreeze`: the freeze managers only (none configured: nobody)."""
    if set(policy.freeze_managers) & groups:
        return None
    return f"only the freeze managers ({_groups_text(policy.freeze_managers)}) may freeze or unfreeze changes"


def _actor_refusal(policy: Policy, user: str, groups: frozenset[str]) -> str | None:
    actors = policy.actors
    if (actors.users or actors.groups) and user not in actors.users and not set(actors.groups) & groups:
        return f"<@{user}> may not act on incidents"
    return None


def merge_refusal(policy: Policy, user: str, groups: frozenset[str], channel: str | None) -> str | None:
    """The Merge button: the policy's channels and actors apply as to any button; when
    `merge_managers` is set, only those groups may merge."""
    refusal = channel_refusal(policy, channel) or _actor_refusal(policy, user, groups)
    if refusal:
        return refusal
    if policy.merge_managers is not None and not set(policy.merge_managers) & groups:
        return f"only the merge managers ({_groups_text(policy.merge_managers)}) may merge incidents"
    return None


# Controls that change what the incident *is* (its state, its grade, its existence): when
# `incident_managers` is set, only those groups. The others (acknowledge, take command, status
# updates, follow-ups) are open to anyone the channels and actors allow.
MANAGED_CONTROLS = {"resolve": "resolve", "reopen": "reopen", "severity": "change the severity of",
                    "declare": "declare"}


def control_refusal(policy: Policy, control: str, user: str, groups: frozenset[str], channel: str | None,
                    *, button: bool) -> str | None:
    """An incident control (`bot.incidents.controls`), from a button or modal in the channel
    (`button`: the policy's `channels` apply) or from `/ops` anywhere (channels do not: the
    command names its incident). Actors apply to both; managed controls need a manager."""
    refusal = (channel_refusal(policy, channel) if button else None) or _actor_refusal(policy, user, groups)
    if refusal:
        return refusal
    verb = MANAGED_CONTROLS.get(control)
    if verb and policy.incident_managers is not None and not set(policy.incident_managers) & groups:
        return f"only the incident managers ({_groups_text(policy.incident_managers)}) may {verb} incidents"
    return None
