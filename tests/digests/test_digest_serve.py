"""`opsbot serve` with a digests file: the schedules start with the server, a slot missed while
it was down is posted once on start, and a restart does not post it again. Two servers on one
database share the slot (PostgreSQL in CI: `DATABASE_URL`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import requests

from bot.sandbox.kube import KubeApiServer, SandboxCluster
from bot.sandbox.promstack import free_port
from tests.conftest import SIGNING_SECRET, WEBHOOK_TOKEN
from tests.digests.test_drift_build import MANIFESTS, NOW, shop_drifted
from tests.test_cli import opsbot

CHANNEL = "C0PLATFORM"


def serve(env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPSBOT_") and k != "DATABASE_URL"}
    process = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(port)],
                               env={**clean, **env}, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process, port
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError(f"serve did not become ready: {process.communicate(timeout=5)[1][-2000:]}")


def stop(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    return stderr


def digests(slack) -> list[dict]:
    return [m for m in slack.messages(CHANNEL) if "Drift digest" in json.dumps(m.get("blocks"))]


def test_serve_posts_a_missed_slot_once_across_restarts(tmp_path, slack, database_url, engine):  # noqa: F811
    slack.add_channel(CHANNEL, "platform")
    schedule = tmp_path / "digests.yaml"
    schedule.write_text("schedules:\n  - {digest: drift, channel: C0PLATFORM, cron: '* * * * *', timezone: UTC}\n"
                        f"drift: {{sources: [{{path: {MANIFESTS / 'shop'}, namespace: shop}}]}}\n")
    cluster = SandboxCluster(now=NOW)
    cluster.load(shop_drifted())
    with KubeApiServer(cluster) as kube:
        env = {"OPSBOT_DATA_DIR": str(tmp_path), "OPSBOT_DATABASE_URL": database_url,
               "OPSBOT_SLACK_API_URL": slack.base_url, "OPSBOT_SLACK_BOT_TOKEN": slack.bot_token,
               "OPSBOT_SLACK_SIGNING_SECRET": SIGNING_SECRET, "OPSBOT_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
               "OPSBOT_DIGESTS_FILE": str(schedule), "OPSBOT_KUBE_MODE": "url", "OPSBOT_KUBE_API_URL": kube.base_url,
               "OPSBOT_INTAKE_PROCESSES": "0", "OPSBOT_LOG_FORMAT": "text"}
        first, _ = serve(env)
        second, _ = serve(env)  # a second replica on the same database
        try:
            slack.wait_for(digests, timeout=30)
            time.sleep(2)  # both replicas have run their catch-up by now
        finally:
            logs = stop(first) + stop(second)
        posted = digests(slack)
        slot_of = {m["ts"]: m.get("metadata", {}).get("event_payload", {}).get("slot") for m in posted}
        assert all(slot_of.values()) and len(set(slot_of.values())) == len(posted), f"a slot posted twice: {slot_of}"
        assert "digests scheduled: drift to C0PLATFORM at '* * * * *' UTC" in logs
        assert "Traceback" not in logs
        assert "Changed by hand" in json.dumps(posted[0]["blocks"])
    assert opsbot("version").returncode == 0
