"""Kite's REST API: instruments, historical candles, session exchange.

We use the official ``kiteconnect`` client for the HTTP calls (its URL building, response
parsing and exception types are the reference) and add what it lacks: splitting a range
into requests within Kite's per-interval span limit, one shared 3 requests/s limiter,
retries with backoff on 429/5xx/network errors, and our error classes (docs/kite.md).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from market_bridge.instruments import Instrument, from_mapping
from market_bridge.kite.errors import KiteInputError, KiteRetryableError, KiteTokenError
from market_bridge.kite.models import IST
from market_bridge.kite.ratelimit import RateLimiter, historical_limiter
from market_bridge.market.timeframes import Timeframe

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Candle:
    start: datetime  # aware, IST; the candle's label (its start)
    open: float
    high: float
    low: float
    close: float
    volume: int
    oi: int | None = None


@dataclass(frozen=True, slots=True)
class RequestWindow:
    start: datetime  # aware, inclusive
    end: datetime  # aware, inclusive (Kite includes a candle that starts at `to`)


def plan_requests(timeframe: Timeframe, start: datetime, end: datetime) -> list[RequestWindow]:
    """Split [start, end] into windows within Kite's maximum span for the interval.

    Each window spans strictly less than ``max_days_per_request`` days, and consecutive
    windows do not overlap (the next starts one second after the previous ends), so no
    candle is fetched twice.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("plan_requests needs aware datetimes")
    if end < start:
        raise ValueError(f"range end {end.isoformat()} is before its start {start.isoformat()}")
    span = timedelta(days=timeframe.max_days_per_request) - timedelta(seconds=1)
    windows: list[RequestWindow] = []
    cur = start.astimezone(IST)
    last = end.astimezone(IST)
    while cur <= last:
        stop = min(cur + span, last)
        windows.append(RequestWindow(cur, stop))
        cur = stop + timedelta(seconds=1)
    return windows


def _classify(exc: Exception) -> Exception:
    """Map kiteconnect/requests exceptions onto our three kinds."""
    if isinstance(exc, kex.TokenException | kex.PermissionException):
        return KiteTokenError(str(exc))
    code = getattr(exc, "code", None)
    if isinstance(exc, kex.InputException):
        return KiteInputError(str(exc))
    if isinstance(exc, kex.KiteException):
        if code == 429 or (isinstance(code, int) and code >= 500):
            return KiteRetryableError(f"Kite answered {code}: {exc}", status=code)
        if code == 403:
            return KiteTokenError(str(exc))
        return KiteInputError(f"Kite answered {code}: {exc}")
    if isinstance(exc, requests.exceptions.RequestException):
        return KiteRetryableError(f"network error talking to Kite: {type(exc).__name__}")
    return exc


class KiteRest:
    def __init__(
        self,
        api_key: str,
        access_token: str | None = None,
        root: str | None = None,
        limiter: RateLimiter | None = None,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 10.0,
        timeout: int = 7,
    ) -> None:
        self._kite = KiteConnect(api_key=api_key, access_token=access_token, root=root,
                                 timeout=timeout)
        self.limiter = limiter or historical_limiter(api_key)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.retries = 0
        self.requests = 0

    def __repr__(self) -> str:  # never show the key or token
        return f"KiteRest(root={self._kite.root!r})"

    def set_access_token(self, token: str) -> None:
        self._kite.set_access_token(token)

    def login_url(self) -> str:
        return str(self._kite.login_url())

    # -- calls ----------------------------------------------------------------------
    def _call(self, fn: Callable[[], T], limited: bool = False, what: str = "request") -> T:
        attempt = 0
        while True:
            if limited:
                self.limiter.acquire()
            self.requests += 1
            try:
                return fn()
            except Exception as raw:
                exc = _classify(raw)
                if not isinstance(exc, KiteRetryableError) or attempt >= self.max_retries:
                    raise exc from None
                attempt += 1
                self.retries += 1
                delay = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.0)  # jitter: concurrent callers spread out
                log.warning("%s failed (%s); retry %d in %.1fs", what, exc, attempt, delay)
                time.sleep(delay)

    def instruments(self, exchange: str | None = None) -> list[Instrument]:
        rows: list[dict[str, Any]] = self._call(
            lambda: self._kite.instruments(exchange) if exchange else self._kite.instruments(),
            what="instruments dump",
        )
        return [from_mapping(r) for r in rows]

    def historical(
        self, token: int, timeframe: Timeframe, window: RequestWindow, oi: bool = False
    ) -> list[Candle]:
        # kiteconnect formats exact datetime objects as naive wall clock: give it IST.
        start = window.start.astimezone(IST).replace(tzinfo=None)
        end = window.end.astimezone(IST).replace(tzinfo=None)
        rows = self._call(
            lambda: self._kite.historical_data(token, start, end, timeframe.kite_interval,
                                               oi=oi),
            limited=True,
            what=f"historical {token} {timeframe.kite_interval} {start:%Y-%m-%d}",
        )
        return [
            Candle(
                start=r["date"].astimezone(IST),
                open=float(r["open"]), high=float(r["high"]), low=float(r["low"]),
                close=float(r["close"]), volume=int(r["volume"]),
                oi=int(r["oi"]) if "oi" in r else None,
            )
            for r in rows
        ]

    def historical_range(
        self, token: int, timeframe: Timeframe, start: datetime, end: datetime,
        oi: bool = False,
    ) -> Iterator[tuple[RequestWindow, list[Candle]]]:
        for window in plan_requests(timeframe, start, end):
            yield window, self.historical(token, timeframe, window, oi=oi)

    def generate_session(self, request_token: str, api_secret: str) -> dict[str, Any]:
        data: dict[str, Any] = self._call(
            lambda: self._kite.generate_session(request_token, api_secret=api_secret),
            what="session exchange",
        )
        return data

    def profile(self) -> dict[str, Any]:
        data: dict[str, Any] = self._call(self._kite.profile, what="profile")
        return data
