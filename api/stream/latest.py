"""Stored latest values in the shape of live messages (snapshot on subscribe, get_latest).

A snapshot tick has the keys of a live tick (``market_bridge.collect.messages.tick_data``)
so clients handle both with one code path; what storage does not keep (the day's change
percent) is null. A snapshot bar is the newest stored bar of the snapshot timeframe: stored
bars are final, and ``source`` is their provenance (``live`` or ``historical``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from api.stream import protocol
from market_bridge.market.symbols import Symbol
from market_bridge.queries import latest as latest_queries
from market_bridge.queries.latest import LatestBar, LatestTick


@dataclass(frozen=True, slots=True)
class Latest:
    tick: dict[str, Any] | None
    bar: dict[str, Any] | None


def tick_data(row: LatestTick) -> dict[str, Any]:
    return {
        "instrument_token": row.instrument_token,
        "timestamp": row.tick_timestamp.isoformat(),
        "price": row.price,
        "quantity": row.quantity,
        "volume": row.volume_traded,
        "average_price": row.average_price,
        "buy_quantity": row.total_buy_quantity,
        "sell_quantity": row.total_sell_quantity,
        "bid": row.bid_price,
        "ask": row.ask_price,
        "oi": row.oi,
        "change_percent": None,
        "mode": row.mode,
    }


def bar_data(row: LatestBar, timeframe: str) -> dict[str, Any]:
    start = row.bar_timestamp.isoformat()
    return {
        "instrument_token": row.instrument_token,
        "timeframe": timeframe,
        "start": start,
        "open": row.open,
        "high": row.high,
        "low": row.low,
        "close": row.close,
        "volume": row.volume,
        "trades_count": row.trades_count,
        "vwap": row.vwap,
        "oi": row.oi,
        "final": True,
        "revision": row.revision,
        "source": row.provenance,
        "timestamp": start,
    }


def snapshot_messages(
    values: Mapping[str, Latest], seen_live: Mapping[str, Set[str]], timeframe: str
) -> list[bytes]:
    """Snapshot messages per symbol (display name), minus those a live message already
    superseded while the snapshot was read: ``seen_live[name]`` holds the series (``tick``,
    ``bar:1m``...) that arrived live meanwhile, and newer must not be followed by older."""
    out: list[bytes] = []
    for name, value in values.items():
        fresh = seen_live.get(name, frozenset())
        if value.tick is not None and "tick" not in fresh:
            out.append(protocol.snapshot("tick", name, value.tick))
        if value.bar is not None and f"bar:{timeframe}" not in fresh:
            out.append(protocol.snapshot("bar", name, value.bar))
    return out


async def latest_values(
    conn: AsyncConnection[Any], symbols: Sequence[Symbol], timeframe: str
) -> dict[Symbol, Latest]:
    """Newest stored tick and bar per symbol (two queries, whatever the number of symbols)."""
    ticks = await latest_queries.latest_ticks(conn, symbols)
    bars = await latest_queries.latest_bars(conn, symbols, timeframe)
    out: dict[Symbol, Latest] = {}
    for symbol in symbols:
        tick, bar = ticks.get(symbol), bars.get(symbol)
        out[symbol] = Latest(
            tick_data(tick) if tick is not None else None,
            bar_data(bar, timeframe) if bar is not None else None,
        )
    return out
