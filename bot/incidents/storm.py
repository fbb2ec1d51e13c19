"""Alert storms: many new alert groups in one cluster at once become one thread, not many cards.

When a node, a network or a shared dependency fails, dozens of services alert within a minute.
One card per alert group would bury the channel exactly when people need it. The rule:

- a cluster (the alerts' `cluster` label; alerts without one share the scope "no cluster") is
  *in a storm* when `Windows.storm_incidents` or more incidents opened in it within
  `Windows.storm` are still open (storm incidents themselves not counted);
- a new alert group arriving then does not open an incident of its own: it is folded into the
  cluster's storm incident (opened on the first fold, group key `STORM_KEY_PREFIX + cluster`).
  The group still gets an incident row, closed at once as `merged` into the storm incident and
  never carded, so that its later notifications follow the merge pointer to the same thread
  (see `lifecycle._follow_merges`) even after the storm's window has passed;
- the incidents opened before the threshold keep their own threads (they were not a storm yet);
- a storm incident is not root-caused as one problem (`is_storm`): its thread says so, and
  lists what fires; no single cause is guessed for many services at once.

Invariants: a fold happens only for a firing batch from an alert source (`FOLDED_SOURCES`) where
a new incident would open (a new group, or the successor of a closed one), never for a reopen or
a late resolve; everything is in the caller's transaction; two
replicas folding at once converge on one storm incident through the open-group-key unique
index (the loser of the insert uses the winner's).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.alerts.fingerprints import key_hash
from bot.alerts.model import AlertBatch
from bot.db.models import Incident
from bot.incidents.summary import alert_scope
from bot.timeline import chain

STORM_KEY_PREFIX = "opsbot-storm/"
ESCAPED_PREFIX = "sender:"  # before an outside group key that looks like a storm's (see `sender_key`)
# Alert sources whose new groups may be folded: a PagerDuty incident was already triaged into one
# incident by PagerDuty, and keeps its own thread.
FOLDED_SOURCES = frozenset({"alertmanager", "grafana"})
ACTOR = "opsbot"


def is_storm(group_key: str) -> bool:
    return group_key.startswith(STORM_KEY_PREFIX)


def sender_key(batch: AlertBatch) -> AlertBatch:
    """The batch with a group key no storm incident can have: a sender's key (or a key template
    filled from labels) that happens to start with STORM_KEY_PREFIX is moved aside, so a label
    can never make an incident pass for a storm, nor fold other groups into it."""
    if not is_storm(batch.group_key):
        return batch
    return replace(batch, group_key=ESCAPED_PREFIX + batch.group_key)


def batch_cluster(batch: AlertBatch) -> str | None:
    """The cluster a batch's first firing alert names (its scope for the storm rule), cut as
    the incidents' `cluster` column stores it."""
    firing = [alert for alert in batch.alerts if alert.status == "firing"] or batch.alerts
    return alert_scope(firing[0].labels, firing[0].fingerprint).cluster if firing else None


def in_storm(session: Session, cluster: str | None, now: datetime, window, threshold: int) -> bool:
    """Whether `threshold` or more incidents (storms excluded) opened in `cluster` within
    `window` are still open. A threshold of 0 turns the rule off."""
    if threshold <= 0:
        return False
    scope = Incident.cluster.is_(None) if cluster is None else Incident.cluster == cluster
    count = session.execute(
        select(func.count()).where(
            Incident.is_open.is_(True), Incident.status == "open", Incident.created_at >= now - window, scope,
            ~Incident.group_key.startswith(STORM_KEY_PREFIX))
    ).scalar_one()
    return count >= threshold


def storm_key(cluster: str | None) -> str:
    return STORM_KEY_PREFIX + (cluster or "-")


def fold_member(session: Session, batch: AlertBatch, storm: Incident, cluster: str | None, now: datetime) -> Incident:
    """The group's own incident row, closed as merged into the storm at once: never carded, never
    investigated; its later notifications follow `merged_into_id` to the storm's thread."""
    member = Incident(
        group_key=batch.group_key, group_key_hash=key_hash(batch.group_key), is_open=None, status="merged",
        source=batch.source, title=batch.alerts[0].name[:300], severity="unknown", links={}, alert_count=0,
        firing_count=0, created_at=now, updated_at=now, card_version=0, card_synced_version=0,
        card_attempts=0, category="other", note_pending={}, merged_into_id=storm.id,
        cluster=cluster,
    )
    session.add(member)
    session.flush()
    member.is_open = None  # set after the insert: the column's default would replace a None given up front
    chain.append(session, member.id, "incident.folded_into_storm", ACTOR, {"into": storm.reference}, now)
    chain.append(session, storm.id, "incident.storm_grew", ACTOR,
                 {"group": member.reference, "alert": batch.alerts[0].name[:200]}, now)
    return member


def title(cluster: str | None, alerts_title: str) -> str:
    """The storm card's headline: what it is first, then what fires (the usual summary)."""
    return f"Alert storm in {cluster or 'the cluster'}: {alerts_title}"[:300]


SKIP_REASON = ("an alert storm (many new alert groups in one cluster within minutes, folded into this thread): "
               "opsbot guesses no single cause for many services at once; look for what they share (a node, a "
               "zone, a dependency, a deploy)")
