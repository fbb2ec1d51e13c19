"""`opsbot incidents`, `opsbot thread` and `opsbot timeline` run as a terminal user runs them (a
separate `python -m bot` process configured by OPSBOT_* variables) against a database whose
incidents the served bot created from Alertmanager webhooks and resolved from /ops; the thread is
read back from the Slack emulator with conversations.replies. Every bad input is one line on
stderr with its exit status, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import select

from bot.db.engine import reading
from bot.db.models import TimelineEntry
from bot.incidents_cli import read_thread, save_files, token_may_go_to
from bot.sandbox import slack_signing
from bot.slack.gateway import SlackGateway, make_web_client
from tests.conftest import SIGNING_SECRET, WEBHOOK_TOKEN, make_settings, serve_on
from tests.payloads import am_alert, am_body

POLICY = """
id: test
approver_groups:
  oncall: {users: [U0ALICE, U0BOB]}
incident_managers: [oncall]
"""
RESOLUTION_NOTE = "rolled back the config"


@pytest.fixture
def bot(database_url, slack, engine, tmp_path):  # noqa: F811 - `engine` migrates the database
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "test.yaml").write_text(POLICY)
    with ExitStack() as stack:
        yield serve_on(stack, make_settings(database_url, slack, policies_dir=policies, postmortem_grace_seconds=0),
                       slack)


def opsbot(*args: str, database_url: str, slack=None) -> subprocess.CompletedProcess:
    """`python -m bot ARGS` with only the OPSBOT_* variables a deployment would set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSBOT_") and k != "DATABASE_URL"}
    env["OPSBOT_DATABASE_URL"] = database_url
    if slack is not None:
        env.update(OPSBOT_SLACK_BOT_TOKEN=slack.bot_token, OPSBOT_SLACK_API_URL=slack.base_url,
                   OPSBOT_SLACK_SIGNING_SECRET=SIGNING_SECRET, OPSBOT_WEBHOOK_TOKEN=WEBHOOK_TOKEN)
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, timeout=60, env=env)


def timeline_kinds(bot, incident_id: int) -> list[str]:
    with reading(bot.runtime.factory) as session:
        return list(session.execute(select(TimelineEntry.kind).where(TimelineEntry.incident_id == incident_id)
                                    .order_by(TimelineEntry.seq)).scalars())


def two_incidents_one_resolved(bot, slack) -> dict:
    """INC-1 (crash loop, resolved from /ops with its postmortem file in the thread) and INC-2
    (a second alert group, still open). Returns INC-1's card."""
    assert bot.post_webhook("alertmanager", am_body([am_alert(pod="a")])).status_code == 202
    card = slack.wait_for(lambda emu: next((m for m in emu.messages() if "thread_ts" not in m
                                            and "INC-1" in m.get("text", "")), None), timeout=15)
    slack.wait_for(lambda _: "investigation.told" in timeline_kinds(bot, 1), timeout=15)
    body, headers = slack_signing.slash_command(SIGNING_SECRET, text=f"resolve INC-1 {RESOLUTION_NOTE}",
                                                user_id="U0ALICE", user_name="alice",
                                                trigger_id=slack_signing.new_trigger_id())
    assert requests.post(f"{bot.url}/slack/commands", data=body, headers=headers, timeout=10).status_code == 200
    slack.wait_for(lambda emu: any(f["filename"].startswith("INC-1-postmortem") for f in emu.files), timeout=20)
    assert bot.post_webhook("alertmanager", am_body([am_alert("KubeNodeNotReady", node="n1")],
                                                       group_key='{}:{alertname="KubeNodeNotReady"}')).status_code == 202
    slack.wait_for(lambda emu: any("INC-2" in m.get("text", "") for m in emu.messages()), timeout=15)
    return card


def assert_one_line_error(run: subprocess.CompletedProcess, code: int, words: str) -> None:
    assert run.returncode == code, run.stderr
    assert run.stdout == "" and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("opsbot: ") and words in run.stderr, run.stderr


def test_listing_timeline_and_bad_input_against_the_bots_database(bot, slack, database_url):
    two_incidents_one_resolved(bot, slack)

    listing = opsbot("incidents", database_url=database_url)
    assert listing.returncode == 0, listing.stderr
    newest, oldest = listing.stdout.splitlines()
    assert newest.startswith("INC-2  open") and "KubeNodeNotReady" in newest and "resolved -" in newest
    assert oldest.startswith("INC-1  resolved") and "resolved 20" in oldest and "alerts 1" in oldest
    only_open = opsbot("incidents", "--open", "--limit", "5", database_url=database_url)
    assert only_open.returncode == 0 and [line.split()[0] for line in only_open.stdout.splitlines()] == ["INC-2"]
    assert opsbot("incidents", "--limit", "1", database_url=database_url).stdout.splitlines() == [newest]
    alike = opsbot("incidents", "similar", "INC-2", database_url=database_url)  # the subcommand still works
    assert alike.returncode == 0 and alike.stdout.startswith("INC-2: "), alike.stderr

    timeline = opsbot("timeline", "INC-1", database_url=database_url)
    assert timeline.returncode == 0, timeline.stderr
    lines = timeline.stdout.splitlines()
    kinds = timeline_kinds(bot, 1)
    assert [line.split()[2] for line in lines] == kinds and "incident.resolved" in kinds
    assert [int(line.split()[0]) for line in lines] == list(range(1, len(lines) + 1))
    resolved = next(line for line in lines if line.split()[2] == "incident.resolved")
    assert RESOLUTION_NOTE in resolved
    as_json = json.loads(opsbot("timeline", "2", "--json", database_url=database_url).stdout)
    assert as_json["incident"] == "INC-2" and [e["kind"] for e in as_json["entries"]] == timeline_kinds(bot, 2)
    assert all(set(entry) == {"seq", "at", "kind", "actor", "data"} for entry in as_json["entries"])

    assert_one_line_error(opsbot("timeline", "INC-x", database_url=database_url), 2, "not an incident reference")
    assert_one_line_error(opsbot("timeline", "INC-99", database_url=database_url), 2, "no incident INC-99")
    assert_one_line_error(opsbot("thread", "INC-99", database_url=database_url, slack=slack), 2, "no incident INC-99")
    assert_one_line_error(opsbot("thread", "INC-1", database_url=database_url), 2, "no Slack is configured")
    assert_one_line_error(opsbot("incidents", "--limit", "0", database_url=database_url), 2, "--limit")


def test_the_thread_is_printed_from_slack_and_its_files_saved(bot, slack, database_url, tmp_path):
    card = two_incidents_one_resolved(bot, slack)
    shown = opsbot("thread", "INC-1", database_url=database_url, slack=slack)
    assert shown.returncode == 0, shown.stderr
    replies = slack.thread(card["channel"], card["ts"])[1:]
    assert "INC-1 · KubePodCrashLooping" in shown.stdout.splitlines()[0] and f"Resolved by alice: {RESOLUTION_NOTE}" in shown.stdout
    assert shown.stdout.count("\n  │ ") >= len(replies) and "[file: " in shown.stdout
    assert any(call.args.get("ts") == card["ts"] for call in slack.calls_to("conversations.replies"))

    # Files: the emulator names its files at a slack.com host it does not serve, so a loopback
    # file host stands in for files.slack.com, serving the bytes the bot uploaded to the emulator
    # only to a request bearing the bot token.
    messages = read_thread(SlackGateway(make_web_client(slack.bot_token, slack.base_url)), card["channel"], card["ts"])
    shared = [file for message in messages for file in message.get("files") or []]
    assert any(file["name"].startswith("INC-1-postmortem") for file in shared)
    with file_host(slack) as (base, authorizations):
        for file in shared:
            file["url_private"] = base + urlsplit(file["url_private"]).path
        folder = tmp_path / "files"
        folder.mkdir()
        assert save_files(messages, folder, slack.bot_token, slack.base_url) == []
    assert authorizations and set(authorizations) == {f"Bearer {slack.bot_token}"}
    for file in shared:
        saved = folder / f"{file['id']}-{file['name']}"
        assert saved.read_bytes() == slack.file_data(file["id"])[1]
    postmortem = next(path for path in folder.iterdir() if "postmortem" in path.name)
    assert RESOLUTION_NOTE in postmortem.read_text()


def test_the_token_never_goes_to_a_foreign_host(tmp_path):
    api = "http://127.0.0.1:5555/api/"
    assert token_may_go_to("https://files.slack.com/files-pri/T1-F1/a.txt", None)
    assert token_may_go_to("http://127.0.0.1:6000/files-pri/T1-F1/a.txt", api)
    assert not token_may_go_to("http://files.slack.com/files-pri/T1-F1/a.txt", None)  # not over plain HTTP
    assert not token_may_go_to("https://files.slack.com.evil.example/a.txt", None)
    assert not token_may_go_to("http://127.0.0.1:6000/a.txt", None)
    foreign = [{"files": [{"id": "F1", "name": "../../etc/passwd", "url_private": "https://evil.example/x"}]}]
    (problem,) = save_files(foreign, tmp_path, "xoxb-secret", api)
    assert "evil.example is not a Slack host" in problem and list(tmp_path.iterdir()) == []


def test_a_database_without_schema_is_one_line_and_exit_1(tmp_path):
    run = opsbot("incidents", database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    assert_one_line_error(run, 1, "opsbot db upgrade")


class file_host:  # noqa: N801 - used as a context manager, like a function
    """A loopback HTTP server serving the emulator's uploads at /files-pri/<team>-<file id>/<name>
    to requests with the bot token; yields (base URL, the Authorization headers it saw)."""

    def __init__(self, slack):
        self.slack = slack
        self.authorizations: list[str] = []

    def __enter__(self):
        slack, seen = self.slack, self.authorizations

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                seen.append(self.headers.get("Authorization", ""))
                file_id = Path(self.path).parent.name.split("-")[-1]
                found = slack.file_data(file_id)
                if self.headers.get("Authorization") != f"Bearer {slack.bot_token}" or found is None:
                    self.send_response(403 if found else 404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(found[1])))
                self.end_headers()
                self.wfile.write(found[1])

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_port}", seen

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()
