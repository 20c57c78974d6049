"""Shared fixtures: one ephemeral TimescaleDB cluster per test session.

The cluster lives in a temp dir on a free port with fsync off; migrations are applied once
to a template database, and each test that needs isolation gets its own database cloned
from that template (fast: a file copy).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from market_bridge.db.cluster import LocalCluster
from market_bridge.db.migrate import migrate

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
