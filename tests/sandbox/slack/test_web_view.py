"""The emulator's web view: mrkdwn and Block Kit rendered safely, files served, and people's acts
delivered signed to a real Bolt app, as Slack delivers them.

The receiving end is a real `slack_bolt.App` served over HTTP (its own signature check, payload
parsing and ack semantics), talking back to the emulator with the real `slack_sdk` client.
"""

from __future__ import annotations

import json
import threading
import time
from html.parser import HTMLParser

import pytest
import requests
from flask import Flask, request
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_sdk import WebClient

from bot.sandbox.slack_emulator.web import WebView
from bot.sandbox.slack_emulator.web_mrkdwn import LINK_SCHEMES, mrkdwn_to_html
from bot.web import HttpServer

SECRET = "web-view-test-signing-secret"
ALLOWED_TAGS = {"a", "b", "i", "s", "code", "pre", "blockquote", "br", "span"}
HOSTILE = [
    "<script>alert(1)</script>",
    "&lt;img src=x onerror=alert(1)&gt;",
    "<javascript:alert(1)|click me>",
    '<https://ok.example/?a=1&amp;b="2"|label <b>bold</b>>',
    '<@U0NOBODY|"><script>alert(1)</script>>',
    "```</pre><script>x()</script>```",
    "`<b onclick=x()>`",
    "*<img src=x onerror=alert(1)>*",
    '_" onmouseover="alert(1)_',
    "<!subteam^S0X|<svg onload=alert(1)>>",
    "\x00<\x00script>",
    "<data:text/html,<script>alert(1)</script>|x>",
]


class TagAudit(HTMLParser):
    """Every tag and attribute in a fragment."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def audit(fragment: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = TagAudit()
    parser.feed(fragment)
    return parser.tags


# -- mrkdwn ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_mrkdwn_never_becomes_markup(text):
    html = str(mrkdwn_to_html(text, users={"U0ALICE": "alice"}))
    for tag, attrs in audit(html):
        assert tag in ALLOWED_TAGS, (text, html)
        assert not any(name.startswith("on") for name in attrs), (text, html)
        if tag == "a":
            assert attrs["href"].lower().startswith(LINK_SCHEMES), (text, html)
            assert set(attrs) == {"href", "target", "rel"}
        elif tag == "span":
            assert set(attrs) == {"class"}
        else:
            assert attrs == {}, (text, html)
    assert "<script" not in html and "\x00" not in html


def test_mrkdwn_formats_like_slack():
    html = str(mrkdwn_to_html(
        "*bold* _it_ ~gone~ `a<b` :white_check_mark: <@U0ALICE> <!subteam^S0ONCALL> <#C0OPSBOT>\n"
        "&gt; quoted &amp;lt;\n<https://x.example/p?a=1&amp;b=2|the &lt;label&gt;> snake_case_name 2*3*4",
        users={"U0ALICE": "alice"}, usergroups={"S0ONCALL": "oncall"}, channels={"C0OPSBOT": "incidents"}))
    assert "<b>bold</b> <i>it</i> <s>gone</s> <code>a&lt;b</code> ✅" in html
    assert '<span class="mention user">@alice</span>' in html and '<span class="mention group">@oncall</span>' in html
    assert '<span class="mention channel">#incidents</span>' in html
    assert "<blockquote>quoted &amp;lt;</blockquote>" in html, "Slack's entities are undone once, then escaped"
    assert '<a href="https://x.example/p?a=1&amp;b=2"' in html and ">the &lt;label&gt;</a>" in html
    assert "snake_case_name 2*3*4" in html, "markers inside words are text"


def test_code_and_pre_are_verbatim():
    html = str(mrkdwn_to_html("```line *1*\n<@U0ALICE> _x_```"))
    assert html == "<pre>line *1*\n&lt;@U0ALICE&gt; _x_</pre>"
    assert str(mrkdwn_to_html("<javascript:alert(1)|x>")) == "&lt;javascript:alert(1)|x&gt;"


# -- a real Bolt app behind the view ------------------------------------------------------------


class BoltBot:
    """A Bolt app on loopback recording what it receives; `answers` scripts its acks."""

    def __init__(self, emu) -> None:
        self.client = WebClient(token=emu.bot_token, base_url=emu.base_url, timeout=10)
        self.app = App(token=emu.bot_token, signing_secret=SECRET, client=self.client,
                       token_verification_enabled=False)
        self.received: list[dict] = []
        self.view_answers: list[dict] = []
        self._cond = threading.Condition()
        app = self.app

        @app.action("approve")
        @app.action("severity")
        def clicked(ack, body):
            ack()
            self._record(body)

        @app.action("reason")
        def asks_reason(ack, body, client):
            ack()
            client.views_open(trigger_id=body["trigger_id"], view=REASON_VIEW)
            self._record(body)

        @app.view("reason_view")
        def submitted(ack, body):
            ack(**(self.view_answers.pop(0) if self.view_answers else {}))
            self._record(body)

        @app.command("/ops")
        def ops(ack, command):
            ack(response_type="ephemeral", text=f"*status* for <@{command['user_id']}>: all <quiet> & calm")
            self._record(command)

        @app.event("app_mention")
        def mentioned(event):
            self._record(event)

        flask = Flask("bolt-under-test")
        handler = SlackRequestHandler(app)
        for path in ("/slack/events", "/slack/interactions", "/slack/commands"):
            flask.add_url_rule(path, path, lambda: handler.handle(request), methods=["POST"])
        self.server = HttpServer(flask, "127.0.0.1", 0, threads=4)
        self.url = self.server.start()

    def _record(self, body: dict) -> None:
        with self._cond:
            self.received.append(body)
            self._cond.notify_all()

    def wait(self, count: int, seconds: float = 10) -> list[dict]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.received) >= count, seconds), self.received
            return list(self.received)


REASON_VIEW = {"type": "modal", "callback_id": "reason_view", "title": {"type": "plain_text", "text": "Why <not>?"},
               "submit": {"type": "plain_text", "text": "Reject"}, "close": {"type": "plain_text", "text": "Cancel"},
               "blocks": [{"type": "input", "block_id": "reason", "label": {"type": "plain_text", "text": "Reason"},
                           "element": {"type": "plain_text_input", "action_id": "text", "multiline": True}}]}
BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": "INC-9 <script>alert(1)</script>"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Cause:* <javascript:x()|bad> &lt;img onerror=x&gt;"},
     "fields": [{"type": "mrkdwn", "text": "*Pod*\n`api-0`"}]},
    {"type": "actions", "block_id": "steps", "elements": [
        {"type": "button", "action_id": "approve", "style": "primary", "value": "7",
         "text": {"type": "plain_text", "text": "Approve \"><img src=x onerror=alert(1)>"}},
        {"type": "button", "action_id": "reason", "style": "danger", "value": "7",
         "text": {"type": "plain_text", "text": "Reject"}},
        {"type": "static_select", "action_id": "severity", "placeholder": {"type": "plain_text", "text": "Severity"},
         "options": [{"text": {"type": "plain_text", "text": "High</option><script>"}, "value": "9:high"}]}]},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "approvers: <!subteam^S0ONCALL>"}]},
    {"type": "divider"},
]


@pytest.fixture
def world(emu):
    bot = BoltBot(emu)
    view = WebView(emu)
    emu.mount_web(view)
    view.connect(bot.url, SECRET)
    root = emu.base_url.removesuffix("/api/")
    yield emu, bot, view, root
    bot.server.stop()


def act(root: str, path: str, **body) -> requests.Response:
    return requests.post(f"{root}{path}", json={"viewer": "U0ALICE", "channel": "C0OPSBOT", **body}, timeout=15)


def state(root: str, viewer: str = "U0ALICE", **query) -> dict:
    return requests.get(f"{root}/web/state", params={"viewer": viewer, **query}, timeout=10).json()


def test_the_page_shows_the_blocks_escaped_and_clickable(world):
    emu, bot, _view, root = world
    posted = bot.client.chat_postMessage(channel="C0OPSBOT", text="INC-9", blocks=BLOCKS)
    shown = state(root)
    html = shown["channel_html"]
    tags = audit(html)
    assert not [t for t, attrs in tags if t == "script" or any(a.startswith("on") for a in attrs)], html
    assert "INC-9 &lt;script&gt;alert(1)&lt;/script&gt;" in html and "<b>Cause:</b>" in html
    assert "&lt;javascript:x()|bad&gt; &lt;img onerror=x&gt;" in html and "@oncall" in html
    approve = next(attrs for t, attrs in tags if t == "button" and attrs.get("data-action") == "approve")
    assert approve["data-ts"] == posted["ts"] and approve["data-block"] == "steps" and "primary" in approve["class"]
    assert "High&lt;/option&gt;&lt;script&gt;" in html
    page = requests.get(f"{root}/", timeout=10)
    assert "script-src 'self'" in page.headers["Content-Security-Policy"] and 'id="viewer"' in page.text
    assert state(root, since=shown["version"]) == {"version": shown["version"], "same": True}


def test_a_click_reaches_the_bot_signed_as_the_chosen_user(world):
    emu, bot, _view, root = world
    ts = bot.client.chat_postMessage(channel="C0OPSBOT", text="INC-9", blocks=BLOCKS)["ts"]
    assert act(root, "/web/click", viewer="U0BOB", ts=ts, block_id="steps", action_id="approve").json()["ok"]
    assert act(root, "/web/click", ts=ts, block_id="steps", action_id="severity", choice="9:high").json()["ok"]
    click, choice = bot.wait(2)
    assert click["user"]["id"] == "U0BOB" and click["user"]["username"] == "bob"
    assert click["actions"][0]["value"] == "7" and click["container"]["message_ts"] == ts
    assert choice["user"]["id"] == "U0ALICE" and choice["actions"][0]["selected_option"]["value"] == "9:high"
    assert act(root, "/web/click", ts=ts, block_id="steps", action_id="severity", choice="nope").status_code == 404
    assert act(root, "/web/click", viewer="U0MALLORY", ts=ts, block_id="steps", action_id="approve").status_code == 400
    time.sleep(0.3)
    assert len(bot.received) == 2, "nothing reaches the bot for an unknown option or user"


def test_a_modal_opened_by_a_click_is_shown_to_the_clicker_and_submitted_with_its_values(world):
    emu, bot, _view, root = world
    ts = bot.client.chat_postMessage(channel="C0OPSBOT", text="INC-9", blocks=BLOCKS)["ts"]
    act(root, "/web/click", ts=ts, block_id="steps", action_id="reason")
    bot.wait(1)
    modal = emu.wait_for(lambda _: state(root)["modal"], timeout=10)
    assert "Why &lt;not&gt;?" in modal["html"] and 'name="reason/text"' in modal["html"]
    assert state(root, viewer="U0BOB")["modal"] is None, "a modal is shown to the person whose trigger opened it"
    view_id = emu.views[0]["id"]
    bot.view_answers.append({"response_action": "errors", "errors": {"reason": "Say why <please>"}})
    assert act(root, "/web/view", view_id=view_id, values={"reason/text": "first"}).json()["ok"]
    assert "Say why &lt;please&gt;" in emu.wait_for(lambda _: state(root)["modal"], timeout=10)["html"]
    assert act(root, "/web/view", view_id=view_id, values={"reason/text": "bad image tag"}).json()["ok"]
    first, second = bot.wait(3)[1:]
    assert first["type"] == second["type"] == "view_submission" and second["user"]["id"] == "U0ALICE"
    assert second["view"]["state"]["values"] == {"reason": {"text": {"type": "plain_text_input", "value": "bad image tag"}}}
    assert state(root)["modal"] is None, "an empty ack closes the modal"


def test_a_slash_command_answer_is_shown_to_the_typist_only(world):
    emu, bot, _view, root = world
    assert act(root, "/web/message", viewer="U0BOB", text="/ops status").json()["ok"]
    (command,) = bot.wait(1)
    assert (command["command"], command["text"], command["user_id"]) == ("/ops", "status", "U0BOB")
    html = state(root, viewer="U0BOB")["channel_html"]
    assert "Only visible to you" in html and "<b>status</b> for" in html and "all &lt;quiet&gt; &amp; calm" in html
    assert "Only visible to you" not in state(root, viewer="U0ALICE")["channel_html"]


def test_a_thread_message_is_posted_and_a_mention_of_the_bot_is_delivered(world):
    emu, bot, _view, root = world
    root_ts = bot.client.chat_postMessage(channel="C0OPSBOT", text="INC-9 card")["ts"]
    assert act(root, "/web/message", text="just a note <b>", thread_ts=root_ts).json()["delivered"] is False
    assert act(root, "/web/message", text="@opsbot why? cc @bob", thread_ts=root_ts).json()["ok"]
    (event,) = bot.wait(1)
    assert event["type"] == "app_mention" and event["thread_ts"] == root_ts and event["user"] == "U0ALICE"
    assert event["text"] == "<@U0OPSBOT> why? cc <@U0BOB>"
    replies = emu.thread("C0OPSBOT", root_ts)[1:]
    assert [r["text"] for r in replies] == ["just a note &lt;b&gt;", "<@U0OPSBOT> why? cc <@U0BOB>"]
    thread_html = state(root, thread=root_ts)["thread_html"]
    assert "just a note &amp;lt;b&amp;gt;" not in thread_html and "just a note &lt;b&gt;" in thread_html


def test_files_are_served_images_inline_everything_else_as_a_download(world):
    emu, bot, _view, root = world
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    bot.client.files_upload_v2(channel="C0OPSBOT", file_uploads=[
        {"content": png, "filename": "inc-9-graph.png", "title": "graph"},
        {"content": b"<svg onload=alert(1)></svg>", "filename": "evil.svg", "title": "evil"},
        {"content": b"log line <script>", "filename": "evidence.txt", "title": "evidence <b>"}])
    html = emu.wait_for(lambda _: "evidence.txt" in (s := state(root))["channel_html"] and s["channel_html"], timeout=10)
    links = {attrs.get("download") or attrs.get("alt"): attrs.get("href") or attrs.get("src")
             for t, attrs in audit(html) if t in ("a", "img") and (attrs.get("download") or attrs.get("alt"))}
    image = requests.get(root + links["graph"], timeout=10)
    assert image.content == png and image.headers["Content-Type"] == "image/png"
    for name in ("evil.svg", "evidence.txt"):
        got = requests.get(root + links[name], timeout=10)
        assert got.headers["Content-Type"] == "application/octet-stream"
        assert got.headers["Content-Disposition"].startswith("attachment") and "sandbox" in got.headers[
            "Content-Security-Policy"]
    assert "evidence &lt;b&gt;" in html
    assert requests.get(f"{root}/web/files/F0NOPE/x.png", timeout=10).status_code == 404


def test_only_loopback_hosts_and_json_posts_are_accepted(world):
    emu, bot, _view, root = world
    assert requests.get(f"{root}/", headers={"Host": "evil.example"}, timeout=10).status_code == 403
    form = requests.post(f"{root}/web/message", data={"viewer": "U0ALICE", "text": "/ops status"}, timeout=10)
    assert form.status_code == 415
    assert requests.get(f"{root}/web/static/../web.py", timeout=10).status_code == 404
    assert requests.post(f"{root}/api/auth.test", data={"token": emu.bot_token}, timeout=10).json()["ok"], \
        "the Web API is untouched"
    assert bot.received == []
    assert json.loads(requests.get(f"{root}/web/state", timeout=10).text)["connected"] is True
