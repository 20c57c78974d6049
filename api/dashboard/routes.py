"""The dashboard's routes: the page at ``/``, its files under ``/dashboard/``, and the few
JSON helpers the page needs beyond the public REST API (docs/dashboard.md).

- ``GET /``: the page; ``GET /dashboard``: redirects there.
- ``GET /dashboard/static/<file>``, ``GET /dashboard/vendor/lightweight-charts.mjs``: files.
- ``GET /dashboard/config``: server time and trading day (the page's defaults follow the
  server's clock), whether a token is needed, the Prefect UI URL, the chart library.
- ``GET /dashboard/quality``: completeness per symbol x trading day in one query.
- ``GET /dashboard/snapshot``: latest close, change % and day volume per symbol (the
  watchlist table's starting values; live messages take over from there).
- ``POST /dashboard/gap-fill``: starts a ``gap-fill`` flow run through Prefect (mutating:
  bearer token when API_TOKEN is set, like every POST).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout
from sanic import Blueprint, HTTPResponse, Request
from sanic.response import redirect

from api.body import bool_field, check_keys, json_object, string_field, string_list
from api.dashboard import assets, prefect, quality
from api.db import connection
from api.errors import bad_request, not_found
from api.params import arg, timeframe_arg, trading_day
from api.responses import json_response
from api.symbols import parse_or_400
from market_bridge.market.calendar import TradingCalendar
from market_bridge.market.symbols import Symbol, parse_symbol
from market_bridge.market.timeframes import TIMEFRAMES
from market_bridge.quality import QUALITY_THRESHOLDS
from market_bridge.queries import bars as bar_queries
from market_bridge.watchlists import UnknownWatchlist, get_watchlist, watchlist_names

log = logging.getLogger("market_bridge.api.dashboard")

bp = Blueprint("dashboard")

LIBRARY_URL = "/dashboard/vendor/lightweight-charts.mjs"
SNAPSHOT_TIMEFRAME = "1m"
MAX_SNAPSHOT_SYMBOLS = 500
DEFAULT_QUALITY_DAYS = 5  # trading days
_DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, PoolClosed,
              OSError, TimeoutError)  # fmt: skip
_GAP_FILL_FIELDS = {"symbols", "watchlist", "from_date", "to_date", "timeframe", "dry_run"}
# The newest 1m bar's symbol: the chart's first symbol when the user has not picked one.
_DEFAULT_SYMBOL_SQL = """
SELECT exchange, symbol FROM md.intraday_bars
WHERE timeframe = '1m' ORDER BY bar_timestamp DESC LIMIT 1
"""


def _now(request: Request) -> datetime:
    now: datetime = request.app.ctx.options.clock()
    return now


def _calendar(request: Request) -> TradingCalendar:
    calendar: TradingCalendar = request.app.ctx.calendar
    return calendar


# ---- page and files ------------------------------------------------------------------


@bp.get("/")
async def index(request: Request) -> HTTPResponse:
    return await assets.send_index(request)


@bp.get("/dashboard")
async def dashboard_redirect(request: Request) -> HTTPResponse:
    return redirect("/")


@bp.get("/dashboard/static/<name>", unquote=True)
async def static_file(request: Request, name: str) -> HTTPResponse:
    return await assets.send_static(request, name)


@bp.get("/dashboard/vendor/lightweight-charts.mjs")
async def chart_library(request: Request) -> HTTPResponse:
    return await assets.send_library(request)


# ---- JSON helpers --------------------------------------------------------------------


async def _default_symbol(request: Request) -> str | None:
    """Best effort: None when the database is slow or down (the page still loads)."""

    async def read() -> str | None:
        async with connection(request) as conn, conn.cursor() as cur:
            await cur.execute(_DEFAULT_SYMBOL_SQL)
            row = await cur.fetchone()
        return parse_symbol(f"{row[0]}:{row[1]}").display if row else None

    with contextlib.suppress(*_DB_ERRORS, psycopg.Error):
        return await asyncio.wait_for(read(), 1.5)
    return None


@bp.get("/dashboard/config")
async def config(request: Request) -> HTTPResponse:
    now = _now(request)
    path = assets.library_path()
    urls = prefect.prefect_urls(request.app)
    return json_response({
        "now": now,
        "trading_day": trading_day(_calendar(request), now),
        "timeframes": list(TIMEFRAMES),
        "auth_required": bool(request.app.ctx.settings.api_token),
        "prefect_ui_url": urls.ui,
        "default_symbol": await _default_symbol(request),
        "chart_library": {
            "available": path is not None,
            "url": LIBRARY_URL,
            "version": assets.library_version(path) if path is not None else None,
            "install_hint": None if path is not None else assets.LIBRARY_INSTALL_HINT,
        },
    })


def _symbol_list(raw: str | None) -> list[Symbol]:
    if raw is None:
        return []
    return list(dict.fromkeys(parse_or_400(s.strip()) for s in raw.split(",") if s.strip()))


def _watchlist_symbols(name: str) -> list[Symbol]:
    try:
        wl = get_watchlist(name)
    except UnknownWatchlist:
        raise not_found(
            "unknown watchlist",
            f"unknown watchlist {name!r}; valid watchlists: {', '.join(watchlist_names())}",
        ) from None
    members = wl.universe if wl.dynamic else wl.symbols
    return [parse_symbol(s) for s in members]


def _date_arg(request: Request, name: str) -> date | None:
    raw = arg(request, name)
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise bad_request("invalid date", f"{name}={raw!r}: expected a date, e.g. 2024-01-30") from None


@bp.get("/dashboard/quality")
async def quality_grid(request: Request) -> HTTPResponse:
    timeframe = timeframe_arg(request)
    symbols = _symbol_list(arg(request, "symbols"))
    watchlist = arg(request, "watchlist")
    if watchlist:
        symbols = list(dict.fromkeys([*symbols, *_watchlist_symbols(watchlist)]))
    if not symbols:
        raise bad_request("missing symbols", "give symbols=RELIANCE,TCS and/or watchlist=NIFTY50")
    if len(symbols) > quality.MAX_SYMBOLS:
        raise bad_request("too many symbols", f"{len(symbols)} symbols; at most {quality.MAX_SYMBOLS}")
    calendar, now = _calendar(request), _now(request)
    last = _date_arg(request, "to") or trading_day(calendar, now)
    first = _date_arg(request, "from")
    if first is None:
        first = last
        for _ in range(DEFAULT_QUALITY_DAYS - 1):
            first = calendar.previous_trading_day(first)
    if first > last:
        raise bad_request("invalid range", f"from ({first}) is after to ({last}); swap them")
    span = quality.MAX_INTRADAY_DAYS if timeframe.is_intraday else quality.MAX_DAY_DAYS
    if (last - first).days + 1 > span:
        raise bad_request("range too long", f"at most {span} days for timeframe {timeframe.name}")
    # Days still to come have nothing due yet: not columns of the heatmap.
    days = await asyncio.to_thread(
        quality.expected_by_day, calendar, timeframe, first, min(last, now.date()), now
    )
    expected = [ts for labels in days.values() for ts in labels]
    async with connection(request) as conn:
        present = await quality.count_present(conn, symbols, timeframe, expected)
    return json_response({
        "timeframe": timeframe.name,
        "from": first,
        "to": last,
        "as_of": now,
        "days": sorted(days),
        "count": len(symbols),
        "symbols": quality.grid(symbols, days, present),
        "quality_thresholds": {label: bound for bound, label in QUALITY_THRESHOLDS},
        "calendar_known_until": calendar.known_until,
        "beyond_known_holidays": calendar.is_beyond_known_holidays(last),
    })


@bp.get("/dashboard/snapshot")
async def snapshot(request: Request) -> HTTPResponse:
    symbols = _symbol_list(arg(request, "symbols"))
    if not symbols:
        raise bad_request("missing symbols", "give symbols=RELIANCE,TCS")
    if len(symbols) > MAX_SNAPSHOT_SYMBOLS:
        raise bad_request("too many symbols", f"{len(symbols)}; at most {MAX_SNAPSHOT_SYMBOLS}")
    by_exchange: dict[str, list[str]] = defaultdict(list)
    for s in symbols:
        by_exchange[s.exchange].append(s.tradingsymbol)
    out: dict[str, Any] = {}
    async with connection(request) as conn:
        for exchange, names in by_exchange.items():
            rows = await bar_queries.latest_snapshots(conn, exchange, names, SNAPSHOT_TIMEFRAME)
            for row in rows:
                change = pct = None
                if row.previous_close:
                    change = row.last_price - row.previous_close
                    pct = round(change * 100.0 / row.previous_close, 4)
                display = parse_symbol(f"{exchange}:{row.symbol}").display
                out[display] = {
                    "last_price": row.last_price,
                    "previous_close": row.previous_close,
                    "change": change,
                    "change_percent": pct,
                    "volume": row.volume,
                    "as_of": row.bar_timestamp,
                }
    return json_response({"timeframe": SNAPSHOT_TIMEFRAME, "count": len(out), "symbols": out})


@bp.post("/dashboard/gap-fill")
async def gap_fill(request: Request) -> HTTPResponse:
    body = json_object(request)
    check_keys(body, _GAP_FILL_FIELDS)
    symbols = [parse_or_400(s).display for s in (string_list(body, "symbols") or [])]
    watchlist = string_field(body, "watchlist")
    if watchlist is not None:
        try:
            watchlist = get_watchlist(watchlist).name
        except UnknownWatchlist:
            raise not_found("unknown watchlist", f"unknown watchlist {watchlist!r}") from None
    if not symbols and not watchlist:
        raise bad_request("invalid body", 'give "symbols": [...] and/or "watchlist": "..."')
    dates: dict[str, date | None] = {}
    for key in ("from_date", "to_date"):
        raw = string_field(body, key)
        try:
            dates[key] = date.fromisoformat(raw) if raw else None
        except ValueError:
            raise bad_request("invalid body", f"{key}={raw!r}: expected YYYY-MM-DD") from None
    first, last = dates["from_date"], dates["to_date"]
    if first and last and first > last:
        raise bad_request("invalid range", f"from_date ({first}) is after to_date ({last})")
    raw_tf = string_field(body, "timeframe") or "1m"
    if raw_tf not in TIMEFRAMES:
        raise bad_request("unknown timeframe", f"timeframe={raw_tf!r}; valid: {', '.join(TIMEFRAMES)}")
    parameters: dict[str, Any] = {"timeframe": raw_tf, "dry_run": bool(bool_field(body, "dry_run"))}
    if symbols:
        parameters["symbols"] = list(dict.fromkeys(symbols))
    if watchlist:
        parameters["watchlist"] = watchlist
    if first:
        parameters["from_date"] = first.isoformat()
    if last:
        parameters["to_date"] = last.isoformat()
    urls = prefect.prefect_urls(request.app)
    run = await prefect.create_gap_fill_run(urls, parameters)
    run_id = run.get("id")
    log.info("dashboard: gap-fill flow run %s requested with %s", run_id, parameters)
    state = run.get("state") or {}
    return json_response(
        {
            "flow_run_id": run_id,
            "flow_run_name": run.get("name"),
            "deployment_id": run.get("deployment_id"),
            "state": state.get("type") if isinstance(state, dict) else None,
            "parameters": parameters,
            "ui_url": f"{urls.ui}/runs/flow-run/{run_id}",
            "prefect_ui_url": urls.ui,
        },
        status=201,
    )
