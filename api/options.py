"""API-only options (the process-wide settings live in ``market_bridge.settings``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from market_bridge.kite.models import IST
from market_bridge.market.calendar import TradingCalendar

CORS_ENV = "MB_CORS_ORIGINS"
MIB = 1024 * 1024


def now_ist() -> datetime:
    return datetime.now(IST)


@dataclass(frozen=True)
class ApiOptions:
    cors_origins: tuple[str, ...] = ()  # exact origins, or "*"; empty: no CORS headers
    request_max_size: int = MIB
    pool_min_size: int = 1
    pool_max_size: int = 10
    pool_timeout: float = 5.0  # seconds a request waits for a connection before 503
    collector_stale_after: float = 5.0  # seconds without heartbeat: collector "stale"
    streaming_stale_after: float = 10.0  # seconds without heartbeat: process "stale"
    # Injected for tests; defaults: the user's calendar (with overrides), the wall clock.
    calendar: TradingCalendar | None = field(default=None, compare=False)
    clock: Callable[[], datetime] = now_ist


def cors_origins_from_env(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    raw = (environ if environ is not None else os.environ).get(CORS_ENV, "")
    return tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())


def options_from_env() -> ApiOptions:
    return ApiOptions(cors_origins=cors_origins_from_env())
