"""A private, real PostgreSQL server for the database digest's tests (import the fixtures).

- ``pg_server`` (session): a server started with the machine's binaries (``initdb``,
  ``pg_ctl`` on PATH or under /usr/lib/postgresql/*/bin) in a temporary directory, with
  ``shared_preload_libraries=pg_stat_statements``, listening on 127.0.0.1 on a free port, and
  stopped (and its directory removed) at teardown whatever the tests' outcome.

Invariants:
- PostgreSQL refuses to run as root. When the tests run as root the server runs as the
  ``postgres`` system user (or ``nobody``) through ``runuser``/``setpriv``, in a directory that
  user owns; otherwise as the current user.
- TCP connections need a password (scram-sha-256); only the Unix socket in the private
  directory is trusted. The superuser is ``postgres`` with ``SUPERUSER_PASSWORD``.
- A missing binary skips the tests, or fails them under ``CI=true``: a missing real part must
  not pass silently in CI.
- ``free_port`` may race with another process: the start is retried on another port.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from bot.sandbox.promstack import free_port

SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "test-superuser-secret"
UNPRIVILEGED_USERS = ("postgres", "nobody")
START_ATTEMPTS = 3
START_TIMEOUT_SECONDS = 30
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track": "top",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "40",
    "shared_buffers": "32MB",
}


class PostgresMissing(Exception):
    """The PostgreSQL server binaries are not installed."""


def find_bin_dir() -> Path:
    """The folder holding initdb and pg_ctl (PATH first, then the newest Debian version)."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda path: int(Path(path).parent.parent.name) if Path(path).parent.parent.name.isdigit() else 0)
    if versions:
        return Path(versions[-1]).parent
    raise PostgresMissing("initdb/pg_ctl not found on PATH or under /usr/lib/postgresql/*/bin; "
                          "install them with: sudo apt-get install postgresql")


def _run_as_prefix() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that drops root, and the user it drops to (None: not root)."""
    if os.geteuid() != 0:
        return [], None
    for name in UNPRIVILEGED_USERS:
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        if shutil.which("runuser"):
            return ["runuser", "-u", name, "--"], user
        if shutil.which("setpriv"):
            return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"], user
    raise PostgresMissing("running as root without a postgres/nobody user and runuser/setpriv to drop to it")


@dataclass
class PostgresServer:
    """One running server; `dsn()` builds TCP connection strings for its roles and databases."""

    bin_dir: Path
    root: Path
    port: int = 0
    host: str = "127.0.0.1"
    prefix: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def dsn(self, user: str = SUPERUSER, password: str = SUPERUSER_PASSWORD, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={user} password={password} dbname={dbname} connect_timeout=5"

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        """An autocommit superuser connection (the caller closes it)."""
        return psycopg.connect(self.dsn(dbname=dbname), autocommit=True)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, *args], check=check, capture_output=True, text=True,
                              env={**os.environ, **self.env}, timeout=120)

    def version_num(self) -> int:
        with self.admin() as connection:
            return int(connection.execute("SHOW server_version_num").fetchone()[0])

    def start(self) -> None:
        last_error = ""
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            options = " ".join(f"-c {name}={value}" for name, value in SERVER_SETTINGS.items())
            options += f" -p {self.port} -c unix_socket_directories={self.root}"
            result = self.run(str(self.bin_dir / "pg_ctl"), "start", "-w", "-t", str(START_TIMEOUT_SECONDS),
                              "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options, check=False)
            if result.returncode == 0:
                return
            last_error = result.stderr + self.log_path.read_text(errors="replace")[-2000:]
            if "could not bind" not in last_error and "in use" not in last_error:
                break
        raise RuntimeError(f"PostgreSQL did not start: {last_error}")

    def stop(self) -> None:
        if self.data_dir.joinpath("postmaster.pid").exists():
            self.run(str(self.bin_dir / "pg_ctl"), "stop", "-m", "fast", "-w", "-D", str(self.data_dir), check=False)

    def make_standby(self, name: str = "standby") -> PostgresServer:
        """A streaming replica of this server (pg_basebackup -R), started on its own port."""
        standby = PostgresServer(self.bin_dir, self.root / name, prefix=self.prefix,
                                 env={**self.env, "PGPASSWORD": SUPERUSER_PASSWORD})
        standby.root.mkdir()
        _give_to(standby.root, self.prefix)
        standby.run(str(self.bin_dir / "pg_basebackup"), "-h", self.host, "-p", str(self.port), "-U", SUPERUSER,
                    "-D", str(standby.data_dir), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync")
        standby.start()
        return standby


def _give_to(path: Path, prefix: list[str]) -> None:
    """Make `path` owned by the unprivileged user the server runs as (when dropping root)."""
    _, user = _run_as_prefix()
    if prefix and user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)


def start_server() -> PostgresServer:
    """initdb and start a server in a fresh temporary directory."""
    bin_dir = find_bin_dir()
    prefix, _ = _run_as_prefix()
    root = Path(tempfile.mkdtemp(prefix="opsbot-pg-"))
    root.chmod(0o755)
    _give_to(root, prefix)
    server = PostgresServer(bin_dir, root, prefix=prefix)
    password_file = root / "superuser-password"
    password_file.write_text(SUPERUSER_PASSWORD + "\n")
    _give_to(password_file, prefix)
    try:
        server.run(str(bin_dir / "initdb"), "-D", str(server.data_dir), "-U", SUPERUSER, "--pwfile", str(password_file),
                   "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
        server.start()
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {detail}") from exc
    return server


def _require_server() -> PostgresServer:
    try:
        return start_server()
    except PostgresMissing as exc:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"CI=true and a real part is missing: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL with pg_stat_statements preloaded, for the whole session."""
    server = _require_server()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
