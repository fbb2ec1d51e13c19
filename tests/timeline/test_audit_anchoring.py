"""What the audit key and the anchors catch that the plain hash chain cannot (issue 12): an
attacker with write access to the database rewrites an entry and recomputes the chain and the
head, deletes the newest entry and moves the head back, deletes a whole incident, or edits only
the head on the incident row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from bot.db.engine import make_session_factory, reading, unit_of_work
from bot.db.models import Incident, TimelineEntry
from bot.remediation_cli import audit_verify
from bot.timeline import chain
from bot.timeline.anchors import Anchorer, read_records
from tests.test_cli import opsbot

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)
KEY = chain.audit_key_from("audit-key-kept-outside-the-database")


@pytest.fixture
def factory(engine):  # noqa: F811 - `engine` migrates the database
    return make_session_factory(engine, KEY)


@pytest.fixture
def engine_factory_unsigned(engine):
    """Sessions of a bot that ran before OPSBOT_AUDIT_KEY was set."""
    return make_session_factory(engine)


def open_incident(factory, key: str, kinds=("incident.opened", "remediation.approved", "remediation.succeeded")) -> int:
    with unit_of_work(factory) as session:
        incident = Incident(group_key=key, group_key_hash=key, source="alertmanager", title=key, created_at=NOW,
                            updated_at=NOW)
        session.add(incident)
        session.flush()
        for kind in kinds:
            chain.append(session, incident.id, kind, "opsbot", {"kind": kind}, NOW)
        return incident.id


def as_attacker(engine, *statements: tuple[str, dict]) -> None:
    """Raw SQL past the append-only triggers, as someone holding the database role would."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE timeline_entries DISABLE TRIGGER USER"))
        else:
            connection.execute(text("DROP TRIGGER IF EXISTS timeline_entries_no_update"))
            connection.execute(text("DROP TRIGGER IF EXISTS timeline_entries_no_delete"))
        for statement, params in statements:
            connection.execute(text(statement), params)
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE timeline_entries ENABLE TRIGGER USER"))


def rewrite_from(engine, factory, incident_id: int, seq: int, actor: str) -> None:
    """Change entry `seq`'s actor and recompute every hash after it and the incident's head."""
    with reading(factory) as session:
        entries = session.execute(select(TimelineEntry.id, TimelineEntry.seq, TimelineEntry.at, TimelineEntry.kind,
                                         TimelineEntry.actor, TimelineEntry.payload, TimelineEntry.hash)
                                  .where(TimelineEntry.incident_id == incident_id).order_by(TimelineEntry.seq)).all()
    statements, prev = [], entries[seq - 2].hash if seq > 1 else chain.GENESIS
    for entry in entries[seq - 1:]:
        new_actor = actor if entry.seq == seq else entry.actor
        digest = chain.entry_hash(prev, incident_id, entry.seq, entry.at, entry.kind, new_actor, entry.payload)
        statements.append(("UPDATE timeline_entries SET actor = :actor, prev_hash = :prev, hash = :hash "
                           "WHERE id = :id", {"actor": new_actor, "prev": prev, "hash": digest, "id": entry.id}))
        prev = digest
    statements.append(("UPDATE incidents SET timeline_head = :head WHERE id = :id", {"head": prev, "id": incident_id}))
    as_attacker(engine, *statements)


def test_a_rewritten_and_rechained_entry_is_caught_by_its_mac(engine, factory):
    incident_id = open_incident(factory, "g1")
    assert audit_verify(factory, None, KEY) == (0, ["1 incident timeline(s) intact"])
    rewrite_from(engine, factory, incident_id, 2, "slack:U0MALLORY")
    code, lines = audit_verify(factory, None, None)
    assert code == 0, "without the key, a recomputed chain looks intact: the limit of a plain hash chain"
    code, lines = audit_verify(factory, None, KEY)
    assert code == 1
    assert f"INC-{incident_id} entry 2: its MAC does not match" in "\n".join(lines)
    as_attacker(engine, ("UPDATE timeline_entries SET mac = NULL WHERE incident_id = :id AND seq >= 2",
                         {"id": incident_id}))
    assert "entry 2: no MAC: written or rewritten without the audit key" in "\n".join(audit_verify(factory, None, KEY)[1])
    as_attacker(engine, ("UPDATE timeline_entries SET mac = NULL WHERE incident_id = :id", {"id": incident_id}))
    report = "\n".join(audit_verify(factory, None, KEY)[1])
    assert "entry 1: no MAC: stripped, or written before the audit key was set" in report, "no way around by stripping"
    assert audit_verify(factory, None, KEY, unsigned_before=NOW - timedelta(days=1))[0] == 1, "written after the key"


def test_entries_from_before_the_key_pass_only_when_the_operator_says_since_when(engine, engine_factory_unsigned):
    unsigned, signed = engine_factory_unsigned, make_session_factory(engine, KEY)
    old = open_incident(unsigned, "before-the-key")
    new = open_incident(signed, "after-the-key")
    code, lines = audit_verify(signed, None, KEY)
    assert code == 1 and f"INC-{old} entry 1: no MAC" in "\n".join(lines) and f"INC-{new}" not in "\n".join(lines)
    assert audit_verify(signed, None, KEY, unsigned_before=NOW + timedelta(seconds=1))[0] == 0


def test_a_deleted_newest_entry_with_the_head_moved_back_and_a_deleted_incident_are_caught_by_the_anchors(
        engine, factory, tmp_path):
    kept, truncated, deleted = (open_incident(factory, key) for key in ("g1", "g2", "g3"))
    anchors = tmp_path / "anchors.jsonl"
    Anchorer(factory, lambda: NOW, KEY, anchors, timedelta(minutes=5)).round()
    assert audit_verify(factory, None, KEY, anchors) == (0, ["1 anchor record(s) read", "3 incident timeline(s) intact"])
    with reading(factory) as session:
        second = session.execute(select(TimelineEntry.hash).where(TimelineEntry.incident_id == truncated,
                                                                  TimelineEntry.seq == 2)).scalar_one()
    as_attacker(engine,
                ("DELETE FROM timeline_entries WHERE incident_id = :id AND seq = 3", {"id": truncated}),
                ("UPDATE incidents SET timeline_seq = 2, timeline_head = :head WHERE id = :id",
                 {"head": second, "id": truncated}),
                ("DELETE FROM timeline_entries WHERE incident_id = :id", {"id": deleted}),
                ("DELETE FROM incidents WHERE id = :id", {"id": deleted}))
    assert audit_verify(factory, None, KEY)[0] == 0, "the chains alone look intact"
    code, lines = audit_verify(factory, None, KEY, anchors)
    report = "\n".join(lines)
    assert code == 1
    assert f"INC-{truncated}: entry 3 was anchored" in report and "entries were deleted" in report
    assert f"INC-{deleted} was anchored" in report and "the incident was deleted" in report
    assert f"INC-{kept}" not in report


def test_a_forged_anchor_record_is_refused(engine, factory, tmp_path):
    open_incident(factory, "g1")
    anchors = tmp_path / "anchors.jsonl"
    Anchorer(factory, lambda: NOW, KEY, anchors, timedelta(minutes=5)).round()
    anchors.write_text(anchors.read_text().replace('"heads":[[1,3,', '"heads":[[1,2,'))
    assert "has no valid MAC" in "\n".join(audit_verify(factory, None, KEY, anchors)[1])


def test_only_the_heads_that_changed_are_anchored_again(factory, tmp_path):
    first = open_incident(factory, "g1")
    open_incident(factory, "g2")
    anchors = tmp_path / "anchors.jsonl"
    clock = [NOW]
    anchorer = Anchorer(factory, lambda: clock[0], None, anchors, timedelta(minutes=5))
    anchorer.round()
    with unit_of_work(factory) as session:
        chain.append(session, first, "incident.resolved_by_source", "opsbot", {}, NOW)
    anchorer.round()  # not due yet
    clock[0] = NOW + timedelta(minutes=5)
    anchorer.round()
    records, other = read_records(anchors.read_text().splitlines())
    assert other == 0
    assert [[head[:2] for head in record["heads"]] for record in records] == [[[first, 3], [first + 1, 3]],
                                                                             [[first, 4]]]


def test_editing_only_the_head_on_the_incident_row_is_said_as_such(engine, factory):
    incident_id = open_incident(factory, "g1")
    as_attacker(engine, ("UPDATE incidents SET timeline_head = :head WHERE id = :id",
                         {"head": "f" * 64, "id": incident_id}))
    (problem, _total) = audit_verify(factory, None, KEY)[1]
    assert "the head hash on the incident row does not match entry 3: the incident row was edited" in problem
    as_attacker(engine, ("UPDATE incidents SET timeline_seq = 2 WHERE id = :id", {"id": incident_id}))
    assert "head was moved back" in audit_verify(factory, None, KEY)[1][0]


def test_the_command_checks_the_anchor_file_and_the_key(tmp_path):
    env = {"OPSBOT_DATA_DIR": str(tmp_path), "OPSBOT_AUDIT_KEY": "audit-key-kept-outside-the-database"}
    assert opsbot("db", "upgrade", env=env).returncode == 0
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path}/opsbot.sqlite3")
    factory = make_session_factory(engine, KEY)
    open_incident(factory, "g1")
    anchors = tmp_path / "anchors.jsonl"
    Anchorer(factory, lambda: NOW, KEY, anchors, timedelta(minutes=5)).round()
    ok = opsbot("audit", "verify", "--anchors", str(anchors), env=env)
    assert ok.returncode == 0 and "1 incident timeline(s) intact" in ok.stdout
    rewrite_from(engine, factory, 1, 1, "slack:U0MALLORY")
    bad = opsbot("audit", "verify", "--anchors", str(anchors), env=env)
    assert bad.returncode == 1 and "its MAC does not match" in bad.stdout and "has another hash" in bad.stdout
    missing = opsbot("audit", "verify", "--anchors", str(tmp_path / "nope"), env=env)
    assert missing.returncode == 2 and "cannot read the anchors" in missing.stdout + missing.stderr
    bad_time = opsbot("audit", "verify", "--unsigned-before", "last tuesday", env=env)
    assert bad_time.returncode == 2 and "not an ISO 8601 time" in bad_time.stderr
    engine.dispose()


def test_the_running_bot_signs_its_entries_and_anchors_its_heads(database_url, slack, engine, tmp_path):
    from contextlib import ExitStack

    from bot.clock import utc_now
    from tests.concurrency import eventually
    from tests.conftest import make_settings, serve_on
    from tests.payloads import am_alert, am_body

    anchors, offset = tmp_path / "anchors.jsonl", [timedelta(0)]
    settings = make_settings(database_url, slack, audit_key="audit-key-kept-outside-the-database",
                             audit_anchor_file=anchors)
    with ExitStack() as stack:
        bot = serve_on(stack, settings, slack, clock=lambda: utc_now() + offset[0])
        assert bot.post_webhook("alertmanager", am_body([am_alert()])).status_code == 202
        eventually(lambda: audit_verify(bot.runtime.factory, 1, KEY)[0] == 0, timeout=15)
        offset[0] = timedelta(minutes=10)  # the next anchoring round is due
        records = eventually(lambda: read_records(anchors.read_text().splitlines())[0] if anchors.exists() else None,
                             timeout=15)
        with reading(bot.runtime.factory) as session:
            assert session.execute(select(TimelineEntry.mac).where(TimelineEntry.incident_id == 1)).scalars().all()
            assert None not in session.execute(select(TimelineEntry.mac)).scalars().all(), "every entry is signed"
        assert [head[0] for head in records[0]["heads"]] == [1] and "mac" in records[0]


def test_anchor_records_are_read_back_from_the_bots_own_log_lines(factory, caplog):
    import logging

    from bot.logs import JsonFormatter

    open_incident(factory, "g1")
    caplog.set_level(logging.INFO, logger="bot.timeline.anchors")
    Anchorer(factory, lambda: NOW, KEY, None, timedelta(minutes=5)).round()
    (record,) = [r for r in caplog.records if r.name == "bot.timeline.anchors"]
    text_line = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s").format(record)
    json_line = JsonFormatter().format(record)
    for lines in ([text_line], [json_line], ["unrelated line", json_line]):
        records, other = read_records(lines)
        assert [head[:2] for head in records[0]["heads"]] == [[1, 3]] and other == len(lines) - 1


def test_anchors_are_logged_even_when_the_log_level_is_warning(factory, capsys):
    import logging

    from bot.logs import configure_logging

    open_incident(factory, "g1")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("WARNING", "json")
        Anchorer(factory, lambda: NOW, KEY, None, timedelta(minutes=5)).round()
        logging.getLogger("bot.something").info("chatter that WARNING hides")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = capsys.readouterr().err.splitlines()
    records, other = read_records(lines)
    assert len(records) == 1 and other == 0
