"""Database access: where the DSN comes from, the embedded cluster, migrations."""

from __future__ import annotations

import psycopg
from psycopg import sql

from market_bridge.db.cluster import LocalCluster
from market_bridge.settings import Settings


def embedded_cluster(settings: Settings) -> LocalCluster:
    db = settings.db
    return LocalCluster(
        data_dir=db.data_dir,
        port=db.port,
        host=db.host,
        os_user=db.os_user,
        superuser=db.user,
        log_file=db.log_file,
        password_file=settings.home / "db-password",
    )


def database_url(settings: Settings) -> str:
    """DATABASE_URL when set, else the embedded cluster's DSN."""
    if settings.db.external_url:
        return settings.db.external_url
    return embedded_cluster(settings).dsn(settings.db.name)


def ensure_database(admin_dsn: str, name: str) -> bool:
    """Create database ``name`` (with the timescaledb extension) if missing; True if created."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True
