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
import uuid
from collections.abc import Iterator
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
    try:
        yield cluster
    finally:
        try:
            cluster.stop(mode="immediate")
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def template_url(pg_cluster: LocalCluster) -> str:
    """The migrated template database: read-only use (tests must not write to it)."""
    return pg_cluster.dsn(TEMPLATE_DB)


@pytest.fixture
def db_url(pg_cluster: LocalCluster) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = pg_cluster.dsn("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE_DB)
            )
        )
    try:
        yield pg_cluster.dsn(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
