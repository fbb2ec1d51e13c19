"""Idle connections cannot freeze the HTTP server (issue 12, item 5).

The attack: ~110 TCP connections that send nothing. Before the fix waitress served 100
connections at once and closed idle ones only after 120 s, so a valid webhook waited two
minutes for an answer.
"""

from __future__ import annotations

import socket
from contextlib import ExitStack
from urllib.parse import urlsplit

import requests

from bot.runtime import build_runtime
from bot.web import HttpServer, create_web_app
from tests.conftest import WEBHOOK_TOKEN, make_settings
from tests.payloads import am_alert, am_body


def idle_connections(stack: ExitStack, url: str, count: int) -> list[socket.socket]:
    """`count` connected sockets that never send a byte."""
    parts = urlsplit(url)
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        stack.callback(sock.close)
        sockets.append(sock)
    return sockets


def post_alert(url: str, timeout_seconds: float) -> requests.Response:
    return requests.post(f"{url}/webhooks/alertmanager", data=am_body([am_alert()]), timeout=timeout_seconds,
                         headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"})


def test_a_webhook_is_answered_while_110_connections_sit_idle(bot):
    with ExitStack() as stack:
        idle_connections(stack, bot.url, 110)
        assert post_alert(bot.url, timeout_seconds=8).status_code == 202


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(database_url, slack, engine):
    runtime = build_runtime(make_settings(database_url, slack))
    server = HttpServer(create_web_app(runtime), "127.0.0.1", 0, threads=2, idle_timeout_seconds=1)
    url = server.start()
    try:
        with ExitStack() as stack:
            (sock,) = idle_connections(stack, url, 1)
            sock.settimeout(15)
            assert sock.recv(1) == b"", "the server closes the idle connection"
    finally:
        server.stop()
        runtime.close()


def test_past_the_connection_limit_a_webhook_waits_only_for_idle_ones_to_be_closed(database_url, slack, engine):
    runtime = build_runtime(make_settings(database_url, slack))
    server = HttpServer(create_web_app(runtime), "127.0.0.1", 0, threads=2, connection_limit=10,
                        idle_timeout_seconds=1)
    url = server.start()
    try:
        with ExitStack() as stack:
            idle_connections(stack, url, 15)
            assert post_alert(url, timeout_seconds=15).status_code == 202
    finally:
        server.stop()
        runtime.close()
