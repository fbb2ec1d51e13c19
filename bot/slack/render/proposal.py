"""A proposed step in the incident thread: a pure function from a proposal to Block Kit.

It says what the step will do and to what, with which parameters (secret ones already masked),
what the server-side dry run answered, the policy's decision with every gate, the approvals so
far, and the state (proposed → approved → running → verifying → succeeded / failed / rolled
back / rejected / expired / denied; or unverified → accepted / rolled back). Approve / Reject
buttons appear only while the step waits for approval and the policy did not deny it; Roll back /
Accept only while an applied step could not be verified. Their values are signed, expiring
references to the stored proposal, never the command. A note (e.g. what the bot found after a
restart interrupted the step) is shown with the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.slack.render.text import truncate, untrusted

APPROVE_ACTION_ID = "step_approve"
REJECT_ACTION_ID = "step_reject"
VERIFY_ROLLBACK_ACTION_ID = "step_verify_rollback"
VERIFY_ACCEPT_ACTION_ID = "step_verify_accept"
WHY_ACTION_ID = "step_why"  # `/ops explain P-N` for the clicker alone; changes nothing
STATES = {
    "described": (":bulb:", "suggested (not runnable from here: the policy's autonomy for it is suggest)"),
    "proposed": (":hourglass_flowing_sand:", "waiting for approval"),
    "approved": (":white_check_mark:", "approved, starting"),
    "running": (":gear:", "running"),
    "verifying": (":mag:", "applied, verifying"),
    "succeeded": (":large_green_circle:", "succeeded and verified"),
    "failed": (":red_circle:", "failed"),
    "rolled_back": (":leftwards_arrow_with_hook:", "verification failed, rolled back"),
    "rollback_failed": (":rotating_light:", "verification failed and the rollback failed"),
    "unverified": (":warning:", "applied, could not be verified: roll back or accept"),
    "accepted": (":ballot_box_with_check:", "applied, accepted without verification"),
    "unverified_expired": (":hourglass:", "applied, could not be verified, nobody decided in time"),
    "rollback_requested": (":leftwards_arrow_with_hook:", "applied, unverified, rolling back"),
    "rolling_back": (":leftwards_arrow_with_hook:", "applied, unverified, rolling back"),
    "rejected": (":no_entry_sign:", "rejected"),
    "expired": (":hourglass:", "expired without approval"),
    "denied": (":no_entry:", "denied by policy"),
}
UNVERIFIED_FOLLOW_UP = {  # status -> what the thread says about an unverified step
    "unverified": "Nothing was rolled back: someone decides, Roll back or Accept it as it is.",
    "accepted": "Nothing was rolled back: <@{accepted_by}> accepted it as it is.",
    "unverified_expired": "Nothing was rolled back.",
    "rollback_requested": "<@{requested_by}> asked for it to be rolled back.",
    "rolling_back": "<@{requested_by}> asked for it to be rolled back.",
    "rolled_back": "Rolled back at <@{requested_by}>'s request.",
    "rollback_failed": "<@{requested_by}> asked for it to be rolled back; the rollback failed.",
}
GATE_MARK = {"pass": "✓", "deny": "✗", "needs_approval": "…"}


@dataclass(frozen=True)
class ProposalView:
    reference: str  # INC-12
    title: str
    runbook: str
    step: str
    risk: str
    status: str
    params: dict[str, Any]
    plan: dict[str, Any]
    decision: dict[str, Any]
    approvals: list[str]
    result: dict[str, Any] = field(default_factory=dict)
    approve_value: str | None = None
    reject_value: str | None = None
    rollback_value: str | None = None
    accept_value: str | None = None
    rejected_by: str | None = None
    reject_reason: str | None = None
    proposal_id: int | None = None  # the Why? button explains P-<id>


def _diff(plan: dict[str, Any]) -> str:
    lines = [f"• `{untrusted(str(path), 120)}`: {untrusted(str(before), 160)} → {untrusted(str(after), 160)}"
             for path, before, after in plan.get("diff") or []][:8]
    return "\n".join(lines) or "• (no change computed)"


def _gates(decision: dict[str, Any]) -> str:
    return "  ".join(f"{GATE_MARK.get(g['outcome'], '?')} {g['gate'].replace('_', ' ')}"
                     for g in decision.get("gates") or [])


def _outcome(view: ProposalView) -> str | None:
    result = view.result or {}
    parts = []
    if view.status == "rejected":
        parts.append(f"Rejected by <@{view.rejected_by}>" + (f": {untrusted(view.reject_reason, 300)}"
                                                             if view.reject_reason else ""))
    if result.get("denied"):
        parts.append(f"Stopped before running: {untrusted(result['denied'], 300)}")
    if result.get("note"):
        parts.append(f":information_source: {untrusted(str(result['note']), 600)}")
    if "after" in result or "before" in result:
        parts.append(f"Check `{untrusted(str(result.get('query', '')), 300)}` {result.get('expect', '')}: "
                     f"before {_num(result.get('before'))}, now {_num(result.get('after'))}")
    if result.get("error"):
        parts.append(untrusted(str(result["error"]), 400))
    if result.get("unverified"):
        parts.append(f"Could not verify: {untrusted(str(result['unverified']), 300)}. "
                     + UNVERIFIED_FOLLOW_UP.get(view.status, "").format(
                         accepted_by=untrusted(str(result.get("accepted_by")), 40),
                         requested_by=untrusted(str(result.get("rollback_requested_by")), 40)))
    for problem in (result.get("problems") or [])[:3]:
        parts.append(untrusted(str(problem), 300))
    return "\n".join(parts) or None


def _num(value: Any) -> str:
    return "no data" if value is None else f"{float(value):.4g}"


def render_proposal(view: ProposalView) -> dict[str, Any]:
    emoji, state = STATES.get(view.status, (":grey_question:", view.status))
    if view.status in ("rolled_back", "rollback_failed") and (view.result or {}).get("rollback_requested_by"):
        state = "could not be verified, rolled back on request" if view.status == "rolled_back" else \
            "could not be verified, and the requested rollback failed"
    decision = view.decision or {}
    head = (f"{emoji} *{untrusted(view.title, 300)}* — {state}\n"
            f"Runbook `{view.runbook}` step `{view.step}` for {view.reference} · risk {view.risk}")
    params = ", ".join(f"`{untrusted(str(k), 60)}={untrusted(str(v), 120)}`" for k, v in view.params.items())
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(head, 2900)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(
            f"*What it does:* {untrusted(str(view.plan.get('summary', '')), 600)}\n*Parameters:* {params or '—'}\n"
            f"*Dry run:* {untrusted(str(view.plan.get('dry_run', 'not run')), 400)}\n{_diff(view.plan)}", 2900)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(
            f"Policy: *{decision.get('decision', '?')}* ({untrusted(str(decision.get('rule', '')), 80)}): "
            f"{untrusted(str(decision.get('reason', '')), 300)} · {_gates(decision)}", 2900)}]},
    ]
    needed = decision.get("approvals_needed") or 0
    if needed or view.approvals:
        who = ", ".join(f"<@{u}>" for u in view.approvals) or "none yet"
        groups = ", ".join(decision.get("approver_groups") or [])
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(
            f"Approvals: {len(view.approvals)} of {needed} ({who})" + (f" · approvers: {groups}" if groups else ""),
            2900)}]})
    outcome = _outcome(view)
    if outcome:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": truncate(outcome, 2900)}})
    if view.status == "proposed" and view.approve_value and view.reject_value:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "action_id": APPROVE_ACTION_ID, "style": "primary", "value": view.approve_value,
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": REJECT_ACTION_ID, "style": "danger", "value": view.reject_value,
             "text": {"type": "plain_text", "text": "Reject"}},
            *([{"type": "button", "action_id": WHY_ACTION_ID, "value": str(view.proposal_id),
                "text": {"type": "plain_text", "text": "Why?"}}] if view.proposal_id else []),
        ]})
    if view.status == "unverified" and (view.rollback_value or view.accept_value):
        elements = [{"type": "button", "action_id": VERIFY_ROLLBACK_ACTION_ID, "style": "danger",
                     "value": view.rollback_value, "text": {"type": "plain_text", "text": "Roll back"}}
                    ] if view.rollback_value else []
        if view.accept_value:
            elements.append({"type": "button", "action_id": VERIFY_ACCEPT_ACTION_ID, "style": "primary",
                             "value": view.accept_value, "text": {"type": "plain_text", "text": "Accept"}})
        blocks.append({"type": "actions", "elements": elements})
    text = f"{view.reference} step {view.title}: {state}"
    return {"text": truncate(text, 3000), "blocks": blocks}
