import json
import logging

from bot.logs import JsonFormatter, incident_context


def record(message, **extra):
    item = logging.makeLogRecord({"name": "opsbot.test", "levelname": "INFO", "msg": message, **extra})
    return json.loads(JsonFormatter().format(item))


def test_lines_carry_the_incident_only_inside_its_context():
    assert "incident" not in record("before")
    with incident_context(42):
        line = record("working", delivery=7)
    assert line["incident"] == "INC-42" and line["delivery"] == 7 and line["message"] == "working"
    assert "incident" not in record("after")


def test_log_lines_are_redacted():
    assert "hunter2" not in record("connecting to postgres://app:hunter2@db/x")["message"]
    assert "hunter2" not in json.dumps(record("failed", error="password=hunter2"))


def test_text_lines_are_redacted_after_formatting():
    from bot.logs import TextFormatter

    item = logging.makeLogRecord({"name": "x", "levelname": "ERROR", "msg": "failed: %s",
                                  "args": ("postgres://app:hunter2@db/x",)})
    line = TextFormatter("%(message)s").format(item)
    assert "hunter2" not in line and line.startswith("failed: postgres://")
    assert item.msg == "failed: %s", "the record is not modified"
