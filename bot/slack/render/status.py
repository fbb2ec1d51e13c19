"""`/ops status` and `/ops help`: pure renderers."""

from __future__ import annotations

from typing import Any

from bot.slack.render.card import SEVERITY_ICON, STATUS_LABEL, IncidentCardView
from bot.slack.render.text import untrusted

HELP_TEXT = (
    "*opsbot* — incident threads for Kubernetes on-call.\n"
    "• `/ops status` — open incidents and this week's numbers\n"
    "• `/ops declare <title> [severity]` — open an incident by hand (a form without a title)\n"
    "• `/ops ack|resolve|reopen|catchup INC-12` — act on an incident (`resolve` takes a note)\n"
    "• `/ops severity INC-12 critical|high|warning|info`, `/ops commander INC-12 [@person]`\n"
    "• `/ops update INC-12 <text>` — a status update (thread and status channel)\n"
    "• `/ops followup INC-12 <text> [@owner]`, `/ops followup done F-3` — action items\n"
    "• `/ops explain INC-12|P-17|RUNBOOK|ALERT|deploy/NS/NAME` — an incident, a step's decision, a runbook, "
    "an alert rule, a workload\n"
    "• `@opsbot why? / what changed? / what did you check? / show the logs / graph / who can approve?` "
    "in an incident's thread — answered from its evidence\n"
    "• `/ops risk deploy/NAMESPACE/NAME` — go / wait / no-go for a deploy now, with the reasons\n"
    "• `/ops digest drift|credentials|cost|database` — post that digest in this channel now\n"
    "• `/ops run INC-12 RUNBOOK [param=value …]` — propose a runbook step for an incident\n"
    "• `/ops freeze [namespace|all] [reason]` — stop every change there at once (kill switch)\n"
    "• `/ops unfreeze [namespace|all]` — lift it\n"
    "• `/ops help` — this message"
)
STATUS_LIMIT = 20


def render_help() -> dict[str, Any]:
    return {"text": HELP_TEXT, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": HELP_TEXT}}]}


def render_unknown_subcommand(word: str) -> str:
    return f"Unknown subcommand `{untrusted(word, 40)}`. Try `/ops help`."


def render_status(incidents: list[IncidentCardView], total_open: int) -> dict[str, Any]:
    if not incidents:
        text = ":white_check_mark: No open incidents."
        return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
    lines = []
    for view in incidents[:STATUS_LIMIT]:
        icon = SEVERITY_ICON.get(view.severity, SEVERITY_ICON["unknown"])
        scope = "/".join(untrusted(part, 100) for part in (view.namespace, view.service) if part)
        lines.append(
            f"{icon} *{view.reference}* {untrusted(view.title, 150)}"
            + (f" — {scope}" if scope else "")
            + f" · {STATUS_LABEL.get(view.status, view.status)}, {view.firing_count}/{view.alert_count} firing"
        )
    more = total_open - len(lines)
    header = f"*{total_open} open incident{'s' if total_open != 1 else ''}*"
    text = "\n".join([header, *lines] + ([f"…and {more} more"] if more > 0 else []))
    return {"text": f"{total_open} open incidents", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}]}
