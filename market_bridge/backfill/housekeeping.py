"""The daily instruments sync and the weekly storage maintenance."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import psycopg

from market_bridge.db.maintenance import (
    RetentionResult,
    StorageCapabilities,
    TableSize,
    apply_retention,
    capabilities,
    table_sizes,
)
from market_bridge.instruments import upsert_instruments
from market_bridge.kite.rest import KiteRest


@dataclass(frozen=True, slots=True)
class InstrumentsSync:
    total: int
    by_exchange: dict[str, int]
    before: int  # rows in md.instruments before the sync


def sync_instruments(dsn: str, kite: KiteRest, exchange: str | None = None) -> InstrumentsSync:
    """Kite's instruments dump (all exchanges, or one) upserted into md.instruments."""
    instruments = kite.instruments(exchange)
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM md.instruments").fetchone()
        before = int(row[0]) if row else 0
        total = upsert_instruments(conn, instruments)
    return InstrumentsSync(total, dict(Counter(i.exchange for i in instruments)), before)


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    capabilities: StorageCapabilities
    retention: list[RetentionResult]
    sizes: list[TableSize]


def run_maintenance(dsn: str) -> MaintenanceReport:
    """Apply retention (server policies, or drop_chunks on the Apache edition), then
    report table sizes."""
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        caps = capabilities(conn)
        retention = apply_retention(conn)
        sizes = table_sizes(conn)
    return MaintenanceReport(caps, retention, sizes)
