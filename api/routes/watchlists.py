"""``/watchlists``: the predefined lists, by name and category, and merges.

Static lists come from the packaged catalogue. The movers lists (TOP_GAINERS, TOP_LOSERS,
MOST_ACTIVE) are computed per request from the latest stored 1m bars: the latest close vs
the previous IST day's last close, and the day's volume so far (see ``latest_snapshots``).
Only symbols whose latest bar is on the most recent day seen are ranked, so a symbol that
stopped trading weeks ago cannot top today's list.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from sanic import Blueprint, HTTPResponse, Request

from api.body import check_keys, json_object, string_list
from api.db import connection, describe_failure
from api.errors import bad_request, not_found
from api.params import int_arg
from api.responses import json_response
from market_bridge.kite.models import IST
from market_bridge.market.symbols import parse_symbol
from market_bridge.queries import bars as bar_queries
from market_bridge.watchlists import (
    MOVERS,
    Movers,
    Snapshot,
    UnknownCategory,
    UnknownWatchlist,
    Watchlist,
    all_watchlists,
    by_category,
    catalog,
    categories,
    compute_movers,
    get_watchlist,
    has_watchlist,
    merge_watchlists,
    watchlist_names,
)

bp = Blueprint("watchlists", url_prefix="/watchlists")

MOVERS_TIMEFRAME = "1m"
DEFAULT_MOVERS = 10
MAX_MOVERS = 100


def _get(name: str) -> Watchlist:
    try:
        return get_watchlist(name)
    except UnknownWatchlist as exc:
        raise not_found("unknown watchlist", str(exc)) from None


async def _movers(request: Request, names: Iterable[str], n: int) -> dict[str, Movers]:
    """Compute the named movers lists from one read of the latest stored data."""
    wanted = [name for name in dict.fromkeys(names) if name in MOVERS]
    if not wanted:
        return {}
    universe = merge_watchlists({u for name in wanted for u in get_watchlist(name).universe})
    by_exchange: dict[str, list[str]] = defaultdict(list)
    for display in universe:
        symbol = parse_symbol(display)
        by_exchange[symbol.exchange].append(symbol.tradingsymbol)
    rows: list[tuple[str, bar_queries.LatestSnapshot]] = []
    async with connection(request) as conn:
        for exchange, symbols in by_exchange.items():
            for snap in await bar_queries.latest_snapshots(
                conn, exchange, symbols, MOVERS_TIMEFRAME
            ):
                rows.append((parse_symbol(f"{exchange}:{snap.symbol}").display, snap))
    latest_day = max((s.bar_timestamp.astimezone(IST).date() for _, s in rows), default=None)
    latest = {
        display: Snapshot(snap.last_price, snap.previous_close, snap.volume)
        for display, snap in rows
        if snap.bar_timestamp.astimezone(IST).date() == latest_day
    }
    return {name: compute_movers(name, latest, n=n) for name in wanted}


async def _movers_or_reason(
    request: Request, lists: Iterable[Watchlist], n: int
) -> tuple[dict[str, Movers], str | None]:
    """For listings: a database outage degrades the movers lists instead of failing all."""
    try:
        return await _movers(request, (wl.name for wl in lists if wl.dynamic), n), None
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        return {}, "database unavailable: " + await describe_failure(request.app, exc)


def watchlist_view(
    wl: Watchlist, movers: Movers | None = None, unavailable: str | None = None
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": wl.name,
        "category": wl.category,
        "description": wl.description,
        "dynamic": wl.dynamic,
        "index_symbol": wl.index_symbol,
        "symbols": list(wl.symbols),
        "count": len(wl.symbols),
    }
    if wl.dynamic:
        entries = movers.entries if movers else ()
        view |= {
            "symbols": [m.symbol for m in entries],
            "count": len(entries),
            "universe": list(wl.universe),
            "universe_size": movers.universe_size if movers else None,
            "movers": [
                {
                    "symbol": m.symbol,
                    "last_price": m.last_price,
                    "change_percent": m.change_percent,
                    "volume": m.volume,
                }
                for m in entries
            ],
            "reason": movers.reason if movers else unavailable,
        }
    return view


def _movers_limit(request: Request) -> int:
    return int_arg(request, "limit", DEFAULT_MOVERS, 1, MAX_MOVERS)


@bp.get("/")
async def list_all(request: Request) -> HTTPResponse:
    n = _movers_limit(request)
    lists = all_watchlists()
    movers, reason = await _movers_or_reason(request, lists, n)
    cat = catalog()
    return json_response(
        {
            "as_of": cat.as_of,
            "source": cat.source,
            "count": len(lists),
            "watchlists": [watchlist_view(wl, movers.get(wl.name), reason) for wl in lists],
        }
    )


@bp.get("/names")
async def names(request: Request) -> HTTPResponse:
    found = watchlist_names()
    return json_response({"count": len(found), "names": found})


@bp.get("/categories")
async def list_categories(request: Request) -> HTTPResponse:
    found = categories()
    return json_response(
        {
            "count": len(found),
            "categories": found,
            "watchlists": {c: [wl.name for wl in by_category(c)] for c in found},
        }
    )


@bp.get("/category/<category>", unquote=True)
async def category(request: Request, category: str) -> HTTPResponse:
    n = _movers_limit(request)
    try:
        lists = by_category(category)
    except UnknownCategory as exc:
        raise not_found("unknown category", str(exc)) from None
    movers, reason = await _movers_or_reason(request, lists, n)
    return json_response(
        {
            "category": lists[0].category,
            "count": len(lists),
            "watchlists": [watchlist_view(wl, movers.get(wl.name), reason) for wl in lists],
        }
    )


@bp.get("/<name>", unquote=True)
async def one(request: Request, name: str) -> HTTPResponse:
    n = _movers_limit(request)
    wl = _get(name)
    movers = await _movers(request, [wl.name], n) if wl.dynamic else {}
    return json_response(watchlist_view(wl, movers.get(wl.name)))


@bp.post("/merge", ctx_read_only=True)  # changes nothing: exempt from the bearer token
async def merge(request: Request) -> HTTPResponse:
    body = json_object(request)
    check_keys(body, {"watchlists", "names", "limit"})
    requested = string_list(body, "watchlists")
    alias = string_list(body, "names")
    if requested is not None and alias is not None:
        raise bad_request("invalid body", "give either watchlists or names, not both")
    requested = requested if requested is not None else alias
    if not requested:
        raise bad_request("invalid body", "watchlists must be a non-empty list of names")
    unknown = [n for n in requested if not has_watchlist(n)]
    if unknown:
        raise not_found(
            "unknown watchlist",
            f"unknown watchlist(s) {', '.join(map(repr, unknown))}; "
            f"valid watchlists: {', '.join(watchlist_names())}",
        )
    limit = body.get("limit", DEFAULT_MOVERS)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_MOVERS:
        raise bad_request("invalid body", f"limit must be an integer 1..{MAX_MOVERS}")
    lists = [get_watchlist(n) for n in requested]
    movers = await _movers(request, [wl.name for wl in lists], limit)
    symbols = merge_watchlists(
        [wl.name for wl in lists], resolved={k: m.symbols for k, m in movers.items()}
    )
    return json_response(
        {"watchlists": list(dict.fromkeys(wl.name for wl in lists)), "count": len(symbols),
         "symbols": symbols}
    )

