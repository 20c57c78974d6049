"""Path symbols to known instruments: ``RELIANCE`` = ``NSE:RELIANCE``; unknown → 404."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg import AsyncConnection

from api.errors import ApiError, bad_request, not_found
from market_bridge.market.symbols import InvalidSymbol, Symbol, parse_symbol
from market_bridge.queries import symbols as symbol_queries

_UNKNOWN_HINT = (
    "not in the instruments list and no stored data; check the spelling "
    "(EXCHANGE:TRADINGSYMBOL, NSE by default) or run the instruments sync"
)


def parse_or_400(raw: object) -> Symbol:
    try:
        return parse_symbol(raw)  # type: ignore[arg-type]  # non-strings are rejected inside
    except InvalidSymbol as exc:
        raise bad_request("invalid symbol", str(exc)) from None


async def ensure_known(conn: AsyncConnection[Any], symbol: Symbol) -> None:
    if not await symbol_queries.is_known(conn, symbol):
        raise not_found("unknown symbol", f"{symbol}: {_UNKNOWN_HINT}")


async def resolve_symbols(conn: AsyncConnection[Any], raws: Iterable[object]) -> list[Symbol]:
    """Parse all (400 naming every malformed one), then check all (404 naming the unknown)."""
    parsed: list[Symbol] = []
    invalid: list[str] = []
    for raw in raws:
        try:
            parsed.append(parse_symbol(raw))  # type: ignore[arg-type]
        except InvalidSymbol as exc:
            invalid.append(str(exc))
    if invalid:
        raise ApiError(400, "invalid symbol", invalid if len(invalid) > 1 else invalid[0])
    known = await symbol_queries.known_symbols(conn, parsed)
    unknown = [str(s) for s in dict.fromkeys(parsed) if s not in known]
    if unknown:
        raise not_found("unknown symbol", f"{', '.join(unknown)}: {_UNKNOWN_HINT}")
    return list(dict.fromkeys(parsed))
