"""The newest tick and bar per symbol, for many symbols in one query each (latest.sql).

Used by the live stream (snapshot on subscribe, ``get_latest``); symbols without stored
data are simply absent from the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

from market_bridge.kite.models import IST
from market_bridge.market.symbols import Symbol
from market_bridge.queries import query

_FILE = "latest.sql"


@dataclass(frozen=True, slots=True)
class LatestTick:
    exchange: str
    symbol: str
    instrument_token: int
    tick_timestamp: datetime
    price: float
    quantity: int
    volume_traded: int | None
    average_price: float | None
    total_buy_quantity: int | None
    total_sell_quantity: int | None
    bid_price: float | None
    ask_price: float | None
    oi: int | None
    mode: str | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tick_timestamp", self.tick_timestamp.astimezone(IST))


@dataclass(frozen=True, slots=True)
class LatestBar:
    exchange: str
    symbol: str
    instrument_token: int
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


def _keys(symbols: Sequence[Symbol]) -> dict[str, Any]:
    return {
        "exchanges": [s.exchange for s in symbols],
        "symbols": [s.tradingsymbol for s in symbols],
    }


async def latest_ticks(
    conn: AsyncConnection[Any], symbols: Sequence[Symbol]
) -> dict[Symbol, LatestTick]:
    if not symbols:
        return {}
    async with conn.cursor(row_factory=class_row(LatestTick)) as cur:
        await cur.execute(query(_FILE, "latest_ticks"), _keys(symbols))
        return {Symbol(r.exchange, r.symbol): r for r in await cur.fetchall()}


async def latest_bars(
    conn: AsyncConnection[Any], symbols: Sequence[Symbol], timeframe: str
) -> dict[Symbol, LatestBar]:
    if not symbols:
        return {}
    params = _keys(symbols) | {"timeframe": timeframe}
    async with conn.cursor(row_factory=class_row(LatestBar)) as cur:
        await cur.execute(query(_FILE, "latest_bars"), params)
        return {Symbol(r.exchange, r.symbol): r for r in await cur.fetchall()}
