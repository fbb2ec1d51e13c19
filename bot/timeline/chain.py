"""The incident timeline: an append-only, hash-chained audit log.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's canonical JSON
(incident, seq, time, kind, actor, payload). Editing or deleting any entry breaks every hash
after it, which `verify_chain` reports; the incident row keeps the newest entry's seq and hash,
so deleting entries from the end shows too (`verify_incident`, `opsbot audit verify`). The
(incident_id, seq) unique key means two writers racing to append the same seq cannot both win:
one transaction fails and is retried whole. Payloads are redacted before hashing: secrets never
reach the audit log.

A plain hash chain only proves consistency: whoever can write the database can rewrite an
entry and recompute every hash after it. Two anchors outside the database close that gap:
- the **audit key** (`OPSBOT_AUDIT_KEY`, kept out of the database): each entry also carries
  `mac`, an HMAC of its hash under the key, so a rewritten entry cannot be given a valid MAC by
  someone without the key (`verify_chain(..., key)`). The key reaches `append` through the
  session factory's `info` (`bot.db.engine.AUDIT_KEY_INFO`), so every writer (intake children included) signs;
- **anchor records** (`bot.timeline.anchors`): the heads, written periodically to the log and an
  append-only file, which catch what a MAC cannot (the newest entries deleted and the head
  moved back, a whole incident deleted).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.db.engine import AUDIT_KEY_INFO
from bot.db.locks import ROW_LOCK
from bot.db.models import Incident, TimelineEntry
from bot.redaction import redact_data

GENESIS = "0" * 64


def audit_key_from(secret: str | None) -> bytes | None:
    """The MAC key derived from OPSBOT_AUDIT_KEY (never the secret itself), or None."""
    return hashlib.sha256(b"opsbot-audit-key:" + secret.encode()).digest() if secret else None


def entry_mac(key: bytes, entry_hash_hex: str) -> str:
    return hmac.new(key, entry_hash_hex.encode(), hashlib.sha256).hexdigest()


def entry_hash(prev_hash: str, incident_id: int, seq: int, at: datetime, kind: str, actor: str,
               payload: dict[str, Any]) -> str:
    body = json.dumps(
        {"incident": incident_id, "seq": seq, "at": at.astimezone(UTC).isoformat(), "kind": kind, "actor": actor,
         "payload": payload},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str,
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def append(session: Session, incident_id: int, kind: str, actor: str, payload: dict[str, Any],
           at: datetime, locked: Incident | None = None) -> TimelineEntry:
    """Append one entry in the caller's transaction (the caller owns commit and retry).

    The incident row is locked first (FOR NO KEY UPDATE, see bot.db.locks; SQLite's BEGIN
    IMMEDIATE already serialises writers), so two transactions appending to one incident queue instead of both reading the
    same last seq and one failing on the (incident_id, seq) unique key. The new entry follows
    the head recorded on that row, not the newest row left in the table: entries deleted from
    the end stay missing in the chain (an append cannot paper over them).

    `locked`: the incident, when the caller loaded it in this session under that row lock (the
    intake does): its head is read from and written to the object, saving two round trips;
    appends by id keep loaded incidents current, so both kinds mix in one transaction.
    """
    if locked is not None:  # the caller's transaction holds this row locked: its head is current
        seq, prev_hash = locked.timeline_seq + 1, locked.timeline_head or GENESIS
    else:
        head = session.execute(select(Incident.timeline_seq, Incident.timeline_head)
                               .where(Incident.id == incident_id).with_for_update(**ROW_LOCK)).one()
        seq, prev_hash = head.timeline_seq + 1, head.timeline_head or GENESIS
    clean = json.loads(json.dumps(redact_data(payload), default=str))
    digest = entry_hash(prev_hash, incident_id, seq, at, kind, actor, clean)
    key = session.info.get(AUDIT_KEY_INFO)
    entry = TimelineEntry(incident_id=incident_id, seq=seq, at=at, kind=kind, actor=actor, payload=clean,
                          prev_hash=prev_hash, hash=digest, mac=entry_mac(key, digest) if key else None)
    session.add(entry)
    # the head on the incident row: deleting the newest entries leaves it pointing at nothing
    if locked is not None:
        locked.timeline_seq, locked.timeline_head = seq, entry.hash  # flushed with the caller's changes
        return entry
    session.flush()
    session.execute(update(Incident).where(Incident.id == incident_id).values(timeline_seq=seq, timeline_head=entry.hash)
                    .execution_options(synchronize_session="evaluate"))  # loaded incidents stay current
    return entry


def verify_chain(entries: Iterable[TimelineEntry], key: bytes | None = None,
                 unsigned_before: datetime | None = None) -> list[str]:
    """Problems found in one incident's entries (ordered by seq); empty when intact. With the
    audit key, every entry must carry a valid MAC, except entries written before
    `unsigned_before` (when the key was introduced: older entries have none) that come before
    any signed entry of their incident. Stripping the MACs of a rewritten timeline is therefore
    no way around them: only the operator says from when entries must be signed."""
    problems = []
    prev_hash, expected_seq, keyed = GENESIS, 1, False
    for entry in entries:
        if entry.seq != expected_seq:
            problems.append(f"INC-{entry.incident_id}: entry {expected_seq} is missing")
        if entry.prev_hash != prev_hash:
            problems.append(f"INC-{entry.incident_id} entry {entry.seq}: previous hash does not match")
        recomputed = entry_hash(entry.prev_hash, entry.incident_id, entry.seq, entry.at, entry.kind,
                                entry.actor, entry.payload)
        if recomputed != entry.hash:
            problems.append(f"INC-{entry.incident_id} entry {entry.seq}: content does not match its hash")
        if key is not None:
            if entry.mac is None and (keyed or unsigned_before is None or entry.at >= unsigned_before):
                problems.append(f"INC-{entry.incident_id} entry {entry.seq}: no MAC: "
                                + ("written or rewritten without the audit key (earlier entries have one)" if keyed
                                   else "stripped, or written before the audit key was set (then say since when "
                                        "with --unsigned-before)"))
            elif entry.mac is not None and not hmac.compare_digest(entry.mac, entry_mac(key, entry.hash)):
                problems.append(f"INC-{entry.incident_id} entry {entry.seq}: its MAC does not match: rewritten "
                                "without the audit key (or the key changed)")
            keyed = keyed or entry.mac is not None
        prev_hash, expected_seq = entry.hash, entry.seq + 1
    return problems


def verify_incident(session: Session, incident: Incident, key: bytes | None = None,
                    unsigned_before: datetime | None = None) -> list[str]:
    """Problems in one incident's timeline: a broken chain, or a head on the incident row that
    does not match the newest entry, said for what it is: entries deleted from the end (the
    row names a later entry), the row's head moved back (entries go on past it), or the row's
    head edited (same entry, another hash)."""
    entries = list(session.execute(select(TimelineEntry).where(TimelineEntry.incident_id == incident.id)
                                   .order_by(TimelineEntry.seq)).scalars())
    problems = verify_chain(entries, key, unsigned_before)
    last_seq, last_hash = (entries[-1].seq, entries[-1].hash) if entries else (0, None)
    head_seq = incident.timeline_seq or 0
    head = incident.timeline_head if head_seq else None
    if head_seq > last_seq:
        problems.append(f"INC-{incident.id}: the timeline ends at entry {last_seq} but entry {head_seq} was "
                        "written: entries were deleted")
    elif head_seq < last_seq:
        problems.append(f"INC-{incident.id}: the incident row names entry {head_seq} as the newest but the "
                        f"timeline goes on to entry {last_seq}: the incident row's head was moved back")
    elif head != last_hash:
        problems.append(f"INC-{incident.id}: the head hash on the incident row does not match entry {last_seq}: "
                        "the incident row was edited (the entries agree with each other)")
    return problems
