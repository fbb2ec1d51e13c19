"""The emulated workspace kept in its own SQLite file, so a restarted emulator shows the same
channels, messages, threads and files (`SlackEmulator(state_file=...)`).

Layout: one table `records(kind, key, position, body, data)`, one row per kept record.
`body` is the record as JSON; `data` holds an uploaded file's bytes. Kinds: `channel`, `user`,
`usergroup`, `message` (key `C.../ts`), `file`, `view`, and one `meta` row with the counters.
`position` is given when a row is first written and never changes, so loading in position
order restores the order records were created in (channel history, upload order, directory order).

Invariants:
- Write-through: `save` runs under the emulator's lock after every call that may have changed
  something, and writes exactly the records in `WorkspaceState.changed` as they are now (a record
  that is gone is deleted), plus the counters, in one transaction.
- The saved `last_ts_us` is the newest ts ever handed out (ephemerals included), so a restarted
  emulator never issues a ts at or below an old one; likewise `last_id` for file and view ids.
- Not kept: the call log, fault injections, held answers and ephemeral messages.
- One emulator per file: the connection holds SQLite's exclusive lock until `close`, so a second
  emulator on the same file gets `WorkspaceFileError` instead of overwriting the first one's rows.
- A file that is not a SQLite database, is damaged, or holds records this code cannot read is
  renamed aside (`<name>.unreadable-<time>`, never deleted) with one warning naming both files,
  and the emulator starts with a fresh workspace. A healthy SQLite database that is not an
  emulator workspace (another program's file) is never touched: that is `WorkspaceFileError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bot.sandbox.slack_emulator.state import (
    Channel,
    FileRecord,
    Message,
    User,
    Usergroup,
    ViewRecord,
    WorkspaceState,
    message_key,
)

log = logging.getLogger(__name__)

APPLICATION_ID = 0x4F50534C  # "OPSL": marks the file as an opsbot Slack emulator workspace
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    position INTEGER NOT NULL,
    body TEXT NOT NULL,
    data BLOB,
    PRIMARY KEY (kind, key)
)
"""
_UPSERT = ("INSERT INTO records (kind, key, position, body, data) VALUES (?, ?, ?, ?, ?) "
           "ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body, data = excluded.data")
_DAMAGED_CODES = {"SQLITE_NOTADB", "SQLITE_CORRUPT"}
_META_KEY = "counters"


class WorkspaceFileError(Exception):
    """The workspace file cannot be used and was left as it is (locked by another emulator, no
    permission, another program's database). The message is one line naming the file."""


class _Unreadable(Exception):
    """The file's content cannot be read as a workspace: it is set aside."""


# -- records <-> rows -----------------------------------------------------------------------------
Row = tuple[str, bytes | None]  # (body JSON, file bytes)


def _find(state: WorkspaceState, kind: str, key: str) -> Any:
    if kind == "message":
        channel_id, _, ts = key.partition("/")
        return state.messages.get((channel_id, ts))
    return {"channel": state.channels, "user": state.users, "usergroup": state.usergroups,
            "file": state.files, "view": state.views}[kind].get(key)


def _row_of(record: Any) -> Row:
    if isinstance(record, Message):
        body: dict[str, Any] = {"channel": record.channel, "payload": record.payload, "history": record.history}
        return json.dumps(body), None
    if isinstance(record, FileRecord):
        body = asdict(record)
        data = body.pop("data")
        return json.dumps(body), data
    return json.dumps(asdict(record)), None


def _all_records(state: WorkspaceState) -> list[tuple[str, str, Any]]:
    """Every kept record as (kind, key, record), in the order they were created."""
    out: list[tuple[str, str, Any]] = []
    for kind, table in (("channel", state.channels), ("user", state.users), ("usergroup", state.usergroups),
                        ("file", state.files), ("view", state.views)):
        out.extend((kind, key, record) for key, record in table.items())
    out.extend(("message", message_key(*key), state.messages[key]) for key in state.order)
    return out


_BUILDERS: dict[str, Callable[[dict[str, Any], bytes | None], Any]] = {
    "channel": lambda body, _data: Channel(**body),
    "user": lambda body, _data: User(**body),
    "usergroup": lambda body, _data: Usergroup(**body),
    "message": lambda body, _data: Message(body["channel"], body["payload"], body["history"]),
    "file": lambda body, data: FileRecord(**body, data=data),
    "view": lambda body, _data: ViewRecord(**body),
}


def _restore(state: WorkspaceState, rows: list[tuple[str, str, str, bytes | None]]) -> None:
    """Fill an empty `state` from rows in position order. Every row is parsed before `state` is
    touched, so a bad row (`_Unreadable`) leaves `state` as it was."""
    parsed: list[tuple[str, str, Any]] = []
    counters = {"last_ts_us": 0, "last_id": 0}
    for kind, key, body_text, data in rows:
        try:
            body = json.loads(body_text)
            if kind == "meta":
                counters = {"last_ts_us": int(body["last_ts_us"]), "last_id": int(body["last_id"])}
                continue
            record = _BUILDERS[kind](body, data)
            if kind == "message":
                if message_key(record.channel, record.ts) != key:
                    raise ValueError(f"it holds the message {record.channel}/{record.ts}")
                counters["last_ts_us"] = max(counters["last_ts_us"], _ts_us(record.ts))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise _Unreadable(f"record {kind} {key!r} cannot be read ({exc.__class__.__name__}: {exc})") from None
        parsed.append((kind, key, record))
    for kind, key, record in parsed:
        if kind == "message":
            state.messages[(record.channel, record.ts)] = record
            state.order.append((record.channel, record.ts))
        else:
            {"channel": state.channels, "user": state.users, "usergroup": state.usergroups,
             "file": state.files, "view": state.views}[kind][key] = record
    state.used_trigger_ids = {v.trigger_id for v in state.views.values() if v.trigger_id}
    state.last_ts_us = max(state.last_ts_us, counters["last_ts_us"])
    state.last_id = max(state.last_id, counters["last_id"])


def _ts_us(ts: str) -> int:
    """`"1763721600.000100"` in microseconds; ValueError for anything else."""
    seconds, dot, micros = ts.partition(".")
    if not dot or len(micros) != 6:
        raise ValueError(f"not a message ts: {ts!r}")
    return int(seconds) * 1_000_000 + int(micros)


# -- the store ------------------------------------------------------------------------------------
class WorkspaceStore:
    """The open workspace file of one emulator. Not thread-safe: used under the emulator's lock."""

    def __init__(self, path: Path, connection: sqlite3.Connection, next_position: int) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = connection
        self._next_position = next_position
        self._saved_counters: tuple[int, int] | None = None
        self._failing = False  # a save failed: warn once, retry the same records next time

    @classmethod
    def open(cls, path: Path, state: WorkspaceState) -> WorkspaceStore:
        """Open (or create) the file and fill the fresh `state` from it; a new or set-aside file
        gets `state.seed_defaults()` and all of it is written. Raises `WorkspaceFileError`."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceFileError(f"cannot create the folder of {path}: {exc.strerror}") from None
        try:
            store, loaded = cls._open_and_load(path, state)
        except _Unreadable as exc:
            aside = _set_aside(path)
            log.warning("Slack emulator: the workspace file %s is unreadable (%s); kept it as %s and "
                        "started a fresh workspace", path, exc, aside)
            store, loaded = cls._open_and_load(path, state)
        if not loaded:
            state.seed_defaults()
            store._write([(kind, key, _row_of(record)) for kind, key, record in _all_records(state)], [], state)
        state.changed.clear()
        return store

    @classmethod
    def _open_and_load(cls, path: Path, state: WorkspaceState) -> tuple[WorkspaceStore, bool]:
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(path, timeout=1.0, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            db.execute("BEGIN IMMEDIATE")  # takes the file's lock now, held until close()
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            (app_id,) = db.execute("PRAGMA application_id").fetchone()
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if not tables and app_id == 0:
                db.execute(_SCHEMA)
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                rows = []
            elif app_id != APPLICATION_ID:
                raise WorkspaceFileError(f"{path} is a SQLite database of another program, not a Slack "
                                         "emulator workspace; it was left untouched")
            elif version != SCHEMA_VERSION or "records" not in tables:
                raise _Unreadable(f"workspace format {version}, this emulator reads format {SCHEMA_VERSION}")
            else:
                rows = db.execute("SELECT kind, key, body, data FROM records ORDER BY position").fetchall()
            db.execute("COMMIT")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            (top,) = db.execute("SELECT COALESCE(MAX(position), 0) FROM records").fetchone()
            _restore(state, rows)
        except sqlite3.Error as exc:
            _close_quietly(db)
            if getattr(exc, "sqlite_errorname", "") in _DAMAGED_CODES:
                raise _Unreadable(str(exc)) from None
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_BUSY":
                raise WorkspaceFileError(f"the workspace file {path} is in use by another Slack emulator") from None
            raise WorkspaceFileError(f"cannot use the workspace file {path}: {exc}") from None
        except BaseException:
            _close_quietly(db)
            raise
        store = cls(path, db, top + 1)
        store._saved_counters = (state.last_ts_us, state.last_id)
        return store, bool(rows)

    def save(self, state: WorkspaceState) -> None:
        """Write the records in `state.changed` (and the counters when they moved), then clear
        it. A failed write is logged once and retried with the next save; it never fails the
        call that made the change (the emulator keeps serving from memory)."""
        if self._db is None or (not state.changed and self._saved_counters == (state.last_ts_us, state.last_id)):
            return
        upserts: list[tuple[str, str, Row]] = []
        deletes: list[tuple[str, str]] = []
        for kind, key in sorted(state.changed, key=_creation_order):
            record = _find(state, kind, key)
            if record is None:
                deletes.append((kind, key))
            else:
                upserts.append((kind, key, _row_of(record)))
        try:
            self._write(upserts, deletes, state)
        except sqlite3.Error as exc:
            if not self._failing:
                log.warning("Slack emulator: cannot write the workspace file %s (%s); changes are kept in "
                            "memory and written with the next successful save", self.path, exc)
            self._failing = True
            return
        self._failing = False
        state.changed.clear()

    def _write(self, upserts: list[tuple[str, str, Row]], deletes: list[tuple[str, str]],
               state: WorkspaceState) -> None:
        assert self._db is not None
        counters = (state.last_ts_us, state.last_id)
        meta = json.dumps({"last_ts_us": counters[0], "last_id": counters[1]})
        rows = [(kind, key, self._next_position + i, body, data) for i, (kind, key, (body, data)) in enumerate(upserts)]
        rows.append(("meta", _META_KEY, 0, meta, None))
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany("DELETE FROM records WHERE kind = ? AND key = ?", deletes)
            db.executemany(_UPSERT, rows)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._next_position += len(upserts)
        self._saved_counters = counters

    def close(self) -> None:
        """Release the file (and its lock). Later saves do nothing. Idempotent."""
        db, self._db = self._db, None
        _close_quietly(db)


def _creation_order(item: tuple[str, str]) -> tuple[int, str]:
    """Messages are saved in ts order, so new ones get positions in posting order."""
    kind, key = item
    if kind == "message":
        channel_id, _, ts = key.partition("/")
        return (1, f"{_ts_us(ts):020d}/{channel_id}")
    return (0, f"{kind}/{key}")


def _close_quietly(db: sqlite3.Connection | None) -> None:
    if db is not None:
        with contextlib.suppress(sqlite3.Error):
            db.close()


def _set_aside(path: Path) -> Path:
    """Rename the unreadable file (and its WAL companions) to `<name>.unreadable-<time>[-n]`."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.unreadable-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.unreadable-{stamp}-{n}")
    try:
        path.rename(aside)
        for suffix in ("-wal", "-shm", "-journal"):
            companion = path.with_name(path.name + suffix)
            if companion.exists():
                companion.rename(aside.with_name(aside.name + suffix))
    except OSError as exc:
        raise WorkspaceFileError(f"the workspace file {path} is unreadable and cannot be set aside: "
                                 f"{exc.strerror}") from None
    return aside
