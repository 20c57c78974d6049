"""``/intraday/*``: bars, latest, today, stats, VWAP, ticks, order book, gaps, completeness.

Semantics (also in docs/api.md and the OpenAPI document):

- ``bars``: the most recent ``limit`` bars with their label in ``[from, to]``, oldest first.
- ``latest``: the newest stored bar.
- ``today``: the bars of the current IST trading day (today, or the last trading day on a
  weekend/holiday).
- ``stats``/``vwap``/``gaps``/``completeness`` default to that trading day; with ``from``
  only, the range runs to now; with ``to`` only, it starts at IST midnight of ``to``'s day.
- ``previous_close``: close of the last bar before IST midnight of the range's first day.
- ``vwap``: per bar, cumulative sum(bar VWAP, or typical price, x volume) / cumulative
  volume, reset at each IST midnight.
- ``gaps``/``completeness`` count only NSE trading minutes (``expected_bar_starts``) and
  only bars that have closed by now.

``bars``, ``today`` and ``latest`` answers with at least one bar go through the worker's
bar cache (``api.bar_cache``): exact, a committed write shows in the next request.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from sanic import Blueprint, HTTPResponse, Request

from api.bar_cache import BarCache
from api.db import connection
from api.errors import ApiError, bad_request
from api.formats import bars_table, negotiate, table_rendered
from api.params import (
    TimeRange,
    day_range,
    ist_midnight,
    limit_arg,
    time_range,
    timeframe_arg,
    trading_day,
)
from api.responses import Rendered, json_rendered, json_response
from api.symbols import ensure_known, parse_or_400
from market_bridge.market.calendar import TradingCalendar, expected_bar_starts
from market_bridge.market.symbols import Symbol
from market_bridge.market.timeframes import Timeframe
from market_bridge.quality import QUALITY_THRESHOLDS, completeness, find_gaps, present_count
from market_bridge.queries import bars as bar_queries
from market_bridge.queries import order_book as book_queries
from market_bridge.queries import ticks as tick_queries
from market_bridge.queries.bars import BarRow
from market_bridge.queries.ticks import TickRow

bp = Blueprint("intraday", url_prefix="/intraday")

# Longest range gaps/completeness will enumerate (expected bars are listed one by one).
MAX_INTRADAY_QUALITY_SPAN = timedelta(days=366)
MAX_DAY_QUALITY_SPAN = timedelta(days=366 * 20)
# Ranges up to this long get their expected bars computed on the event loop (and cached).
INLINE_CALENDAR_SPAN = timedelta(days=3)
EXPECTED_CACHE_SIZE = 256


# ---- helpers -----------------------------------------------------------------------


def _now(request: Request) -> datetime:
    now: datetime = request.app.ctx.options.clock()
    return now


def _calendar(request: Request) -> TradingCalendar:
    calendar: TradingCalendar = request.app.ctx.calendar
    return calendar


def _head(symbol: Symbol, timeframe: Timeframe | None = None) -> dict[str, Any]:
    head: dict[str, Any] = {"symbol": symbol.tradingsymbol, "exchange": symbol.exchange}
    if timeframe is not None:
        head["timeframe"] = timeframe.name
    return head


def tick_view(tick: TickRow) -> dict[str, Any]:
    return {
        "timestamp": tick.tick_timestamp,
        "price": tick.price,
        "quantity": tick.quantity,
        "trade_type": tick.trade_type,
        "volume_traded": tick.volume_traded,
        "volume_delta": tick.volume_delta,
        "average_price": tick.average_price,
        "total_buy_quantity": tick.total_buy_quantity,
        "total_sell_quantity": tick.total_sell_quantity,
        "bid_price": tick.bid_price,
        "bid_quantity": tick.bid_quantity,
        "ask_price": tick.ask_price,
        "ask_quantity": tick.ask_quantity,
        "oi": tick.oi,
        "last_trade_time": tick.last_trade_time,
        "received_at": tick.received_at,
        "mode": tick.mode,
    }


def _bars_rendered(
    symbol: Symbol,
    timeframe: Timeframe,
    bars: list[BarRow],
    fmt: str,
    extra: dict[str, Any],
) -> Rendered:
    if fmt != "json":
        metadata = {"symbol": symbol.tradingsymbol, "exchange": symbol.exchange,
                    "timeframe": timeframe.name}
        stem = f"{symbol.exchange}_{symbol.tradingsymbol}_{timeframe.name}"
        return table_rendered(bars_table(bars, metadata), fmt, stem)
    body = _head(symbol, timeframe) | extra | {
        "count": len(bars),
        # orjson serialises a BarRow as the bar object itself (its fields are the answer's
        # keys, in order): no dict per bar.
        "bars": bars,
    }
    return json_rendered(body)


async def _cached(
    request: Request,
    sym: Symbol,
    key: tuple[Any, ...],
    answer: Callable[[], Awaitable[tuple[Rendered, bool]]],
) -> HTTPResponse:
    """``key``'s answer from the worker's bar cache, else ``answer()`` (the rendered answer
    and whether it may be kept: it holds at least one bar), stored under the ticket taken
    before its query."""
    cache: BarCache = request.app.ctx.bar_cache
    cached = await cache.get(key)
    if cached is not None:
        return cached.response()
    ticket = cache.ticket(sym.exchange, sym.tradingsymbol)
    rendered, keep = await answer()
    if keep:
        cache.put(key, ticket, rendered)
    return rendered.response()


def _session_range(request: Request, rng: TimeRange) -> tuple[TimeRange, date | None]:
    """Defaults for day-scoped endpoints (module docstring); the trading day when defaulted."""
    if rng.start is None and rng.end is None:
        day = trading_day(_calendar(request), _now(request))
        return day_range(day), day
    if rng.start is None:
        assert rng.last is not None
        return TimeRange(ist_midnight(rng.last), rng.end), None
    return rng, None


def _quality_range(request: Request, timeframe: Timeframe) -> tuple[datetime, datetime]:
    rng, _ = _session_range(request, time_range(request))
    assert rng.start is not None
    end = rng.end if rng.end is not None else max(_now(request), rng.start)
    limit = MAX_INTRADAY_QUALITY_SPAN if timeframe.is_intraday else MAX_DAY_QUALITY_SPAN
    if end - rng.start > limit:
        raise bad_request(
            "range too long",
            f"at most {limit.days} days for timeframe {timeframe.name}; split the range",
        )
    return rng.start, end


@dataclass(frozen=True, slots=True)
class _Expected:
    starts: list[datetime]  # expected_bar_starts, in order (not to be modified)
    labels: frozenset[datetime]  # the same, hashed once


def _expected(
    calendar: TradingCalendar, timeframe: Timeframe, start: datetime, end: datetime
) -> _Expected:
    starts = expected_bar_starts(calendar, timeframe, start, end)
    return _Expected(starts, frozenset(starts))


# Short ranges (a day: the usual request, for every symbol in turn) are computed and hashed
# once per worker: ~0.7 ms of CPU a request otherwise. The calendar is the app's, fixed for
# its lifetime, and part of the key.
_expected_short = lru_cache(maxsize=EXPECTED_CACHE_SIZE)(_expected)


async def _expected_and_present(
    request: Request, raw_symbol: str, timeframe: Timeframe, start: datetime, end: datetime
) -> tuple[Symbol, _Expected, list[datetime]]:
    """The expected bars (only those closed by now) and the stored labels in [start, end)."""
    symbol = parse_or_400(raw_symbol)
    now = _now(request)
    calendar = _calendar(request)
    if end - start <= INLINE_CALENDAR_SPAN:  # ~0.5 ms a day: less than a thread hop costs
        calendar_work: asyncio.Future[_Expected] | None = None
        expected = _expected_short(calendar, timeframe, start, end)
    else:  # can take a while for long ranges: off the event loop, while the database works
        calendar_work = asyncio.ensure_future(
            asyncio.to_thread(_expected, calendar, timeframe, start, end)
        )
    try:
        async with connection(request) as conn:
            await ensure_known(conn, symbol)
            present = await bar_queries.bar_starts(
                conn, symbol.exchange, symbol.tradingsymbol, timeframe.name, start, end
            )
    finally:
        if calendar_work is not None:
            expected = await calendar_work
    # A bar that has not closed yet cannot be missing (expected is in order: bisect).
    closed = bisect_right(expected.starts, now, key=timeframe.bar_end)
    if closed < len(expected.starts):
        starts = expected.starts[:closed]
        expected = _Expected(starts, frozenset(starts))
    return symbol, expected, present


def _quality_head(
    request: Request, symbol: Symbol, timeframe: Timeframe, start: datetime, end: datetime
) -> dict[str, Any]:
    calendar = _calendar(request)
    last_day = (end - timedelta(microseconds=1)).date()
    return _head(symbol, timeframe) | TimeRange(start, end).echo() | {
        "calendar_known_until": calendar.known_until,
        "beyond_known_holidays": calendar.is_beyond_known_holidays(last_day),
    }


# ---- endpoints ---------------------------------------------------------------------


# bars, latest and today: an answer with at least one bar depends only on the stored bars
# of its symbol and on the parameters in its cache key (api.bar_cache; docs/api.md, "Bar
# cache"). Validation runs first: a 400 is never a cache question.


@bp.get("/bars/<symbol>", unquote=True)
async def bars(request: Request, symbol: str) -> HTTPResponse:
    timeframe = timeframe_arg(request)
    rng = time_range(request)
    limit = limit_arg(request)
    fmt = negotiate(request)
    sym = parse_or_400(symbol)

    async def answer() -> tuple[Rendered, bool]:
        async with connection(request) as conn:
            await ensure_known(conn, sym)
            # Without a range the recent window is read first (from now), but the answer
            # is the latest ``limit`` bars of everything: it does not depend on the clock.
            rows = await bar_queries.bars_in_range(
                conn, sym.exchange, sym.tradingsymbol, timeframe.name, rng.start, rng.end,
                limit, now=_now(request),
            )  # fmt: skip
        rendered = _bars_rendered(sym, timeframe, rows, fmt, rng.echo() | {"limit": limit})
        return rendered, bool(rows)  # an empty answer also depends on md.instruments (404)

    key = ("bars", sym.exchange, sym.tradingsymbol, timeframe.name, rng.start, rng.end, limit,
           fmt)  # fmt: skip
    return await _cached(request, sym, key, answer)


@bp.get("/latest/<symbol>", unquote=True)
async def latest(request: Request, symbol: str) -> HTTPResponse:
    timeframe = timeframe_arg(request)
    sym = parse_or_400(symbol)

    async def answer() -> tuple[Rendered, bool]:
        async with connection(request) as conn:
            await ensure_known(conn, sym)
            row = await bar_queries.latest_bar(
                conn, sym.exchange, sym.tradingsymbol, timeframe.name, now=_now(request)
            )
        if row is None:
            raise ApiError(404, "no data", f"no {timeframe.name} bars stored for {sym}")
        return json_rendered(_head(sym, timeframe) | {"bar": row}), True

    return await _cached(request, sym, ("latest", sym.exchange, sym.tradingsymbol,
                                        timeframe.name), answer)  # fmt: skip


@bp.get("/today/<symbol>", unquote=True)
async def today(request: Request, symbol: str) -> HTTPResponse:
    timeframe = timeframe_arg(request)
    limit = limit_arg(request)
    fmt = negotiate(request)
    sym = parse_or_400(symbol)
    day = trading_day(_calendar(request), _now(request))  # the clock picks the day: in the key
    rng = day_range(day)

    async def answer() -> tuple[Rendered, bool]:
        async with connection(request) as conn:
            await ensure_known(conn, sym)
            rows = await bar_queries.bars_in_range(
                conn, sym.exchange, sym.tradingsymbol, timeframe.name, rng.start, rng.end, limit
            )
        return _bars_rendered(sym, timeframe, rows, fmt, {"date": day} | rng.echo()), bool(rows)

    key = ("today", sym.exchange, sym.tradingsymbol, timeframe.name, day, limit, fmt)
    return await _cached(request, sym, key, answer)


@bp.get("/stats/<symbol>", unquote=True)
async def stats(request: Request, symbol: str) -> HTTPResponse:
    timeframe = timeframe_arg(request)
    rng, day = _session_range(request, time_range(request))
    sym = parse_or_400(symbol)
    key = (sym.exchange, sym.tradingsymbol, timeframe.name)
    async with connection(request) as conn:
        await ensure_known(conn, sym)
        agg = await bar_queries.range_stats(conn, *key, rng.start, rng.end)
        previous_close = (
            await bar_queries.close_before(conn, *key, ist_midnight(rng.start))
            if rng.start is not None
            else None
        )
    change = change_percent = None
    if agg.close is not None and previous_close:
        change = agg.close - previous_close
        change_percent = change * 100.0 / previous_close
    body = _head(sym, timeframe) | ({"date": day} if day else {}) | rng.echo() | {
        "bar_count": agg.bar_count,
        "open": agg.open,
        "high": agg.high,
        "low": agg.low,
        "close": agg.close,
        "volume": agg.volume,
        "vwap": agg.vwap,
        "previous_close": previous_close,
        "change": change,
        "change_percent": change_percent,
        "first_bar_at": agg.first_bar_at,
        "last_bar_at": agg.last_bar_at,
    }
    return json_response(body)


@bp.get("/vwap/<symbol>", unquote=True)
async def vwap(request: Request, symbol: str) -> HTTPResponse:
    timeframe = timeframe_arg(request)
    limit = limit_arg(request)
    rng, day = _session_range(request, time_range(request))
    assert rng.start is not None
    sym = parse_or_400(symbol)
    async with connection(request) as conn:
        await ensure_known(conn, sym)
        points = await bar_queries.vwap_series(
            conn,
            sym.exchange,
            sym.tradingsymbol,
            timeframe.name,
            day_start=ist_midnight(rng.start),
            start=rng.start,
            end=rng.end,
            limit=limit,
        )
    last = points[-1] if points else None
    body = _head(sym, timeframe) | ({"date": day} if day else {}) | rng.echo() | {
        "vwap": last.vwap if last else None,
        "as_of": last.bar_timestamp if last else None,
        "count": len(points),
        "series": [
            {
                "timestamp": p.bar_timestamp,
                "vwap": p.vwap,
                "close": p.close,
                "volume": p.volume,
                "cumulative_volume": p.cumulative_volume,
            }
            for p in points
        ],
    }
    return json_response(body)


@bp.get("/ticks/<symbol>", unquote=True)
async def ticks(request: Request, symbol: str) -> HTTPResponse:
    rng = time_range(request)
    limit = limit_arg(request)
    sym = parse_or_400(symbol)
    async with connection(request) as conn:
        await ensure_known(conn, sym)
        rows = await tick_queries.ticks_in_range(
            conn, sym.exchange, sym.tradingsymbol, rng.start, rng.end, limit
        )
    body = _head(sym) | rng.echo() | {
        "limit": limit,
        "count": len(rows),
        "ticks": [tick_view(t) for t in rows],
    }
    return json_response(body)


@bp.get("/orderbook/<symbol>", unquote=True)
async def orderbook(request: Request, symbol: str) -> HTTPResponse:
    sym = parse_or_400(symbol)
    async with connection(request) as conn:
        await ensure_known(conn, sym)
        book = await book_queries.latest_snapshot(conn, sym.exchange, sym.tradingsymbol)
    if book is None:
        raise ApiError(404, "no data", f"no order book snapshot stored for {sym}")
    bids = [
        {"price": p, "quantity": q, "orders": o}
        for p, q, o in zip(book.bid_prices, book.bid_quantities, book.bid_orders, strict=False)
    ]
    asks = [
        {"price": p, "quantity": q, "orders": o}
        for p, q, o in zip(book.ask_prices, book.ask_quantities, book.ask_orders, strict=False)
    ]
    # Kite pads empty depth levels with zeros: a zero price is "no order", not a quote.
    best_bid = book.bid_prices[0] if book.bid_prices and book.bid_prices[0] > 0 else None
    best_ask = book.ask_prices[0] if book.ask_prices and book.ask_prices[0] > 0 else None
    spread = mid = None
    if best_bid is not None and best_ask is not None:
        spread, mid = best_ask - best_bid, (best_ask + best_bid) / 2
    body = _head(sym) | {
        "timestamp": book.snapshot_timestamp,
        "bids": bids,
        "asks": asks,
        "total_buy_quantity": book.total_buy_quantity,
        "total_sell_quantity": book.total_sell_quantity,
        "best_bid": best_bid,
        "best_ask": best_ask,
        "spread": spread,
        "mid": mid,
    }
    return json_response(body)


@bp.get("/gaps/<symbol>", unquote=True)
async def gaps(request: Request, symbol: str) -> HTTPResponse:
    timeframe = timeframe_arg(request)
    start, end = _quality_range(request, timeframe)
    sym, expected, present = await _expected_and_present(request, symbol, timeframe, start, end)
    found = find_gaps(expected.starts, present, timeframe)
    actual = present_count(expected.labels, present)
    body = _quality_head(request, sym, timeframe, start, end) | {
        "expected_bars": len(expected.starts),
        "actual_bars": actual,
        "missing_bars": sum(g.missing_bars for g in found),
        "gap_count": len(found),
        "gaps": [
            {"start": g.start, "end": g.end, "missing_bars": g.missing_bars} for g in found
        ],
    }
    return json_response(body)


@bp.get("/completeness/<symbol>", unquote=True)
async def completeness_report(request: Request, symbol: str) -> HTTPResponse:
    timeframe = timeframe_arg(request)
    start, end = _quality_range(request, timeframe)
    sym, expected, present = await _expected_and_present(request, symbol, timeframe, start, end)
    result = completeness(len(expected.starts), present_count(expected.labels, present))
    body = _quality_head(request, sym, timeframe, start, end) | {
        "completeness": result.percent,
        "quality": result.quality,
        "expected": result.expected,
        "actual": result.actual,
        "missing": result.missing,
        "quality_thresholds": {label: bound for bound, label in QUALITY_THRESHOLDS},
    }
    return json_response(body)
