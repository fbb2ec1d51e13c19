"""`python -m bot serve` as a user runs it, in a subprocess, for tests that kill it (SIGKILL:
no handler runs, nothing is flushed or released by the process itself) and start it again.

The settings come from the environment the test gives (the caller's own `OPSBOT_*` and
`DATABASE_URL` are left out); the port is chosen once, so a restarted server answers at the
same URL. Each run's output goes to its own file under `log_dir`, shown when it fails to start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from sqlalchemy import update

from bot.db.models import Incident, Investigation
from bot.sandbox.promstack import free_port
from tests.concurrency import eventually
from tests.conftest import WEBHOOK_TOKEN

READY_SECONDS = 60


class ServerProcess:
    def __init__(self, env: dict[str, str], log_dir: Path, name: str = "serve"):
        self.env, self._log_dir, self._name = env, log_dir, name
        self._process: subprocess.Popen | None = None
        self._runs = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        self.launch()
        return self.wait_ready()

    def launch(self) -> None:
        """Start the process without waiting for it (several replicas can start together)."""
        self._runs += 1
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OPSBOT_") and k != "DATABASE_URL"}
        with (self._log_dir / f"{self._name}-{self._runs}.log").open("w") as log:
            self._process = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(self.port)],
                                             env={**clean, **self.env}, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> str:
        def ready() -> bool:
            assert self._process is not None and self._process.poll() is None, f"the server exited:\n{self.logs()}"
            try:
                return requests.get(f"{self.url}/readyz", timeout=1).status_code == 200
            except requests.RequestException:  # not listening yet, or too busy starting to answer in time
                return False
        eventually(ready, timeout=READY_SECONDS, interval=0.1)
        return self.url

    def kill(self) -> None:
        """SIGKILL, as a crash."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self._log_dir.glob(f"{self._name}-*.log")))

    def post_alerts(self, body: bytes) -> None:
        response = requests.post(f"{self.url}/webhooks/alertmanager", data=body, timeout=10,
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {WEBHOOK_TOKEN}"})
        assert response.status_code == 202, response.text


def leases_run_out(engine) -> None:
    """The time that lets a dead process's claims lapse (`OPSBOT_CLAIM_LEASE_SECONDS`, a minute
    at least: an incident's Slack write slot, an investigation), passed at once: every such lease
    it held now ends in the past. Step leases are left to lapse on their own (they are short in
    these tests)."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    with engine.begin() as connection:
        connection.execute(update(Incident).where(Incident.card_lease_until.is_not(None))
                           .values(card_lease_until=past))
        connection.execute(update(Investigation).where(Investigation.lease_until.is_not(None))
                           .values(lease_until=past))
