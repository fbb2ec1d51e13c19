"""The WSGI application and the production server (waitress, threaded).

Invariants: a probe (`/readyz`, polled every few seconds) leaves no log line when all is well;
every response's Content-Type names its charset at most once.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask, jsonify
from waitress.server import create_server
from werkzeug.exceptions import HTTPException

from bot.runtime import Runtime

log = logging.getLogger(__name__)

# Alembic's migration context announces itself at INFO each time it is configured, which
# `/readyz` does on every probe (it reads the schema revision): two lines per probe, forever.
ALEMBIC_LOGGER = "alembic.runtime.migration"
ALEMBIC_CHATTER = ("Context impl ", "Will assume ")


class _DropAlembicChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno <= logging.INFO and str(record.msg).startswith(ALEMBIC_CHATTER))


_ALEMBIC_FILTER = _DropAlembicChatter()


def quiet_probe_logging() -> None:
    """Drop Alembic's per-connection chatter (idempotent: the filter is added once)."""
    logger = logging.getLogger(ALEMBIC_LOGGER)
    if _ALEMBIC_FILTER not in logger.filters:
        logger.addFilter(_ALEMBIC_FILTER)


def one_charset(content_type: str) -> str:
    """`content_type` with any repeated `charset` parameter dropped (Flask appends one to a
    text/* mimetype that already names it, as prometheus_client's does)."""
    kept, seen = [], False
    for part in content_type.split(";"):
        is_charset = part.strip().lower().startswith("charset=")
        if not (is_charset and seen):
            kept.append(part)
        seen = seen or is_charset
    return ";".join(kept)


def create_web_app(runtime: Runtime, with_slack: bool = True) -> Flask:
    from handlers.deploy_check import deploy_check_blueprint
    from handlers.health import health_blueprint
    from handlers.webhooks import webhooks_blueprint

    app = Flask("opsbot")
    app.config["MAX_CONTENT_LENGTH"] = runtime.settings.max_body_bytes
    quiet_probe_logging()
    runtime.metrics.watch_weeks(runtime.factory, runtime.clock)  # /metrics: the week's numbers
    app.register_blueprint(health_blueprint(runtime))
    app.register_blueprint(webhooks_blueprint(runtime))
    app.register_blueprint(deploy_check_blueprint(runtime))
    if with_slack:
        from handlers.slack.app import build_bolt_app
        from handlers.slack.routes import slack_blueprint

        app.register_blueprint(slack_blueprint(build_bolt_app(runtime), runtime))

    @app.after_request
    def single_charset(response):
        if response.content_type and response.content_type.lower().count("charset=") > 1:
            response.headers["Content-Type"] = one_charset(response.content_type)
        return response

    @app.errorhandler(404)
    def not_found(_error):
        return jsonify(error="no such route"), 404

    @app.errorhandler(405)
    def wrong_method(_error):
        return jsonify(error="method not allowed"), 405

    @app.errorhandler(413)
    def too_large(_error):
        return jsonify(error=f"body larger than {runtime.settings.max_body_bytes} bytes"), 413

    @app.errorhandler(Exception)
    def internal(error):
        if isinstance(error, HTTPException):
            return jsonify(error=error.description), error.code
        log.exception("unhandled error in a request")
        return jsonify(error="internal error"), 500

    return app


class HttpServer:
    """waitress serving the app on host:port (port 0 picks a free one).

    Connections cannot starve the server (issue 12): a connection with no request in progress
    that sends nothing for `idle_timeout_seconds` is closed (waitress' `channel_timeout`, checked
    every second instead of every 30), and up to `connection_limit` connections are served at
    once (past it, new ones wait in the kernel's backlog until idle ones are closed). Sockets are
    watched with poll(), not select(), which cannot watch more than 1024 descriptors. Limit: a
    client that keeps trickling bytes of an unfinished request keeps its connection; in front
    of the internet, put the bot behind an ingress that bounds request time.
    """

    def __init__(self, app: Flask, host: str, port: int, threads: int, *, connection_limit: int = 1000,
                 idle_timeout_seconds: int = 10):
        self._server = create_server(app, host=host, port=port, threads=threads, clear_untrusted_proxy_headers=True,
                                     ident="opsbot", connection_limit=connection_limit,
                                     channel_timeout=idle_timeout_seconds, cleanup_interval=1,
                                     asyncore_use_poll=True)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self._server.effective_host}:{self._server.effective_port}"

    def serve_forever(self) -> None:
        """Serve in the calling thread until SystemExit/KeyboardInterrupt (see `opsbot serve`)."""
        self._server.run()

    def close(self) -> None:
        self._server.close()

    def start(self) -> str:
        """Serve in a background thread (tests, the demo); `stop()` ends it."""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run_in_thread, name="opsbot-http", daemon=True)
        self._thread.start()
        return self.url

    def _run_in_thread(self) -> None:
        try:
            self._server.run()
        except (OSError, ValueError):
            if not self._stopping.is_set():  # closing the sockets under select() ends the loop
                raise

    def stop(self) -> None:
        self._stopping.set()
        self._server.close()
        if self._thread is not None:
            self._thread.join(5)
