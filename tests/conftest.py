"""Shared fixtures: one ephemeral TimescaleDB cluster per test session, and one Prefect
server for the session's tests that need one.

The cluster lives in a temp dir on a free port with fsync off; migrations are applied once
to a template database, and each test that needs isolation gets its own database cloned
from that template (fast: a file copy).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from market_bridge.db.cluster import LocalCluster
from market_bridge.db.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_DB = "mb_template"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalCluster]:
    base = Path(tempfile.mkdtemp(prefix="mb-test-pg-"))
    os_user = os.environ.get("MB_DB_OS_USER", "marketbridge")
    if os.geteuid() == 0:
        entry = pwd.getpwnam(os_user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    cluster = LocalCluster(
        data_dir=base / "data",
        port=free_port(),
        os_user=os_user,
        superuser="market_bridge",
        log_file=base / "postgres.log",
        password_file=None,
        fast_unsafe=True,
    )
    cluster.start()
    admin = cluster.dsn("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
    migrate(cluster.dsn(TEMPLATE_DB))
    with psycopg.connect(admin, autocommit=True) as conn:
        # TimescaleDB runs a job scheduler in every database that has the extension; a
        # template must have no sessions to be copied, so close it to connections.
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                sql.Identifier(TEMPLATE_DB)
            )
        )
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (TEMPLATE_DB,),
        )
    try:
        yield cluster
    finally:
        try:
            cluster.stop(mode="immediate")
        finally:
            shutil.rmtree(base, ignore_errors=True)


def create_database(cluster: LocalCluster, prefix: str = "t") -> str:
    """A new database cloned from the migrated template; returns its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = cluster.dsn("postgres")
    for attempt in range(50):
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(TEMPLATE_DB)
                    )
                )
            break
        except psycopg.errors.ObjectInUse:
            if attempt == 49:
                raise
            time.sleep(0.1)
    return cluster.dsn(name)


def drop_database(cluster: LocalCluster, dsn: str) -> None:
    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def cloned_database(cluster: LocalCluster, prefix: str = "t") -> Iterator[str]:
    """A database cloned from the template for the duration of the block."""
    dsn = create_database(cluster, prefix)
    try:
        yield dsn
    finally:
        drop_database(cluster, dsn)


@pytest.fixture
def db_url(pg_cluster: LocalCluster) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    with cloned_database(pg_cluster) as dsn:
        yield dsn


@pytest.fixture(scope="module")
def module_db_url(pg_cluster: LocalCluster) -> Iterator[str]:
    """A fresh, migrated database shared by the tests of one module."""
    with cloned_database(pg_cluster, "m") as dsn:
        yield dsn


@pytest.fixture(scope="session")
def template_url(pg_cluster: LocalCluster) -> Iterator[str]:
    """A migrated database shared by the whole session: for read-only tests."""
    with cloned_database(pg_cluster, "s") as dsn:
        yield dsn


@contextmanager
def private_cluster(prefix: str, *, durable: bool) -> Iterator[LocalCluster]:
    """A cluster of the test's own with a migrated database ``mb``: for tests that stop
    and start the server. ``durable``: production settings (fsync, synchronous_commit on),
    for tests that crash the server and need committed data to survive; otherwise the
    test cluster's fsync-off settings (then stop it cleanly, "fast")."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        e = pwd.getpwnam(os.environ.get("MB_DB_OS_USER", "marketbridge"))
        os.chown(base, e.pw_uid, e.pw_gid)
    cluster = LocalCluster(base / "data", free_port(), log_file=base / "pg.log",
                           fast_unsafe=not durable)  # fmt: skip
    try:
        cluster.start()
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE mb")
        migrate(cluster.dsn("mb"))
        yield cluster
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A durable cluster of the test's own (``private_cluster``), to stop and start."""
    with private_cluster("mb-test-own-", durable=True) as cluster:
        yield cluster


# ---- Prefect -----------------------------------------------------------------------


def wait_for(what: str, probe: Any, timeout: float, proc: subprocess.Popen[bytes] | None = None,
             log: Path | None = None) -> Any:  # fmt: skip
    """``probe()``'s first true value, polled every 0.25 s; AssertionError (with the tail of
    ``log``) after ``timeout`` or once ``proc`` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.25)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def stop_group(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Signal the process group of ``proc`` (started with ``start_new_session=True``) and
    wait for ``proc``; SIGKILL the group after ``timeout``."""
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass(frozen=True)
class PrefectServer:
    url: str  # the API: http://127.0.0.1:PORT/api
    home: Path  # its PREFECT_HOME (SQLite database, server.log)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One `prefect server start` (SQLite under a temp PREFECT_HOME) for the whole session,
    started by the first test that asks for it: each start costs 5 to 40 s of CPU.

    Shared, so its tests must not assume it is empty: they find their flow runs by the ids
    they created, a served deployment by its having been registered after their runner
    started (``registered_since``: deployment names are fixed, and another test's runner
    may have registered the same one before), artifacts by having been written during the
    test (``stamped_since``). Tests run one at a time (no xdist): nothing else uses it
    meanwhile."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           # no scheduled runs of the served deployments while testing
           "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false"}  # fmt: skip
    log = home / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "prefect"), "server", "start",
                                 "--host", "127.0.0.1", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        # ~5 s on an idle machine; much longer when the 2 cores are busy (cold SQLite).
        wait_for("the Prefect server", healthy, 150, proc, log)
        yield PrefectServer(url, home)
    finally:
        stop_group(proc, signal.SIGTERM, 15)


@pytest.fixture
def prefect_api(prefect_server: PrefectServer) -> Iterator[str]:
    """The session's Prefect API URL; for the test, this process's Prefect settings point
    at it too (flows called in-process report their runs and artifacts there). Tests that
    do not ask for it keep Prefect's defaults."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )

    with temporary_settings({PREFECT_API_URL: prefect_server.url,
                             PREFECT_HOME: str(prefect_server.home),
                             PREFECT_SERVER_ANALYTICS_ENABLED: False}):  # fmt: skip
        yield prefect_server.url


@pytest.fixture
def prefect_home(prefect_server: PrefectServer) -> Path:
    """The session's PREFECT_HOME, for processes started against ``prefect_api``."""
    return prefect_server.home


def registered_since(api: str, flow: str, deployment: str, since: float) -> str | None:
    """The id of deployment ``flow/deployment`` once it was (re)registered at or after
    ``since`` (``time.time()`` before its runner was started: one machine, one clock), so
    by that runner, not by an earlier test's; None before."""
    reply = httpx.get(f"{api}/deployments/name/{flow}/{deployment}", timeout=30)
    if reply.status_code != 200:
        return None
    body = reply.json()
    return str(body["id"]) if stamped_since(body["updated"], since) else None


def stamped_since(stamp: str, since: float) -> bool:
    """Whether the Prefect server's ISO timestamp ``stamp`` is at or after ``since``
    (``time.time()``)."""
    return datetime.fromisoformat(stamp).timestamp() >= since
