"""The `opsbot` command as a user runs it: one clear line per problem, never a traceback."""

import os
import signal
import subprocess
import sys
import time

import requests

from bot.db.migrate import head_revision
from bot.sandbox.promstack import free_port


def opsbot(*args, env=None, timeout=60):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPSBOT_") and k != "DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, timeout=timeout,
                          env={**clean, **(env or {})})


def test_help_and_version():
    result = opsbot("--help")
    assert result.returncode == 0
    for command in ("serve", "db", "demo", "version"):
        assert command in result.stdout
    assert opsbot("version").stdout.startswith("opsbot 0.")


def test_db_upgrade_then_current(tmp_path):
    env = {"OPSBOT_DATA_DIR": str(tmp_path / "data")}
    assert opsbot("db", "current", env=env).returncode == 1
    head = head_revision()
    first = opsbot("db", "upgrade", env=env)
    assert first.returncode == 0 and f"upgraded empty -> {head}" in first.stdout
    assert f"already at {head}" in opsbot("db", "upgrade", env=env).stdout
    assert opsbot("db", "current", env=env).stdout.strip() == f"current {head}, head {head}"


def test_configuration_errors_are_one_line_each(tmp_path):
    result = opsbot("serve", env={"OPSBOT_HTTP_PORT": "eighty", "OPSBOT_SLACK_BOT_TOKEN": "nope"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "OPSBOT_HTTP_PORT:" in result.stderr and "OPSBOT_SLACK_BOT_TOKEN: must be a bot token" in result.stderr


def test_serve_refuses_an_unmigrated_database(tmp_path):
    result = opsbot("serve", "--port", "0", env={"OPSBOT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.strip().endswith("the database has no schema yet: run `opsbot db upgrade`")
    assert "Traceback" not in result.stderr


def test_serve_runs_with_defaults_and_stops_on_sigterm(tmp_path):
    env = {"OPSBOT_DATA_DIR": str(tmp_path)}
    assert opsbot("db", "upgrade", env=env).returncode == 0
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPSBOT_") and k != "DATABASE_URL"}
    process = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(port)],
                               env={**clean, **env}, stderr=subprocess.PIPE, text=True)
    keep_alive = requests.Session()  # an idle keep-alive connection, as Alertmanager holds one
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if keep_alive.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise AssertionError("serve did not become ready")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)  # well inside Kubernetes' 30 s grace period
    finally:
        keep_alive.close()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("{")]
    assert any('"message": "opsbot' in line and "listening on" in line for line in lines), stderr
    warned = [line for line in lines if '"level": "warning"' in line]  # the defaults: a local trial
    for expected in ("nobody can approve steps that need oncall", "investigations will be skipped", "emulator mode"):
        assert any(expected in line for line in warned), stderr


def test_deliveries_list_show_and_replay(tmp_path):
    from bot.alerts import deliveries
    from bot.clock import utc_now
    from bot.db.engine import make_engine, make_session_factory, unit_of_work
    from bot.db.models import RawDelivery
    from tests.payloads import am_alert, am_body

    env = {"OPSBOT_DATA_DIR": str(tmp_path)}
    assert opsbot("deliveries", "list", env=env).returncode == 1, "no schema yet: one clear line"
    assert opsbot("db", "upgrade", env=env).returncode == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'opsbot.sqlite3'}")
    with unit_of_work(make_session_factory(engine)) as session:
        first = deliveries.store(session, "alertmanager", am_body([am_alert()]), {}, utc_now()).id
    listed = opsbot("deliveries", "list", env=env)
    assert listed.returncode == 0 and "alertmanager" in listed.stdout and "pending" in listed.stdout
    shown = opsbot("deliveries", "show", str(first), env=env)
    assert '"groupKey"' in shown.stdout and '"status": "pending"' in shown.stdout
    replayed = opsbot("deliveries", "replay", str(first), env=env)
    assert replayed.returncode == 0 and f"queued again as delivery {first + 1}" in replayed.stdout
    with unit_of_work(make_session_factory(engine)) as session:
        copy = session.get(RawDelivery, first + 1)
        assert copy.status == "pending" and copy.headers["x-opsbot-replay-of"] == str(first)
    engine.dispose()
    missing = opsbot("deliveries", "replay", "999", env=env)
    assert missing.returncode == 1 and missing.stderr.strip() == "opsbot: no delivery 999"


def test_eval_refuses_a_missing_path_in_one_line(tmp_path):
    result = opsbot("eval", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"opsbot: no such file or folder: {tmp_path / 'nope.yaml'}"]


def test_eval_reports_a_broken_scenario_and_fails(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: broken\ntitle: t\nsurprise: 1\n")
    result = opsbot("eval", str(broken))
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert "ERROR" in result.stdout and "surprise" in result.stdout
