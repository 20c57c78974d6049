"""Which symbols a run is about: ``--watchlist`` and ``--symbols`` as users type them."""

from __future__ import annotations

from collections.abc import Sequence

from market_bridge.market.symbols import parse_symbol
from market_bridge.watchlists import merge_watchlists


class NoSymbols(ValueError):
    pass


def split_list(value: str | Sequence[str] | None) -> list[str]:
    """``"RELIANCE,TCS"``, ``["RELIANCE", "TCS"]`` or a mix -> ``["RELIANCE", "TCS"]``."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def select_symbols(
    watchlist: str | Sequence[str] | None, symbols: str | Sequence[str] | None
) -> list[str]:
    """Members of the watchlist(s) then the listed symbols, in order, without duplicates.

    Raises ``UnknownWatchlist``/``DynamicWatchlistUnresolved``/``InvalidSymbol`` (all
    ``ValueError``) with a message naming the culprit, or ``NoSymbols`` when both are empty.
    """
    names = split_list(watchlist)
    listed = split_list(symbols)
    if not names and not listed:
        raise NoSymbols("nothing to do: give a watchlist (e.g. NIFTY50) or symbols "
                        "(e.g. RELIANCE,TCS,INFY)")
    chosen: dict[str, None] = dict.fromkeys(merge_watchlists(names)) if names else {}
    for raw in listed:
        chosen[parse_symbol(raw).display] = None  # InvalidSymbol names the bad one
    return list(chosen)
