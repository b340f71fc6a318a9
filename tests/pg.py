"""A throwaway PostgreSQL 15 cluster for tests: one per pytest session, a fresh database per test.

The server is Debian's ``postgresql`` package (:func:`tests.references.require_postgres`):
``initdb`` into a temporary directory, ``pg_ctl start`` on a free 127.0.0.1 port with its
unix socket in that directory, fsync on (durability is what the tests are about) but small
buffers. initdb refuses to run as root, so under root (CI, containers) the server programs
run as the ``postgres`` user, which then owns the directory. Connections from the tests use
TCP with a password (``scram-sha-256``), as a deployment does.

Use it through the fixtures (import them into a test module)::

    from tests.pg import pg_cluster, pg_dsn  # noqa: F401  (fixtures)

    def test_x(pg_dsn: str) -> None:
        store = PostgresStorage.open(pg_dsn)   # an empty database, migrated

``pg_cluster`` is the session's :class:`PgCluster` (``restart()``, ``kill()``, ``start()``);
``pg_dsn`` a new database created from a migrated template; ``pg_schema_dsn`` a new empty
schema of one shared database (its DSN sets ``search_path``), where the store creates its
tables at its first open -- a fresh store for a fraction of a database's cost.
The cluster stops (``pg_ctl stop -m immediate``) when the test process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.references import require_postgres

USER = "provenance"
PASSWORD = "pg-test-s3cret"  # tests check that it never reaches a log line or a description
TEMPLATE = "provenance_template"
SHARED = "provenance_tests"  # the database holding one schema per test (fresh_schema)
SERVER_USER = "postgres"  # Debian's package creates it; the server runs as it when we are root
SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "32MB",
    "max_connections": "200",
    "max_wal_size": "1GB",  # no forced checkpoints in the middle of a test
    "listen_addresses": "127.0.0.1",
    "log_min_messages": "warning",
    "logging_collector": "off",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgCluster:
    """One PostgreSQL server in ``root`` (data in ``root/data``, socket and log beside it)."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.log_path = root / "server.log"
        self.port = _free_port()
        self._names = itertools.count()
        self._lock = threading.Lock()
        self._as_server_user = os.geteuid() == 0
        self._shared = False
        self.running = False

    # -- running the server programs, as the postgres user under root

    def _run(self, program: str, args: Sequence[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._as_server_user:
            pw = pwd.getpwnam(SERVER_USER)
            kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(self.root)}
        done = subprocess.run([str(self.bin_dir / program), *args], capture_output=True, text=True, env=env,
                              cwd=self.root, timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload]
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}\n"
                               + (self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""))
        return done  # type: ignore[no-any-return]

    def init(self) -> None:
        """initdb with a password for :data:`USER` over TCP; local (socket) connections trusted."""
        if self._as_server_user:
            pw = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_server_user:
            os.chown(pwfile, pwd.getpwnam(SERVER_USER).pw_uid, -1)
        os.chmod(pwfile, 0o600)
        self._run("initdb", ["-D", str(self.data), "-U", USER, f"--pwfile={pwfile}", "--auth-local=trust",
                             "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-instructions"])
        pwfile.unlink()

    def start(self) -> None:
        """Start the server and wait until it takes connections."""
        opts = " ".join(f"-c {k}={v}" for k, v in {**SETTINGS, "port": str(self.port),
                                                     "unix_socket_directories": str(self.root)}.items())
        self._run("pg_ctl", ["start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log_path), "-o", opts])
        self.running = True

    def checkpoint(self) -> None:
        """CHECKPOINT now: a crash afterwards replays only the WAL written since.

        :meth:`stop` and :meth:`kill` call it first, so that a restart replays what the test wrote,
        not every earlier test's WAL (tens of seconds on a busy machine after a bulk test).
        """
        with contextlib.suppress(psycopg.Error), self.admin() as conn:
            conn.execute("CHECKPOINT")

    def stop(self) -> None:
        """Stop the server at once (``-m immediate``: no shutdown checkpoint; the next start replays the WAL)."""
        if self.running:
            self.checkpoint()
            self.running = False
            self._run("pg_ctl", ["stop", "-w", "-m", "immediate", "-D", str(self.data)])

    def kill(self) -> None:
        """SIGKILL the postmaster (a crash of the database server); its children exit on their own."""
        self.checkpoint()
        pid_file = self.data / "postmaster.pid"
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 9)
        self.running = False
        deadline = time.monotonic() + 30
        while _alive(pid) or _children_alive(self.data):  # the backends notice and exit; a start needs them gone
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL backends did not exit after the postmaster was killed")
            time.sleep(0.05)
        # The dead postmaster may stay a zombie (nobody reaps a daemon's child in a container), which the
        # next start would take for a running server: its lock files go, as an operator would remove them.
        for stale in (pid_file, self.root / f".s.PGSQL.{self.port}.lock", self.root / f".s.PGSQL.{self.port}"):
            stale.unlink(missing_ok=True)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop immediately, stay down ``down_seconds``, start again (the "database restart" of issue 14)."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases

    def dsn(self, dbname: str, password: str = PASSWORD) -> str:
        """A URL DSN for ``dbname`` over TCP with the password."""
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{dbname}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection to the ``postgres`` database (for CREATE / DROP DATABASE)."""
        return psycopg.connect(self.dsn("postgres"), autocommit=True)

    def create_template(self) -> None:
        """A database migrated to the current schema, which :meth:`fresh_database` copies."""
        from ledger.storage.postgres import PostgresStorage

        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        PostgresStorage.open(self.dsn(TEMPLATE)).close()
        with self.admin() as conn:
            conn.execute(f"ALTER DATABASE {TEMPLATE} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")

    def fresh_database(self, *, migrated: bool = True) -> str:
        """Create a new database (a copy of the migrated template, or empty) and return its name."""
        with self._lock:
            name = f"t{os.getpid()}_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE if migrated else 'template0'}")
        return name

    def fresh_schema(self) -> str:
        """A DSN whose ``search_path`` is a new, empty schema of one shared database.

        The store creates its tables there at its first open, as in an empty database: about
        30 ms, where a database costs 0.1 to 1.5 s on a busy machine (CREATE DATABASE writes the
        whole template to the WAL; DROP DATABASE forces a checkpoint). The schema is left in place.
        """
        with self._lock:
            name = f"s{os.getpid()}_{next(self._names)}"
            create_shared = not self._shared
            self._shared = True
        if create_shared:
            with self.admin() as conn:
                conn.execute(f"CREATE DATABASE {SHARED}")
        with psycopg.connect(self.dsn(SHARED), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return f"{self.dsn(SHARED)}?options=-csearch_path%3D{name}"

    def drop_database(self, name: str) -> None:
        if not self.running:
            return
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _children_alive(data: Path) -> bool:
    """Whether any process still has ``data`` as its working directory (a backend of the killed server)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if os.readlink(proc / "cwd") == str(data):
                return True
        except OSError:
            continue
    return False


_CLUSTER: PgCluster | None = None
_CLUSTER_LOCK = threading.Lock()


def cluster() -> PgCluster:
    """The session's cluster, started on first use (skips, or fails under CI, without PostgreSQL)."""
    global _CLUSTER
    bin_dir = require_postgres()
    with _CLUSTER_LOCK:
        if _CLUSTER is None:
            root = Path(tempfile.mkdtemp(prefix="provenance-pg-"))
            c = PgCluster(bin_dir, root)
            try:
                c.init()
                c.start()
                c.create_template()
            except BaseException:
                c.destroy()
                raise
            atexit.register(c.destroy)
            _CLUSTER = c
        if not _CLUSTER.running:  # a test killed it and failed before starting it again
            _CLUSTER.start()
        return _CLUSTER


@contextmanager
def database() -> Iterator[str]:
    """The DSN of a new database of the session's cluster holding the current (empty) schema.

    Left in place afterwards (DROP DATABASE forces a checkpoint, slow on a busy machine); the
    cluster's directory goes when the session ends. A stopped server is started again.
    """
    c = cluster()
    name = c.fresh_database()
    try:
        yield c.dsn(name)
    finally:
        if not c.running:
            c.start()


@contextmanager
def schema() -> Iterator[str]:
    """The DSN of a new empty schema (:meth:`PgCluster.fresh_schema`); a stopped server is started again after."""
    c = cluster()
    try:
        yield c.fresh_schema()
    finally:
        if not c.running:
            c.start()


@pytest.fixture
def pg_cluster() -> PgCluster:
    """The session's running :class:`PgCluster`."""
    return cluster()


@pytest.fixture
def pg_dsn(pg_cluster: PgCluster) -> Iterator[str]:
    """The DSN of a new database holding the current (empty) schema."""
    with database() as dsn:
        yield dsn


@pytest.fixture
def pg_schema_dsn(pg_cluster: PgCluster) -> Iterator[str]:
    """The DSN of a new empty schema in a shared database: a log store of its own, cheaper than a database."""
    with schema() as dsn:
        yield dsn
