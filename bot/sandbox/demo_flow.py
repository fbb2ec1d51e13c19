"""`opsbot demo --auto-approve`: the rest of the incident, driven the way people and systems drive it.

After the RCA and its proposal are in the thread, `AutoApprove.run`:
1. clicks Approve on the first proposed step as a member of the team's on-call group: a signed
   Slack interaction to the bot's own `/slack/interactions`, the request Slack sends when a person
   clicks (`bot.sandbox.slack_clicks`); the bot's policy decides, as for anyone;
2. waits for the bot to run the step and verify it; verification is the bot's own PromQL against
   the real Prometheus, which scrapes the sandbox's live state (`bot.sandbox.kube.state_metrics`),
   so it passes only on what the cluster really shows after the step;
3. resolves the alert at its source: the alert is sent to the real Alertmanager again with an
   `endsAt`, as Prometheus does when the condition clears, and Alertmanager notifies the bot;
4. waits for the postmortem the bot posts into the thread, when this build has the stage that
   writes it (a resolution scheduled a `postmortems` row).

The flow acts only as people and Alertmanager act (a click, an alert) and watches the bot through
Slack, Prometheus and its database, read-only. Every wait is bounded and ends, when it times out,
in a `DemoError` whose one line names what did not happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from prometheus_api_client import PrometheusApiClientException
from sqlalchemy import select

from bot.db.engine import reading
from bot.db.models import Incident, Postmortem, Proposal, SlackMessage, TimelineEntry
from bot.remediation.execute import sample
from bot.runtime import REPO
from bot.sandbox import slack_clicks
from bot.sandbox.scenario import Scenario
from bot.sandbox.scenario_alerts import alerts_for_alertmanager

T = TypeVar("T")

APPROVER, APPROVER_NAME = "U0ALICE", "alice"  # seeded in the Slack emulator's workspace
ONCALL_USERGROUP, ONCALL_HANDLE = "S0ONCALL", "oncall"  # the emulator's @oncall: alice and bob
PROPOSAL_WAIT_SECONDS = 60
ANSWER_WAIT_SECONDS = 30
VERIFY_WAIT_SECONDS = 90
RESOLVE_WAIT_SECONDS = 60
POSTMORTEM_WAIT_SECONDS = 90
SCHEDULED_WAIT_SECONDS = 5  # a resolution schedules its postmortem in the same transaction
SCRAPE_WAIT_SECONDS = 5  # Prometheus scrapes the sandbox every second
POLL_SECONDS = 0.2
FAILED = ("failed", "rolled_back", "rollback_failed", "rejected", "expired", "denied", "unverified",
          "unverified_expired", "accepted")
ROLLOUT_SERIES = (("pods", "kube_deployment_status_replicas"), ("available", "kube_deployment_status_replicas_available"),
                  ("unavailable", "kube_deployment_status_replicas_unavailable"),
                  ("updated", "kube_deployment_status_replicas_updated"))


class DemoError(RuntimeError):
    """One line: what did not happen."""


def write_demo_policy(directory: Path) -> Path:
    """The shipped default policy with its on-call approver group filled in, as a team does
    before relying on the buttons: the emulator's @oncall Slack user group (alice, bob)."""
    policy = yaml.safe_load((REPO / "policies" / "default.yaml").read_text())
    policy["approver_groups"]["oncall"]["slack_usergroup"] = ONCALL_USERGROUP
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "default.yaml"
    path.write_text("# opsbot demo: the default policy, with @oncall as the approver group\n"
                    + yaml.safe_dump(policy, sort_keys=False))
    return path


def wait_until(check: Callable[[], T | None], timeout_seconds: float, what: str) -> T:
    """Poll `check` until it returns something other than None/False; DemoError naming `what`
    (said as what did not happen) after `timeout_seconds`."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise DemoError(f"{what} within {timeout_seconds:g} s")
        time.sleep(POLL_SECONDS)


def _number(value: Any) -> str:
    return "no data" if value is None else f"{float(value):g}"


@dataclass
class AutoApprove:
    """The parts of a running replay the flow drives and watches."""

    scenario: Scenario
    runtime: Any  # bot.runtime.Runtime of the bot under demo
    bot_url: str
    slack: Any  # bot.sandbox.slack_emulator.SlackEmulator
    alertmanager: Any  # bot.sandbox.promstack.AlertmanagerProcess
    prometheus_url: str
    step: Callable[[str], None]

    def run(self, root: dict[str, Any]) -> None:
        incident = self._incident_of(root)
        name = f"INC-{incident}"
        proposal = self._first_proposal(incident, name)
        message = self._proposal_message(root, proposal, name)
        before = self._first_rollout(proposal)
        self._approve(proposal, message)
        self._wait_verified(proposal)
        after = self._rollout(proposal)
        if before and after:
            changes = ", ".join(f"{label} {_number(before.get(label))} → {_number(after.get(label))}"
                                for label, _series in ROLLOUT_SERIES)
            self.step(f"the live cluster as Prometheus scrapes it (kube-state-metrics of the sandbox): "
                      f"{proposal['name']} {changes}")
        self._resolve_at_source(incident, name)
        self._wait_postmortem(incident, name, root)

    # -- reading what the bot did (read-only) ---------------------------------------------------

    def _read(self, query: Callable[[Any], T]) -> T:
        with reading(self.runtime.factory) as session:
            return query(session)

    def _incident_of(self, root: dict[str, Any]) -> int:
        found = self._read(lambda s: s.execute(select(SlackMessage.incident_id).where(
            SlackMessage.purpose == "card", SlackMessage.channel == root["channel"],
            SlackMessage.ts == root["ts"])).scalar_one_or_none())
        if found is None:
            raise DemoError("the bot has no incident for the card in Slack")
        return found

    def _considered(self, incident: int) -> dict[str, Any] | None:
        return self._read(lambda s: s.execute(select(TimelineEntry.payload).where(
            TimelineEntry.incident_id == incident, TimelineEntry.kind == "remediation.considered")
            .order_by(TimelineEntry.seq.desc()).limit(1)).scalar_one_or_none())

    def _proposal(self, proposal_id: int) -> dict[str, Any]:
        def query(session) -> dict[str, Any]:
            row = session.get(Proposal, proposal_id)
            return {"id": row.id, "title": row.title, "runbook": row.runbook_id, "status": row.status,
                    "namespace": (row.params or {}).get("namespace"), "name": (row.params or {}).get("name"),
                    "result": dict(row.result or {})}
        return self._read(query)

    # -- 1. approve ------------------------------------------------------------------------------

    def _first_proposal(self, incident: int, name: str) -> dict[str, Any]:
        considered = wait_until(lambda: self._considered(incident), PROPOSAL_WAIT_SECONDS,
                                f"the bot did not finish considering runbooks for {name}")
        if not considered.get("proposed"):
            why = considered.get("why") or "; ".join(considered.get("not_proposed") or []) or \
                f"no runbook matches {considered.get('cause') or 'its cause'}"
            raise DemoError(f"the RCA of {name} proposed no step to approve ({why})")
        return self._proposal(int(considered["proposed"][0]["proposal"]))

    def _proposal_message(self, root: dict[str, Any], proposal: dict[str, Any], name: str) -> dict[str, Any]:
        """The proposal's message in the thread, once it shows its Approve button."""
        where = (root["channel"], root["ts"])

        def shown() -> dict[str, Any] | None:
            ts = self._read(lambda s: s.execute(select(SlackMessage.ts).where(
                SlackMessage.purpose == f"proposal:{proposal['id']}")).scalar_one_or_none())
            message = next((m for m in self.slack.thread(*where) if ts and m["ts"] == ts), None)
            try:
                return message if message and slack_clicks.find_button(message, "step_approve") else None
            except slack_clicks.NoSuchButton:
                return None

        status = self._proposal(proposal["id"])["status"]
        if status != "proposed":
            raise DemoError(f"P-{proposal['id']} ({proposal['runbook']}) cannot be approved: it is {status}")
        return wait_until(shown, PROPOSAL_WAIT_SECONDS,
                          f"no Approve button for P-{proposal['id']} appeared in the thread of {name}")

    def _approve(self, proposal: dict[str, Any], message: dict[str, Any]) -> None:
        self.step(f"approving P-{proposal['id']} as @{APPROVER_NAME} ({APPROVER}), a member of @{ONCALL_HANDLE}, "
                  f"the approver group of the demo's policy: {proposal['title']}")
        answered_before = len(self._answers())
        try:
            response = slack_clicks.click(self.bot_url, self.runtime.signing_secret, message, "step_approve",
                                          APPROVER, user_name=APPROVER_NAME)
        except OSError as exc:  # requests' errors are OSErrors
            raise DemoError(f"the Approve click did not reach the bot: {exc}") from None
        if response.status_code != 200:
            raise DemoError(f"the bot answered the Approve click with HTTP {response.status_code}")
        answer = wait_until(lambda: self._answers()[answered_before:], ANSWER_WAIT_SECONDS,
                            f"the bot did not answer @{APPROVER_NAME}'s Approve click")[0]
        self.step(f"Slack shows @{APPROVER_NAME}: {answer}")
        if answer.startswith(":no_entry:"):
            raise DemoError(f"the bot refused the approval of P-{proposal['id']}: {answer.removeprefix(':no_entry: ')}")

    def _answers(self) -> list[str]:
        return [e.get("text", "") for e in self.slack.ephemerals() if e.get("user") == APPROVER]

    # -- 2. verification -------------------------------------------------------------------------

    def _rollout(self, proposal: dict[str, Any]) -> dict[str, float | None]:
        """The target Deployment's rollout series in Prometheus now (empty for other targets)."""
        if not proposal.get("namespace") or not proposal.get("name"):
            return {}
        labels = f'namespace="{proposal["namespace"]}",deployment="{proposal["name"]}"'
        try:
            values = {label: sample(self.prometheus_url, f"max({series}{{{labels}}})")
                      for label, series in ROLLOUT_SERIES}
        except (OSError, PrometheusApiClientException):
            return {}  # shown only when read; the bot's verification reads Prometheus on its own
        return values if any(v is not None for v in values.values()) else {}

    def _first_rollout(self, proposal: dict[str, Any]) -> dict[str, float | None]:
        """The rollout series before the step, once Prometheus has scraped them ({} when the
        target is no Deployment or nothing was scraped within a few seconds)."""
        try:
            return wait_until(lambda: self._rollout(proposal), SCRAPE_WAIT_SECONDS, "")
        except DemoError:
            return {}

    def _wait_verified(self, proposal: dict[str, Any]) -> None:
        self.step(f"waiting for verification: the bot runs P-{proposal['id']}, then checks its PromQL "
                  "in Prometheus until it holds ...")
        pid = proposal["id"]

        def settled() -> dict[str, Any] | None:
            now = self._proposal(pid)
            return now if now["status"] == "succeeded" or now["status"] in FAILED else None

        try:
            done = wait_until(settled, VERIFY_WAIT_SECONDS, f"P-{pid} was not verified")
        except DemoError as exc:
            now = self._proposal(pid)
            result = now["result"]
            raise DemoError(f"{exc} (status {now['status']}; last sample {_number(result.get('after'))}, "
                            f"expected {result.get('expect', '?')})") from None
        result = done["result"]
        if done["status"] != "succeeded":
            detail = result.get("error") or result.get("unverified") or result.get("read_problem") or ""
            raise DemoError(f"P-{pid} ended {done['status']}, not verified"
                            + (f": {detail}" if detail else "")
                            + f" (last sample {_number(result.get('after'))}, expected {result.get('expect', '?')})")
        self.step(f"verified: {result.get('query')} = {_number(result.get('after'))} (expects "
                  f"{result.get('expect')}; {_number(result.get('before'))} when the step was applied, "
                  f"{result.get('real_samples', 0)} samples)")

    # -- 3. resolution at the source -------------------------------------------------------------

    def _resolve_at_source(self, incident: int, name: str) -> None:
        ends_at = self.runtime.clock()
        alerts = [{**alert, "endsAt": ends_at} for alert in alerts_for_alertmanager(self.scenario)]
        try:
            self.alertmanager.post_alerts(alerts)
        except (OSError, RuntimeError) as exc:
            raise DemoError(f"Alertmanager did not take the resolved alert: {exc}") from None
        names = ", ".join(sorted({a["labels"].get("alertname", "?") for a in alerts}))
        self.step(f"the condition cleared: {names} sent to Alertmanager again with endsAt "
                  f"{ends_at:%H:%M:%S} (scenario time); Alertmanager notifies opsbot that it resolved")
        wait_until(lambda: self._read(lambda s: s.get(Incident, incident).status == "resolved"),
                   RESOLVE_WAIT_SECONDS, f"{name} was not resolved by Alertmanager's resolved notification")
        wait_until(lambda: "Resolved" in str(self._card(incident).get("blocks")), RESOLVE_WAIT_SECONDS,
                   f"the card of {name} did not show it resolved")
        self.step(f"{name} resolved by its source; the card says so")

    def _card(self, incident: int) -> dict[str, Any]:
        where = self._read(lambda s: s.execute(select(SlackMessage.channel, SlackMessage.ts).where(
            SlackMessage.incident_id == incident, SlackMessage.purpose == "card")).first())
        return next((m for m in self.slack.messages(where[0]) if m["ts"] == where[1]), {}) if where else {}

    # -- 4. the postmortem -----------------------------------------------------------------------

    def _wait_postmortem(self, incident: int, name: str, root: dict[str, Any]) -> None:
        def scheduled() -> bool:
            return self._read(lambda s: s.get(Postmortem, incident) is not None)

        try:
            wait_until(scheduled, SCHEDULED_WAIT_SECONDS, "")
        except DemoError:
            self.step(f"no postmortem stage in this build (resolving {name} scheduled none): "
                      "the thread ends at the resolution")
            return
        self.step(f"waiting for the postmortem the bot writes into the thread of {name} ...")

        def posted() -> dict[str, Any] | None:
            return next((m for m in self.slack.thread(root["channel"], root["ts"])[1:]
                         if str(m.get("text", "")).startswith("Postmortem")), None)

        wait_until(posted, POSTMORTEM_WAIT_SECONDS,
                   f"{name} resolved and its postmortem was scheduled, but none appeared in the thread")
        self.step(f"postmortem of {name} posted in the thread")
