"""Reads of ``md.intraday_bars`` (queries in bars.sql).

Ranges are half-open ``[start, end)``; ``None`` means unbounded. Timestamps come back as
aware datetimes converted to IST.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

from market_bridge.kite.models import IST
from market_bridge.queries import query

_FILE = "bars.sql"


@dataclass(frozen=True, slots=True)
class BarRow:
    bar_timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    trades_count: int | None
    vwap: float | None
    oi: int | None
    provenance: str
    revision: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "bar_timestamp", self.bar_timestamp.astimezone(IST))


@dataclass(frozen=True, slots=True)
class RangeStats:
    bar_count: int
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume: int
    vwap: float | None
    first_bar_at: datetime | None
    last_bar_at: datetime | None

    def __post_init__(self) -> None:
        for name in ("first_bar_at", "last_bar_at"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, value.astimezone(IST))


@dataclass(frozen=True, slots=True)
class VwapPoint:
    bar_timestamp: datetime
    close: float
    volume: int
    cumulative_volume: int
    vwap: float | None  # cumulative since IST midnight; None while no volume has traded

    def __post_init__(self) -> None:
        object.__setattr__(self, "bar_timestamp", self.bar_timestamp.astimezone(IST))


@dataclass(frozen=True, slots=True)
class LatestSnapshot:
    symbol: str
    bar_timestamp: datetime
    last_price: float
    previous_close: float | None
    volume: int


def _key(exchange: str, symbol: str, timeframe: str) -> dict[str, Any]:
    return {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}


async def bars_in_range(
    conn: AsyncConnection[Any],
    exchange: str,
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> list[BarRow]:
    """The most recent ``limit`` bars in ``[start, end)``, oldest first."""
    params = _key(exchange, symbol, timeframe) | {"start": start, "end": end, "limit": limit}
    async with conn.cursor(row_factory=class_row(BarRow)) as cur:
        await cur.execute(query(_FILE, "bars_in_range"), params)
        return await cur.fetchall()


async def latest_bar(
    conn: AsyncConnection[Any], exchange: str, symbol: str, timeframe: str
) -> BarRow | None:
    async with conn.cursor(row_factory=class_row(BarRow)) as cur:
        await cur.execute(query(_FILE, "latest_bar"), _key(exchange, symbol, timeframe))
        return await cur.fetchone()


async def close_before(
    conn: AsyncConnection[Any], exchange: str, symbol: str, timeframe: str, before: datetime
) -> float | None:
    """Close of the last bar strictly before ``before``."""
    params = _key(exchange, symbol, timeframe) | {"before": before}
    async with conn.cursor() as cur:
        await cur.execute(query(_FILE, "close_before"), params)
        row = await cur.fetchone()
    return None if row is None else float(row[0])


async def range_stats(
    conn: AsyncConnection[Any],
    exchange: str,
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
) -> RangeStats:
    params = _key(exchange, symbol, timeframe) | {"start": start, "end": end}
    async with conn.cursor(row_factory=class_row(RangeStats)) as cur:
        await cur.execute(query(_FILE, "range_stats"), params)
        row = await cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY always returns one row
    return row


async def vwap_series(
    conn: AsyncConnection[Any],
    exchange: str,
    symbol: str,
    timeframe: str,
    *,
    day_start: datetime,
    start: datetime,
    end: datetime | None,
    limit: int,
) -> list[VwapPoint]:
    """Cumulative intraday VWAP for the bars in ``[start, end)`` (the most recent ``limit``).

    ``day_start`` is IST midnight of ``start``'s day: the cumulation starts there.
    """
    params = _key(exchange, symbol, timeframe) | {
        "day_start": day_start,
        "start": start,
        "end": end,
        "limit": limit,
    }
    async with conn.cursor(row_factory=class_row(VwapPoint)) as cur:
        await cur.execute(query(_FILE, "vwap_series"), params)
        return await cur.fetchall()


async def bar_starts(
    conn: AsyncConnection[Any],
    exchange: str,
    symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
) -> list[datetime]:
    """Labels of the stored bars in ``[start, end)``, in order (for gap detection)."""
    params = _key(exchange, symbol, timeframe) | {"start": start, "end": end}
    async with conn.cursor() as cur:
        await cur.execute(query(_FILE, "bar_starts"), params)
        return [row[0] for row in await cur.fetchall()]


async def latest_snapshots(
    conn: AsyncConnection[Any], exchange: str, symbols: Sequence[str], timeframe: str
) -> list[LatestSnapshot]:
    """Latest close, previous IST day's close and day volume per symbol that has bars."""
    params = {"exchange": exchange, "symbols": list(symbols), "timeframe": timeframe}
    async with conn.cursor(row_factory=class_row(LatestSnapshot)) as cur:
        await cur.execute(query(_FILE, "latest_snapshots"), params)
        return await cur.fetchall()
