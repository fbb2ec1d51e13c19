"""Ingest benchmark: an Alertmanager-format alert storm against a real `opsbot serve`.

    .venv/bin/python bench/ingest.py [--alerts 20000] [--services 50] [--batch 100]

The server runs as its own process (`opsbot serve`, SQLite by default, PostgreSQL when
DATABASE_URL is set) with the Slack emulator standing in for Slack; this process fires the
storm and measures:
- webhook latency p50/p99 at a steady 1,000 alerts/s (batches of 50, 20 requests/s);
- sustained ingest: --alerts alerts across --services services (one grouping key each), with
  repeats and resolves mixed in, sent by 4 concurrent senders; alerts/s from the first request
  until the server has processed every delivery;
- incidents opened (must equal --services), Slack writes per incident and the most writes
  any incident got within a 5 s window, and the server's peak RSS (its intake children's
  included).
The server runs with its default intake layout (see `Settings.intake_process_count`); set
OPSBOT_INTAKE_PROCESSES to compare others (0: intake threads in the serving process). Storm
folding is off (OPSBOT_STORM_INCIDENTS=0): the bench checks one incident per grouping key.
It ends with one line: `bench: ingest alerts_per_s=N p50_ms=N p99_ms=N incidents=N
slack_writes_per_incident=N rss_mb=N`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.alerts.fingerprints import label_fingerprint  # noqa: E402
from bot.config import normalise_database_url  # noqa: E402
from bot.sandbox.promstack import free_port  # noqa: E402
from bot.sandbox.slack_emulator import SlackEmulator  # noqa: E402

TOKEN = "bench-webhook-token"
SENDERS = 4


def alert(service: int, index: int, status: str = "firing") -> dict:
    labels = {"alertname": "KubePodCrashLooping", "namespace": f"team-{service % 10}",
              "service": f"svc-{service:03d}", "pod": f"svc-{service:03d}-7d9f8b6c5d-{index:05d}",
              "severity": "warning", "cluster": "bench"}
    started = datetime(2026, 11, 21, 9, 0, tzinfo=UTC) + timedelta(seconds=index)
    return {"status": status, "labels": labels, "annotations": {"summary": "Pod is crash looping."},
            "startsAt": started.isoformat(), "endsAt": (started + timedelta(hours=1)).isoformat()
            if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.bench/graph", "fingerprint": label_fingerprint(labels)}


def payload(service: int, alerts: list[dict]) -> bytes:
    return json.dumps({
        "receiver": "opsbot", "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "alerts": alerts, "groupLabels": {"service": f"svc-{service:03d}"},
        "commonLabels": {"alertname": "KubePodCrashLooping", "service": f"svc-{service:03d}"},
        "commonAnnotations": {}, "externalURL": "http://alertmanager.bench:9093", "version": "4",
        "groupKey": f'{{}}:{{service="svc-{service:03d}"}}', "truncatedAlerts": 0,
    }).encode()


def storm(total: int, services: int, batch: int, seed: int = 7) -> list[bytes]:
    """Bodies for `total` alerts: mostly new firing alerts, ~15 % repeats, ~10 % resolves."""
    rng = random.Random(seed)
    seen: dict[int, list[int]] = defaultdict(list)
    bodies, sent = [], 0
    while sent < total:
        service = len(bodies) % services if len(bodies) < services else rng.randrange(services)
        alerts = []
        for _ in range(min(batch, total - sent)):
            roll = rng.random()
            if roll < 0.15 and seen[service]:
                alerts.append(alert(service, rng.choice(seen[service])))
            elif roll < 0.25 and seen[service]:
                alerts.append(alert(service, rng.choice(seen[service]), "resolved"))
            else:
                index = len(seen[service]) + 1000 * sent
                seen[service].append(index)
                alerts.append(alert(service, index))
        unique = {a["fingerprint"]: a for a in alerts}  # Alertmanager never repeats one in a batch
        bodies.append(payload(service, list(unique.values())))
        sent += len(alerts)
    return bodies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Server:
    def __init__(self, workdir: Path, database_url: str, slack_url: str):
        self.port = free_port()
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("OPSBOT_")},
                    "OPSBOT_DATA_DIR": str(workdir), "OPSBOT_DATABASE_URL": database_url,
                    "OPSBOT_SLACK_API_URL": slack_url, "OPSBOT_SLACK_BOT_TOKEN": "xoxb-bench",
                    "OPSBOT_SLACK_SIGNING_SECRET": "bench", "OPSBOT_WEBHOOK_TOKEN": TOKEN,
                    "OPSBOT_LOG_LEVEL": "WARNING", "OPSBOT_HTTP_PORT": str(self.port),
                    # one incident per grouping key is what this bench checks: storm folding (50
                    # services opening at once) is measured by bench/compare_alertmanager.py
                    "OPSBOT_STORM_INCIDENTS": "0",
                    **{k: v for k, v in os.environ.items() if k.startswith("OPSBOT_")}}
        self.env.pop("DATABASE_URL", None)
        opsbot = [sys.executable, "-m", "bot"]
        subprocess.run([*opsbot, "db", "upgrade"], env=self.env, check=True, capture_output=True, cwd=REPO)
        self.process = subprocess.Popen([*opsbot, "serve"], env=self.env, cwd=REPO, stderr=subprocess.PIPE,
                                        text=True)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("opsbot serve did not become ready")

    def metric(self, name: str) -> float:
        total = 0.0
        for line in requests.get(f"{self.url}/metrics", timeout=5).text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def processes(self) -> list[int]:
        """The server and its children (the intake children, multiprocessing's resource tracker)."""
        children = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            children += [int(pid) for pid in (task / "children").read_text().split()]
        return [self.process.pid, *children]

    def intake_children(self) -> int:
        return sum("spawn_main" in Path(f"/proc/{pid}/cmdline").read_text() for pid in self.processes()[1:])

    def peak_rss_mb(self) -> float:
        """The sum of each process's peak RSS (an upper bound of the peak total)."""
        total = 0.0
        for pid in self.processes():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        return total

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def post_all(url: str, bodies: list[bytes], senders: int, latencies: list[float]) -> None:
    queue = list(enumerate(bodies))
    lock = threading.Lock()

    def sender():
        session = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                _, body = queue.pop(0)
            started = time.perf_counter()
            response = session.post(f"{url}/webhooks/alertmanager", data=body, timeout=30,
                                    headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
            latencies.append(time.perf_counter() - started)
            if response.status_code not in (200, 202):
                raise RuntimeError(f"webhook answered {response.status_code}: {response.text[:200]}")

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def steady_latency(url: str, services: int, seconds: float = 10, rate_per_s: int = 20, batch: int = 50) -> list[float]:
    """Latency at a steady 1,000 alerts/s: `rate_per_s` requests of `batch` alerts each second."""
    bodies = storm(int(seconds * rate_per_s * batch), services, batch, seed=11)
    session, latencies = requests.Session(), []
    start = time.perf_counter()
    for number, body in enumerate(bodies):
        wait = start + number / rate_per_s - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        began = time.perf_counter()
        session.post(f"{url}/webhooks/alertmanager", data=body, timeout=30,
                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        latencies.append(time.perf_counter() - began)
    return latencies


def wait_until_processed(server: Server, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.metric("opsbot_pending_deliveries") == 0:
            return time.perf_counter()
        time.sleep(0.05)
    raise RuntimeError("the server did not process the storm in time")


def max_writes_in_window(slack: SlackEmulator, window_s: float = 5.0) -> int:
    """The most Slack writes one incident's thread (card updates and notes) got in any window."""
    per_thread: dict[str, list[float]] = defaultdict(list)
    for call in slack.calls:
        if not call.ok:
            continue
        if call.method == "chat.update":
            per_thread[call.args["ts"]].append(call.at)
        elif call.method == "chat.postMessage":
            per_thread[call.args.get("thread_ts") or call.response["ts"]].append(call.at)
    worst = 0
    for times in per_thread.values():
        times.sort()
        start = 0
        for end, moment in enumerate(times):
            while moment - times[start] > window_s:
                start += 1
            worst = max(worst, end - start + 1)
    return worst


def database_for_run(workdir: Path) -> tuple[str, str, callable]:
    base = os.environ.get("DATABASE_URL")
    if not base:
        return f"sqlite:///{workdir / 'bench.sqlite3'}", "sqlite", lambda: None
    name = f"opsbot_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalise_database_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    url = base.rsplit("/", 1)[0] + "/" + name

    def drop():
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    return url, "postgresql", drop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    command = f".venv/bin/python bench/ingest.py --alerts {args.alerts} --services {args.services} --batch {args.batch}"
    workdir = Path(tempfile.mkdtemp(prefix="opsbot-bench-"))
    database_url, backend, drop_database = database_for_run(workdir)
    slack = SlackEmulator(bot_token="xoxb-bench")
    slack.start()
    server = Server(workdir, database_url, slack.base_url)
    try:
        children = server.intake_children()
        print(f"opsbot ingest benchmark on {backend}, {os.cpu_count()} cores, intake "
              + (f"in {children} child process(es)" if children else "in threads of the serving process"), flush=True)
        latencies = steady_latency(server.url, args.services)
        wait_until_processed(server)
        print(f"steady 1,000 alerts/s for 10 s: webhook p50 {percentile(latencies, .5) * 1000:.1f} ms, "
              f"p99 {percentile(latencies, .99) * 1000:.1f} ms", flush=True)
        bodies = storm(args.alerts, args.services, args.batch)
        started = time.perf_counter()
        storm_latencies: list[float] = []
        post_all(server.url, bodies, SENDERS, storm_latencies)
        accepted = time.perf_counter()
        finished = wait_until_processed(server)
        time.sleep(12)  # let debounced card updates land before counting Slack writes
        rate = args.alerts / (finished - started)
        incidents = int(server.metric("opsbot_incidents_opened_total"))
        writes = [c for c in slack.calls if c.method in ("chat.postMessage", "chat.update")]
        failed = [c for c in writes if not c.ok]
        cards = [c for c in writes if c.ok and c.method == "chat.postMessage" and "thread_ts" not in c.args]
        per_incident = len(writes) / max(1, incidents)
        worst_window, worst_10s = max_writes_in_window(slack), max_writes_in_window(slack, 10.0)
        rss = server.peak_rss_mb()
        print(f"storm: {args.alerts} alerts in {len(bodies)} requests, accepted in {accepted - started:.1f} s "
              f"({args.alerts / (accepted - started):.0f} alerts/s), processed in {finished - started:.1f} s")
        print(f"ingested and grouped: {rate:.0f} alerts/s; storm webhook p50 "
              f"{statistics.median(storm_latencies) * 1000:.1f} ms, p99 {percentile(storm_latencies, .99) * 1000:.1f} ms")
        print(f"incidents opened: {incidents} (grouping keys: {args.services}); Slack writes {len(writes)}, "
              f"{per_incident:.1f} per incident; at most {worst_window} for one incident in any 5 s and {worst_10s} in "
              f"any 10 s")
        print(f"incident cards posted: {len(cards)}; Slack calls refused: {len(failed)}")
        print(f"server peak RSS: {rss:.0f} MB" + (" (with its intake children)" if children else ""))
        print(f"reproduce: {command}" + ("  (with DATABASE_URL set)" if backend == "postgresql" else ""))
        print(f"bench: ingest alerts_per_s={rate:.0f} p50_ms={percentile(latencies, .5) * 1000:.1f} "
              f"p99_ms={percentile(latencies, .99) * 1000:.1f} incidents={incidents} "
              f"slack_writes_per_incident={per_incident:.1f} rss_mb={rss:.0f}")
        return 0 if incidents == args.services == len(cards) and not failed else 1
    finally:
        server.stop()
        slack.stop()
        drop_database()


if __name__ == "__main__":
    sys.exit(main())
