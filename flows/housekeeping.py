"""The instruments-sync flow (daily, before the open) and the maintenance flow (weekly)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows import artifacts
from flows.common import db_url, kite_clients, run_logger
from market_bridge.backfill import run_maintenance, sync_instruments


@flow(name="instruments-sync", description="Kite's instruments dump into md.instruments.")
def instruments_sync_flow(exchange: str | None = None) -> dict[str, Any]:
    """Download Kite's instruments dump and upsert it into md.instruments.

    Args:
        exchange: One exchange (NSE, BSE, NFO, ...); default: all of them.
    """
    logger = run_logger()
    result = sync_instruments(db_url(), kite_clients()(), exchange.upper() if exchange else None)
    logger.info("instruments: %d synced (%d before)", result.total, result.before)
    artifacts.table("instruments-sync",
                    [{"exchange": k, "instruments": v} for k, v in sorted(result.by_exchange.items())],
                    f"{result.total} instruments synced")
    return {"total": result.total, "before": result.before, "by_exchange": result.by_exchange}


@flow(name="maintenance", description="Retention (drop_chunks on the Apache edition), sizes.")
def maintenance_flow() -> dict[str, Any]:
    logger = run_logger()
    report = run_maintenance(db_url())
    caps = report.capabilities
    if not caps.policies:
        logger.info("TimescaleDB %s (%s license): compression is unavailable; retention "
                    "applied with drop_chunks", caps.version, caps.license)
    rows = []
    retention = {r.table: r for r in report.retention}
    for size in report.sizes:
        r = retention.get(size.table)
        rows.append({"table": size.table, "size_mb": round(size.total_bytes / 1e6, 2),
                     "chunks": size.chunks, "compression": size.compression,
                     "retain_for": str(r.retain_for) if r else "",
                     "dropped_chunks": r.dropped_chunks if r else 0,
                     "retention_by": r.via if r else ""})
        logger.info("%s", rows[-1])
    artifacts.table("maintenance", rows, f"TimescaleDB {caps.version} ({caps.license})")
    return {"license": caps.license, "tables": rows}
