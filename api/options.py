"""API-only options (the process-wide settings live in ``market_bridge.settings``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from market_bridge.kite.models import IST
from market_bridge.market.calendar import TradingCalendar

CORS_ENV = "MB_CORS_ORIGINS"
BAR_CACHE_ENV = "MB_API_BAR_CACHE_MB"
MIB = 1024 * 1024
DEFAULT_BAR_CACHE_MB = 64


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
    # Rendered bar answers kept per worker (api.bar_cache); 0 disables the cache.
    bar_cache_bytes: int = DEFAULT_BAR_CACHE_MB * MIB
    bar_cache_ttl: float = 300.0  # seconds: bounds what retention's drop_chunks leaves stale
    # Injected for tests; defaults: the user's calendar (with overrides), the wall clock.
    calendar: TradingCalendar | None = field(default=None, compare=False)
    clock: Callable[[], datetime] = now_ist


def cors_origins_from_env(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    raw = (environ if environ is not None else os.environ).get(CORS_ENV, "")
    return tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())


def bar_cache_bytes_from_env(environ: dict[str, str] | None = None) -> int:
    raw = (environ if environ is not None else os.environ).get(BAR_CACHE_ENV, "").strip()
    if not raw:
        return DEFAULT_BAR_CACHE_MB * MIB
    try:
        mib = float(raw)
    except ValueError:
        raise ValueError(f"{BAR_CACHE_ENV}={raw!r} is not a number (MiB; 0 disables)") from None
    if not mib >= 0 or mib == float("inf"):
        raise ValueError(f"{BAR_CACHE_ENV}={raw!r}: expected a size in MiB >= 0 (0 disables)")
    return int(mib * MIB)


def options_from_env() -> ApiOptions:
    return ApiOptions(
        cors_origins=cors_origins_from_env(), bar_cache_bytes=bar_cache_bytes_from_env()
    )
