"""Helpers for the API tests (no tests here): a real Sanic server on a loopback port in a
background thread, settings pointing at a test database, and seed data.

One server per test module: start it in a module-scoped fixture with ``ApiServer``.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any

import httpx
import psycopg
from sanic import Sanic

from api.app import create_app
from api.options import ApiOptions
from market_bridge.kite.models import IST
from market_bridge.market.calendar import TradingCalendar
from market_bridge.settings import Settings, load_settings

Sanic.test_mode = True
_names = itertools.count()

# A Tuesday; Friday 2024-01-26 (Republic Day) is an NSE holiday.
NOW = datetime(2024, 1, 30, 12, 0, 30, tzinfo=IST)


@cache
def shared_calendar() -> TradingCalendar:
    """One calendar for the test session (building one reads pandas_market_calendars)."""
    return TradingCalendar()


def fixed_clock() -> datetime:
    return NOW


def make_settings(dsn: str, api_token: str | None = None) -> Settings:
    base = load_settings()
    return replace(base, db=replace(base.db, external_url=dsn), api_token=api_token)


def make_options(**overrides: Any) -> ApiOptions:
    defaults: dict[str, Any] = {
        "calendar": shared_calendar(),
        "clock": fixed_clock,
        "pool_timeout": 2.0,
        "pool_max_size": 4,
    }
    return ApiOptions(**(defaults | overrides))


class ApiServer:
    """``create_app`` served by ``app.create_server`` on a socket bound to port 0."""

    def __init__(self, settings: Settings, options: ApiOptions) -> None:
        self.app = create_app(settings, f"mb_test_{next(_names)}", options=options)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="api-test-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await self.app.create_server(sock=self._sock, return_asyncio_server=True)
        assert server is not None
        await server.startup()
        await server.before_start()
        await server.after_start()
        await server.start_serving()
        self._ready.set()
        await self._stop.wait()
        await server.before_stop()
        server.close()
        await server.wait_closed()
        await server.after_stop()

    def start(self) -> ApiServer:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"API server did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=20, **kwargs)


@contextmanager
def running_api(
    dsn: str, *, api_token: str | None = None, **option_overrides: Any
) -> Iterator[ApiServer]:
    server = ApiServer(make_settings(dsn, api_token), make_options(**option_overrides)).start()
    try:
        yield server
    finally:
        server.stop()


# ---- seed data ---------------------------------------------------------------------


@dataclass(frozen=True)
class SeedBar:
    exchange: str
    symbol: str
    token: int
    ts: datetime
    timeframe: str
    open: float
    high: float
    low: float
    close: float
    volume: int
    trades_count: int | None
    vwap: float | None
    oi: int | None
    provenance: str


def session_minutes(day: date, first: time = time(9, 15), last: time = time(15, 29)) -> list[datetime]:
    start = datetime.combine(day, first, IST)
    end = datetime.combine(day, last, IST)
    return [start + timedelta(minutes=i) for i in range(int((end - start).total_seconds() // 60) + 1)]


def make_bars(
    symbol: str,
    token: int,
    stamps: Iterable[datetime],
    *,
    base: float,
    step: float,
    provenance: str = "historical",
    exchange: str = "NSE",
    timeframe: str = "1m",
    vwap_every_other: bool = True,
) -> list[SeedBar]:
    """A steady walk: close = base + step*i; every other bar without a VWAP (so the API's
    typical-price fallback is exercised)."""
    bars = []
    for i, ts in enumerate(stamps):
        close = round(base + step * i, 4)
        open_ = round(close - step / 2, 4)
        high = round(max(open_, close) + 0.25, 4)
        low = round(min(open_, close) - 0.25, 4)
        vwap = round((high + low + close) / 3 + 0.01, 4) if (i % 2 == 0 or not vwap_every_other) else None
        bars.append(
            SeedBar(exchange, symbol, token, ts, timeframe, open_, high, low, close,
                    1000 + i, 10 + i % 5, vwap, None, provenance)
        )
    return bars


def insert_bars(dsn: str, bars: Sequence[SeedBar]) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO md.intraday_bars (exchange, symbol, instrument_token, bar_timestamp,
                   timeframe, open, high, low, close, volume, trades_count, vwap, oi, provenance)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            [
                (b.exchange, b.symbol, b.token, b.ts, b.timeframe, b.open, b.high, b.low,
                 b.close, b.volume, b.trades_count, b.vwap, b.oi, b.provenance)
                for b in bars
            ],
        )


def insert_instruments(dsn: str, rows: Sequence[tuple[str, str, int, str]]) -> None:
    """Rows of (exchange, tradingsymbol, instrument_token, instrument_type)."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO md.instruments (exchange, tradingsymbol, instrument_token, name,
                   instrument_type, segment)
               VALUES (%s, %s, %s, %s, %s, %s)""",
            [(ex, sym, tok, sym, kind, ex) for ex, sym, tok, kind in rows],
        )


def execute(dsn: str, statement: str, params: Sequence[Any] | dict[str, Any] = ()) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(statement, params)
