"""The schema, migrations and storage maintenance against a real TimescaleDB."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from market_bridge.db import maintenance
from market_bridge.db.migrate import MigrationError, load_migrations, migrate

from .conftest import free_port


def test_seed_tables_are_hypertables_bars_in_30_day_chunks(module_db_url: str) -> None:
    # Ticks and depth: 1-day chunks (0001); bars: 30 days from migration 0007 on.
    with psycopg.connect(module_db_url) as conn:
        rows = conn.execute(
            """SELECT hypertable_name, time_interval
                 FROM timescaledb_information.dimensions
                WHERE hypertable_schema = 'md' ORDER BY hypertable_name"""
        ).fetchall()
    assert rows == [
        ("intraday_bars", timedelta(days=30)),
        ("order_book", timedelta(days=1)),
        ("tick_data", timedelta(days=1)),
    ]


def test_feed_rate_tables_carry_only_the_indexes_their_reads_use(module_db_url: str) -> None:
    # 0008 drops create_hypertable's time-only index on the two tables written at feed
    # rate: every read names a symbol, and each extra index costs every insert; 0009
    # narrows the tick index's key to (symbol, time).
    with psycopg.connect(module_db_url) as conn:
        rows = conn.execute(
            """SELECT tablename, indexdef FROM pg_indexes
                WHERE schemaname = 'md' AND tablename IN ('tick_data', 'order_book')
                ORDER BY tablename, indexname"""
        ).fetchall()
    assert [(t, d.split(" USING ")[1]) for t, d in rows] == [
        ("order_book", "btree (exchange, symbol, snapshot_timestamp)"),
        ("tick_data", "btree (symbol, tick_timestamp DESC)"),
    ]


def test_migrate_twice_changes_nothing(db_url: str) -> None:
    def snapshot() -> list[tuple[object, ...]]:
        with psycopg.connect(db_url) as conn:
            return conn.execute(
                """SELECT table_schema, table_name, column_name, data_type
                     FROM information_schema.columns
                    WHERE table_schema IN ('md', 'public')
                    ORDER BY 1, 2, 3"""
            ).fetchall() + conn.execute(
                "SELECT version, checksum, applied_at::text FROM public.mb_schema_migrations"
                " ORDER BY 1"
            ).fetchall()

    before = snapshot()
    assert migrate(db_url) == []  # the template already has every migration
    assert migrate(db_url) == []
    assert snapshot() == before
    assert len([r for r in before if len(r) == 3]) == len(load_migrations())


def test_edited_migration_is_refused(db_url: str, tmp_path: Path) -> None:
    for m in load_migrations():
        (tmp_path / m.name).write_text(m.sql)
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(db_url, tmp_path)


def test_bar_unique_key_makes_upserts_idempotent(db_url: str) -> None:
    ts = datetime(2026, 11, 25, 3, 45, tzinfo=UTC)
    row = ("NSE", "RELIANCE", 738561, ts, "1m", 10.0, 11.0, 9.0, 10.5, 100)
    upsert = """INSERT INTO md.intraday_bars (exchange, symbol, instrument_token,
                    bar_timestamp, timeframe, open, high, low, close, volume)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (exchange, symbol, bar_timestamp, timeframe)
                DO UPDATE SET close = EXCLUDED.close"""
    with psycopg.connect(db_url) as conn:
        conn.execute(upsert, row)
        conn.execute(upsert, row)
        n = conn.execute("SELECT count(*) FROM md.intraday_bars").fetchone()
    assert n == (1,)


def test_apache_edition_retention_by_drop_chunks(db_url: str) -> None:
    old = datetime.now(UTC) - timedelta(days=400)
    new = datetime.now(UTC) - timedelta(days=1)
    with psycopg.connect(db_url) as conn:
        caps = maintenance.capabilities(conn)
        for ts in (old, new):
            conn.execute(
                """INSERT INTO md.intraday_bars (exchange, symbol, instrument_token,
                       bar_timestamp, timeframe, open, high, low, close)
                   VALUES ('NSE', 'TCS', 2953217, %s, '1m', 1, 1, 1, 1)""",
                (ts,),
            )
        conn.commit()
        results = {r.table: r for r in maintenance.apply_retention(conn)}
        left = conn.execute("SELECT count(*) FROM md.intraday_bars").fetchone()
        sizes = {s.table: s for s in maintenance.table_sizes(conn)}
    if caps.policies:
        assert results["md.intraday_bars"].via == "policy"
    else:
        assert caps.license == "apache"
        assert results["md.intraday_bars"].via == "drop_chunks"
        assert results["md.intraday_bars"].dropped_chunks == 1
        assert left == (1,)
        assert sizes["md.intraday_bars"].compression.startswith("unavailable")
    assert sizes["md.intraday_bars"].total_bytes > 0


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "market_bridge.cli.main", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )


def test_cli_embedded_cluster_lifecycle() -> None:
    """`db start|status|url|migrate|stop` on a throwaway MB_HOME and port."""
    # Our own temp dir, not pytest's: the server's OS user must reach it, and pytest may
    # prune its numbered dirs when other sessions run on the same machine.
    base = Path(tempfile.mkdtemp(prefix="mb-test-home-"))
    home = base / "home"
    env = dict(os.environ, MB_HOME=str(home), MB_DB_PORT=str(free_port()))
    env.pop("DATABASE_URL", None)
    if os.geteuid() == 0:
        base.chmod(0o755)
    started = _cli("db", "start", env=env)
    try:
        assert started.returncode == 0, started.stderr
        assert "started" in started.stdout
        url = _cli("db", "url", env=env).stdout.strip()
        assert url.startswith("postgresql://market_bridge:")
        assert _cli("db", "status", env=env).returncode == 0
        assert "up to date" in _cli("db", "migrate", env=env).stdout
        with psycopg.connect(url) as conn:
            names = {r[0] for r in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables")}
        assert names == {"intraday_bars", "tick_data", "order_book"}
        again = _cli("db", "start", env=env)
        assert "already running" in again.stdout
        password = (home / "db-password").read_text().strip()
        assert oct((home / "db-password").stat().st_mode & 0o777) == "0o600"
        assert password not in again.stdout + again.stderr
    finally:
        stopped = _cli("db", "stop", env=env)
    try:
        assert stopped.returncode == 0, stopped.stderr
        assert _cli("db", "status", env=env).returncode == 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_ingest_settings_sized_from_ram_and_refreshed_on_existing_clusters(tmp_path: Path) -> None:
    from market_bridge.db.cluster import LocalCluster, ingest_settings

    mb = 1 << 20
    assert ingest_settings(1024 * mb)["shared_buffers"] == "'256MB'"
    assert ingest_settings(8192 * mb)["shared_buffers"] == "'1024MB'"
    assert ingest_settings(64 * 1024 * mb)["shared_buffers"] == "'2048MB'"
    # a cluster made by an earlier version: its defaults are replaced, a value set by hand
    # (ALTER SYSTEM) is kept, missing settings are added, the port follows the config
    data = tmp_path / "data"
    data.mkdir()
    conf = data / "postgresql.auto.conf"
    conf.write_text("# written by market-bridge\nport = 5432\nshared_buffers = '256MB'\n"
                    "max_wal_size = '16GB'\n")
    LocalCluster(data, 5433)._ensure_port_setting()
    lines = conf.read_text().splitlines()
    wanted = ingest_settings()
    assert "port = 5433" in lines and "max_wal_size = '16GB'" in lines
    assert f"shared_buffers = {wanted['shared_buffers']}" in lines
    assert f"checkpoint_timeout = {wanted['checkpoint_timeout']}" in lines
    assert sum(ln.startswith("max_wal_size") for ln in lines) == 1
    before = conf.read_text()
    LocalCluster(data, 5433)._ensure_port_setting()
    assert conf.read_text() == before  # idempotent
