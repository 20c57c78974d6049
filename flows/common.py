"""What every batch flow needs: the database URL, Kite clients, the trading calendar."""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any, Literal

from prefect import get_run_logger
from prefect.exceptions import MissingContextError

from market_bridge.backfill import KiteClients, now_ist
from market_bridge.db import database_url
from market_bridge.market.calendar import TradingCalendar, default_calendar
from market_bridge.settings import load_settings

# The UI renders a Literal as a drop-down: one of Kite's intervals, by our names.
TimeframeName = Literal["1m", "3m", "5m", "10m", "15m", "30m", "1h", "day"]


def run_logger() -> logging.Logger | logging.LoggerAdapter[Any]:
    """The flow run's logger (shown in the UI); a plain logger when the flow function is
    called directly (``backfill_flow.fn(...)``), outside any run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("flows")


def db_url() -> str:
    """DATABASE_URL, else the embedded cluster (which `market-bridge run` starts)."""
    return database_url(load_settings())


def kite_clients() -> KiteClients:
    return KiteClients.from_env()


def calendar() -> TradingCalendar:
    """The NSE calendar with the user's overrides (MB_CALENDAR_OVERRIDES / calendar.yaml)."""
    return default_calendar()


def now() -> datetime:
    return now_ist()


def closed_reason(cal: TradingCalendar, day: date) -> str | None:
    """Why ``day`` has no session (weekend or holiday), or None when it trades."""
    if cal.is_trading_day(day):
        return None
    kind = "a weekend" if day.weekday() >= 5 else "an NSE holiday"
    return f"{day.isoformat()} is {kind}: the market did not trade"
