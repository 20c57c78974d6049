"""The newest tick and bar per symbol, for many symbols in one query each (latest.sql).

Used by the live stream (snapshot on subscribe, ``get_latest``); symbols without stored
data are simply absent from the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import class_row

from market_bridge.kite.models import IST
from market_bridge.market.symbols import Symbol
from market_bridge.queries import query
from market_bridge.queries.bars import RECENT_WINDOW, BarRow, ist_rows, ist_timestamps

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


@dataclass
class LatestBar(BarRow):
    """A symbol's newest bar: the bar (``BarRow``) and whose it is."""

    exchange: str
    symbol: str
    instrument_token: int


def _latest_bar_rows(cursor: AsyncCursor[Any]) -> Callable[[Sequence[Any]], LatestBar]:
    # Columns: the bar's (BarRow's, in order), then exchange, symbol, instrument_token; a
    # binary cursor set up by ist_timestamps.
    return ist_rows(cursor, LatestBar)


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
    conn: AsyncConnection[Any],
    symbols: Sequence[Symbol],
    timeframe: str,
    *,
    now: datetime | None = None,
) -> dict[Symbol, LatestBar]:
    """The newest bar per symbol: looked for in the last ``RECENT_WINDOW`` before ``now``
    (default: the wall clock; an unprepared query, so only recent chunks are opened), then
    everywhere for the symbols that have none there."""
    if not symbols:
        return {}
    since = (now or datetime.now(UTC)) - RECENT_WINDOW
    found: dict[Symbol, LatestBar] = {}
    async with conn.cursor(row_factory=_latest_bar_rows, binary=True) as cur:
        ist_timestamps(cur)
        await cur.execute(
            query(_FILE, "latest_bars"),
            _keys(symbols) | {"timeframe": timeframe, "since": since},
            prepare=False,
        )
        for r in await cur.fetchall():
            found[Symbol(r.exchange, r.symbol)] = r
        rest = [s for s in dict.fromkeys(symbols) if s not in found]
        if rest:
            await cur.execute(query(_FILE, "latest_bars"),
                              _keys(rest) | {"timeframe": timeframe, "since": None})
            for r in await cur.fetchall():
                found[Symbol(r.exchange, r.symbol)] = r
    return found
