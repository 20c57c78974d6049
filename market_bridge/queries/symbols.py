"""Is a symbol known? (``md.instruments`` or stored data; query in symbols.sql)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg import AsyncConnection

from market_bridge.market.symbols import Symbol
from market_bridge.queries import query


async def known_symbols(conn: AsyncConnection[Any], symbols: Iterable[Symbol]) -> set[Symbol]:
    """The subset of ``symbols`` that is listed in md.instruments or has bars or ticks."""
    wanted = list(dict.fromkeys(symbols))
    if not wanted:
        return set()
    params = {
        "exchanges": [s.exchange for s in wanted],
        "symbols": [s.tradingsymbol for s in wanted],
    }
    async with conn.cursor() as cur:
        await cur.execute(query("symbols.sql", "known_symbols"), params)
        return {Symbol(exchange, symbol) for exchange, symbol in await cur.fetchall()}


async def is_known(conn: AsyncConnection[Any], symbol: Symbol) -> bool:
    return symbol in await known_symbols(conn, [symbol])
