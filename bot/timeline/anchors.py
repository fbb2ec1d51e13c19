"""Anchors: the timeline heads, written where the bot's database role cannot rewrite them.

Every `interval`, the heads that changed since the last round ((incident, seq, hash) of each
incident's newest entry) are written as one JSON record per batch: to the log (a line starting
`audit anchor `, for a log collector to keep) and, when `OPSBOT_AUDIT_ANCHOR_FILE` is set,
appended to that file and flushed to disk. With the audit key, each record carries an HMAC
over its content, so a forged record shows too.

`verify_anchors` (`opsbot audit verify --anchors FILE`) then finds what the chain alone cannot:
an anchored entry that is gone or has another hash (entries deleted from the end and the head
moved back, or the chain rewritten from that entry on), or an anchored incident that no longer
exists. What it cannot see: changes made after the last anchor and before the next (at most
one interval), and anything done by someone who can also rewrite the anchor file and the logs.
The first round after a start anchors every incident once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock
from bot.db.engine import reading
from bot.db.models import Incident, TimelineEntry

log = logging.getLogger(__name__)
KIND = "opsbot.audit.anchor"
LOG_PREFIX = "audit anchor "
HEADS_PER_RECORD = 500


def _record_mac(key: bytes, record: dict) -> str:
    body = json.dumps({k: v for k, v in record.items() if k != "mac"}, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def anchor_records(heads: list[tuple[int, int, str]], at: datetime, key: bytes | None) -> list[dict]:
    """The records for `heads`, at most HEADS_PER_RECORD each, MACed when there is a key."""
    records = []
    for start in range(0, len(heads), HEADS_PER_RECORD):
        record = {"kind": KIND, "at": at.isoformat(), "heads": [list(h) for h in heads[start:start + HEADS_PER_RECORD]]}
        if key:
            record["mac"] = _record_mac(key, record)
        records.append(record)
    return records


@dataclass
class Anchorer:
    """One process's anchoring loop step (`round`), run by the workers."""

    factory: sessionmaker[Session]
    clock: Clock
    key: bytes | None
    file: Path | None
    interval: timedelta

    def __post_init__(self) -> None:
        self._anchored: dict[int, int] = {}  # incident → seq last anchored by this process
        self._due: datetime | None = None

    def round(self, _owner: str = "") -> bool:
        now = self.clock()
        if self._due is not None and now < self._due:
            return False
        self._due = now + self.interval
        with reading(self.factory) as session:
            rows = session.execute(select(Incident.id, Incident.timeline_seq, Incident.timeline_head)
                                   .where(Incident.timeline_seq > 0).order_by(Incident.id)).all()
        heads = [(row.id, row.timeline_seq, row.timeline_head) for row in rows
                 if self._anchored.get(row.id) != row.timeline_seq]
        if not heads:
            return False
        self.write(anchor_records(heads, now, self.key))
        self._anchored.update({incident: seq for incident, seq, _head in heads})
        return False  # never "busy": the loop sleeps until the next poll

    def write(self, records: list[dict]) -> None:
        lines = [json.dumps(record, separators=(",", ":")) for record in records]
        for line in lines:
            log.info("%s%s", LOG_PREFIX, line)
        if self.file is not None:
            with open(self.file, "a", encoding="utf-8") as handle:
                handle.write("".join(line + "\n" for line in lines))
                handle.flush()
                os.fsync(handle.fileno())


def _parse(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


def read_records(lines: Iterable[str]) -> tuple[list[dict], int]:
    """Anchor records found in lines of an anchor file or of the bot's log (text or JSON lines,
    where the record follows `audit anchor ` in the message); and how many non-empty lines held
    none."""
    records, other = [], 0
    for line in lines:
        record = _parse(line)
        if isinstance(record, dict) and isinstance(record.get("message"), str):
            line = record["message"]  # a JSON log line: the record is inside its message
        if not (isinstance(record, dict) and record.get("kind") == KIND) and LOG_PREFIX in line:
            record = _parse(line.split(LOG_PREFIX, 1)[1])
        if isinstance(record, dict) and record.get("kind") == KIND and isinstance(record.get("heads"), list):
            records.append(record)
        elif line.strip():
            other += 1
    return records, other


def verify_anchors(session: Session, records: list[dict], key: bytes | None) -> list[str]:
    """Problems between the anchored heads and the database; empty when every anchor holds."""
    problems = []
    for record in records:
        if key is not None and not hmac.compare_digest(str(record.get("mac", "")), _record_mac(key, record)):
            problems.append(f"the anchor record of {record.get('at')} has no valid MAC: forged, or another key")
            continue
        for head in record["heads"]:
            try:
                incident_id, seq, digest = int(head[0]), int(head[1]), str(head[2])
            except (TypeError, ValueError, IndexError):
                problems.append(f"the anchor record of {record.get('at')} holds a malformed head {head!r}")
                continue
            if session.get(Incident, incident_id) is None:
                problems.append(f"INC-{incident_id} was anchored at {record.get('at')} (entry {seq}) but no longer "
                                "exists: the incident was deleted")
                continue
            stored = session.execute(select(TimelineEntry.hash).where(TimelineEntry.incident_id == incident_id,
                                                                      TimelineEntry.seq == seq)).scalar_one_or_none()
            if stored is None:
                problems.append(f"INC-{incident_id}: entry {seq} was anchored at {record.get('at')} but is gone: "
                                "entries were deleted")
            elif stored != digest:
                problems.append(f"INC-{incident_id}: entry {seq} has another hash than anchored at "
                                f"{record.get('at')}: the timeline was rewritten from there on")
    return sorted(set(problems), key=problems.index)
