"""Query-string parameters: time ranges, timeframe, limit. Bad values raise 400 ``ApiError``.

Time semantics (docs/api.md):

- ``from``/``to`` accept RFC 3339 with an offset (``2024-01-30T09:15:00Z``,
  ``2024-01-30T09:15:00+05:30``), a date-time without offset (taken as IST) or a plain date
  (IST). Both bounds are inclusive: a date as ``to`` means through the end of that day.
- A ``+`` typed unencoded in a query string arrives as a space; ``09:15:00 05:30`` is
  read as ``09:15:00+05:30``.
- Internally ranges are half-open ``[start, end)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sanic import Request

from api.errors import bad_request
from market_bridge.kite.models import IST
from market_bridge.market.calendar import TradingCalendar
from market_bridge.market.timeframes import (
    TIMEFRAMES,
    Timeframe,
    UnknownTimeframe,
    parse_timeframe,
)

DEFAULT_TIMEFRAME = "1m"
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
MIN_YEAR, MAX_YEAR = 1900, 2200  # keeps datetime arithmetic (and the calendar) in range
_ONE_US = timedelta(microseconds=1)
# "<time> <offset>": the offset's "+" became a space in the query string.
_SPACE_OFFSET = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?) (\d{2}(?::?\d{2})?)$")
_FORMAT_HINT = (
    "expected RFC 3339 with an offset (2024-01-30T09:15:00+05:30 or 2024-01-30T03:45:00Z) "
    "or a date (2024-01-30, IST)"
)


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime | None  # inclusive; None = unbounded
    end: datetime | None  # exclusive; None = unbounded

    @property
    def last(self) -> datetime | None:
        """The inclusive upper bound, as the user gave it (echoed as ``to``)."""
        return None if self.end is None else self.end - _ONE_US

    def echo(self) -> dict[str, datetime | None]:
        return {"from": self.start, "to": self.last}


def arg(request: Request, name: str) -> str | None:
    value = request.args.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def parse_instant(name: str, raw: str, *, upper: bool) -> datetime:
    """``raw`` as an aware IST datetime. For the upper bound, returns the exclusive end."""
    text = _SPACE_OFFSET.sub(r"\1+\2", raw.strip()).upper()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            _check_year(name, raw, day.year)
            start = datetime.combine(day, time(0), IST)
            return start + timedelta(days=1) if upper else start
        value = datetime.fromisoformat(text)
    except ValueError:
        raise bad_request("invalid date", f"{name}={raw!r}: {_FORMAT_HINT}") from None
    _check_year(name, raw, value.year)
    if value.tzinfo is None:
        value = value.replace(tzinfo=IST)
    value = value.astimezone(IST)
    return value + _ONE_US if upper else value


def _check_year(name: str, raw: str, year: int) -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise bad_request(
            "invalid date", f"{name}={raw!r}: the year must be between {MIN_YEAR} and {MAX_YEAR}"
        )


def time_range(request: Request) -> TimeRange:
    raw_from, raw_to = arg(request, "from"), arg(request, "to")
    start = parse_instant("from", raw_from, upper=False) if raw_from else None
    end = parse_instant("to", raw_to, upper=True) if raw_to else None
    if start is not None and end is not None and start >= end:
        raise bad_request(
            "invalid range", f"from ({raw_from}) is after to ({raw_to}); swap them"
        )
    return TimeRange(start, end)


def timeframe_arg(request: Request, default: str = DEFAULT_TIMEFRAME) -> Timeframe:
    raw = arg(request, "timeframe") or default
    try:
        return parse_timeframe(raw)
    except UnknownTimeframe:
        raise bad_request(
            "unknown timeframe",
            f"timeframe={raw!r}; valid timeframes: {', '.join(TIMEFRAMES)}",
        ) from None


def int_arg(request: Request, name: str, default: int, minimum: int, maximum: int) -> int:
    raw = arg(request, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(
            f"invalid {name}", f"{name}={raw!r} is not an integer ({minimum}..{maximum})"
        ) from None
    if not minimum <= value <= maximum:
        raise bad_request(
            f"invalid {name}", f"{name}={value} is out of range: {minimum}..{maximum}"
        )
    return value


def limit_arg(request: Request, default: int = DEFAULT_LIMIT) -> int:
    return int_arg(request, "limit", default, 1, MAX_LIMIT)


def trading_day(calendar: TradingCalendar, now: datetime) -> date:
    """The current IST trading day: today if it trades, else the last day that did."""
    today = now.astimezone(IST).date()
    if calendar.is_trading_day(today):
        return today
    return calendar.previous_trading_day(today)


def day_range(day: date) -> TimeRange:
    start = datetime.combine(day, time(0), IST)
    return TimeRange(start, start + timedelta(days=1))


def ist_midnight(ts: datetime) -> datetime:
    return datetime.combine(ts.astimezone(IST).date(), time(0), IST)
