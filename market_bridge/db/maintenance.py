"""Storage maintenance that works on both TimescaleDB editions.

With the community ('timescale') license the server's own compression and retention
policies run (created by migration 0003). On the Apache edition there are no policies:
``apply_retention`` drops chunks older than each table's retention with ``drop_chunks``,
and compression is reported as unavailable instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import psycopg


@dataclass(frozen=True)
class StorageCapabilities:
    license: str
    version: str

    @property
    def policies(self) -> bool:
        """Compression, retention policies and continuous aggregates are available."""
        return self.license == "timescale"


@dataclass(frozen=True)
class RetentionResult:
    table: str
    retain_for: timedelta
    dropped_chunks: int
    via: str  # "policy" (server-side job) or "drop_chunks" (this routine)


@dataclass(frozen=True)
class TableSize:
    table: str
    total_bytes: int
    chunks: int
    compression: str  # "enabled", "unavailable (apache license)", "not enabled"


def capabilities(conn: psycopg.Connection) -> StorageCapabilities:
    row = conn.execute(
        "SELECT coalesce(current_setting('timescaledb.license', true), 'unknown'),"
        " (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb')"
    ).fetchone()
    assert row is not None
    return StorageCapabilities(license=row[0], version=row[1] or "not installed")


def apply_retention(conn: psycopg.Connection) -> list[RetentionResult]:
    caps = capabilities(conn)
    rows = conn.execute(
        "SELECT table_name, retain_for FROM md.storage_policy ORDER BY table_name"
    ).fetchall()
    results: list[RetentionResult] = []
    for table, retain_for in rows:
        if caps.policies:
            results.append(RetentionResult(table, retain_for, 0, "policy"))
            continue
        dropped = conn.execute(
            "SELECT count(*) FROM drop_chunks(%s::regclass, older_than => now() - %s::interval)",
            (table, retain_for),
        ).fetchone()
        results.append(RetentionResult(table, retain_for, int(dropped[0]) if dropped else 0,
                                       "drop_chunks"))
    conn.commit()
    return results


def table_sizes(conn: psycopg.Connection) -> list[TableSize]:
    caps = capabilities(conn)
    rows = conn.execute(
        """SELECT format('%I.%I', h.hypertable_schema, h.hypertable_name),
                  hypertable_size(format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass),
                  h.num_chunks, h.compression_enabled
             FROM timescaledb_information.hypertables h
            WHERE h.hypertable_schema = 'md'
            ORDER BY 1"""
    ).fetchall()
    sizes = []
    for table, total, chunks, compressed in rows:
        if not caps.policies:
            state = f"unavailable ({caps.license} license)"
        else:
            state = "enabled" if compressed else "not enabled"
        sizes.append(TableSize(table, int(total or 0), int(chunks), state))
    return sizes
