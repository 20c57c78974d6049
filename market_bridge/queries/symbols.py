"""Is a symbol known? (``md.instruments`` or stored data; queries in symbols.sql)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from psycopg import AsyncConnection

from market_bridge.market.symbols import Symbol
from market_bridge.queries import query


async def _matching(
    conn: AsyncConnection[Any], name: str, symbols: Sequence[Symbol]
) -> set[Symbol]:
    params = {
        "exchanges": [s.exchange for s in symbols],
        "symbols": [s.tradingsymbol for s in symbols],
    }
    async with conn.cursor() as cur:
        await cur.execute(query("symbols.sql", name), params)
        return {Symbol(exchange, symbol) for exchange, symbol in await cur.fetchall()}


async def known_symbols(conn: AsyncConnection[Any], symbols: Iterable[Symbol]) -> set[Symbol]:
    """The subset of ``symbols`` that is listed in md.instruments or has bars or ticks.

    md.instruments first (cheap); the bars and ticks tables only for the rest."""
    wanted = list(dict.fromkeys(symbols))
    if not wanted:
        return set()
    known = await _matching(conn, "listed_symbols", wanted)
    rest = [s for s in wanted if s not in known]
    if rest:
        known |= await _matching(conn, "stored_symbols", rest)
    return known


async def is_known(conn: AsyncConnection[Any], symbol: Symbol) -> bool:
    return symbol in await known_symbols(conn, [symbol])
