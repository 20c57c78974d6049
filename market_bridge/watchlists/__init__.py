"""Predefined watchlists: static index/sector lists and the dynamic movers lists."""

from __future__ import annotations

from market_bridge.watchlists.movers import (
    MOVERS,
    Mover,
    Movers,
    Snapshot,
    compute_movers,
)
from market_bridge.watchlists.registry import (
    DynamicWatchlistUnresolved,
    UnknownCategory,
    UnknownWatchlist,
    Watchlist,
    WatchlistCatalog,
    all_watchlists,
    by_category,
    catalog,
    categories,
    get_watchlist,
    has_watchlist,
    merge_watchlists,
    watchlist_names,
)

__all__ = [
    "MOVERS",
    "DynamicWatchlistUnresolved",
    "Mover",
    "Movers",
    "Snapshot",
    "UnknownCategory",
    "UnknownWatchlist",
    "Watchlist",
    "WatchlistCatalog",
    "all_watchlists",
    "by_category",
    "catalog",
    "categories",
    "compute_movers",
    "get_watchlist",
    "has_watchlist",
    "merge_watchlists",
    "watchlist_names",
]
