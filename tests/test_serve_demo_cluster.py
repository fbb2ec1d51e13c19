"""`opsbot serve --demo-cluster`: a plain serve with a sandbox cluster, Prometheus and the page,
driven by hand (webhooks sent by the person, clicks in the page) and stopped with Ctrl-C."""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from slack_sdk import WebClient

from bot.sandbox.promstack import free_port
from bot.sandbox.slack_emulator import DEFAULT_CHANNEL_ID
from tests.test_cli import opsbot

EMULATOR_TOKEN = "xoxb-emulator"  # SlackEmulator's default bot token


class Lines:
    """The process's stderr, read line by line by a thread (a select() on the pipe would miss
    lines already read ahead into the stream's buffer)."""

    def __init__(self, process: subprocess.Popen):
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(process.stderr,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def _next(self, deadline: float) -> str | None:
        """The next line, None when the stream ended or `deadline` passed."""
        try:
            return self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            return None

    def until(self, pattern: str, timeout: float = 90) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (line := self._next(deadline)) is not None:
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matching {pattern!r}:\n" + "".join(self.seen[-40:]))

    def rest(self, timeout: float = 60) -> str:
        """Everything until the stream ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (line := self._next(deadline)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


def test_serve_with_a_demo_cluster_investigates_a_hand_sent_webhook_and_stops_on_ctrl_c(tmp_path):
    env = {"OPSBOT_DATA_DIR": str(tmp_path), "OPSBOT_LOG_FORMAT": "text", "OPSBOT_SLACK_EMULATOR_PORT": "0"}
    assert opsbot("db", "upgrade", env=env).returncode == 0
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPSBOT_") and k != "DATABASE_URL"}
    process = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(free_port()), "--demo-cluster"],
                               env={**clean, **env}, stderr=subprocess.PIPE, text=True)
    lines = Lines(process)
    try:
        page = lines.until(r"the channel, in a browser: (\S+)").group(1)
        script = Path(lines.until(r"send the scenario's alerts: sh (\S+)").group(1))
        text = script.read_text()
        token = re.search(r"Bearer ([^']+)'", text).group(1)
        body, url = re.search(r"--data-binary @(\S+) (\S+)", text).groups()
        answer = requests.post(url, data=Path(body).read_bytes(), timeout=10,
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert answer.status_code == 202, answer.text
        assert requests.post(url, data=Path(body).read_bytes(), timeout=10,
                             headers={"Content-Type": "application/json"}).status_code == 401, \
            "the webhook token it made up is required"
        slack = WebClient(token=EMULATOR_TOKEN, base_url=page + "api/")
        deadline, replies = time.monotonic() + 90, []
        while time.monotonic() < deadline and not any("Root cause" in json.dumps(r) for r in replies):
            history = slack.conversations_history(channel=DEFAULT_CHANNEL_ID)["messages"]
            if history:
                replies = slack.conversations_replies(channel=DEFAULT_CHANNEL_ID, ts=history[-1]["ts"])["messages"]
            time.sleep(0.5)
        rca = [r for r in replies if "Root cause" in json.dumps(r)]
        assert rca, "no RCA in the thread: " + json.dumps(replies)[:2000]
        assert "Root cause analysis of INC-1" in json.dumps(rca) and "orders-api" in json.dumps(rca), \
            "the RCA names the broken Deployment of the scenario"
        assert requests.get(page, timeout=10).status_code == 200  # the page people click in
        process.send_signal(signal.SIGINT)
        output = lines.rest()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert not script.parent.exists(), "the demo's work directory is removed on stop"
    assert (tmp_path / "slack-emulator.sqlite3").exists(), "the page's workspace is kept in the data directory"
