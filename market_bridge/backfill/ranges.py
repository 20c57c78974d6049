"""Time ranges for backfill work: parsing user input, interval arithmetic, horizons.

Pure. Every interval is half-open ``[start, end)`` with aware datetimes in IST.
User input follows the API's rules (docs/api.md): a plain date is an IST day, a date-time
without an offset is IST, and both bounds are inclusive (``--to 2024-01-30`` means through
the end of that day).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta

from market_bridge.kite.models import IST
from market_bridge.market.calendar import TradingCalendar
from market_bridge.market.timeframes import Timeframe

Interval = tuple[datetime, datetime]  # half-open [start, end)

# Kite finalises a day's historical candles a little after the close; until then a fetched
# day is written but not recorded as done, so the next run fetches it again.
SETTLE_MARGIN = timedelta(minutes=30)
MIN_YEAR, MAX_YEAR = 1990, 2200
_FORMAT_HINT = "use a date like 2024-01-30 (IST) or RFC 3339 like 2024-01-30T09:15:00+05:30"


class InvalidRange(ValueError):
    """A user-supplied range we cannot use; the message names the problem."""


def parse_instant(name: str, raw: str | date | datetime, *, upper: bool) -> datetime:
    """One bound as an aware IST datetime; for the upper bound, its exclusive end."""
    if isinstance(raw, datetime):
        value = raw if raw.tzinfo is not None else raw.replace(tzinfo=IST)
    elif isinstance(raw, date):
        value = _day_bound(raw, upper)
        _check_year(name, raw, value.year)
        return value
    else:
        text = raw.strip()
        try:
            parsed = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            raise InvalidRange(f"{name} {raw!r} is not a date or time: {_FORMAT_HINT}") from None
        if not isinstance(parsed, datetime):
            _check_year(name, raw, parsed.year)
            return _day_bound(parsed, upper)
        value = parsed
        if value.tzinfo is None:
            value = value.replace(tzinfo=IST)
    _check_year(name, raw, value.year)
    value = value.astimezone(IST)
    return value + timedelta(microseconds=1) if upper else value


def _day_bound(day: date, upper: bool) -> datetime:
    start = datetime.combine(day, time(0), IST)
    return start + timedelta(days=1) if upper else start


def _check_year(name: str, raw: object, year: int) -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise InvalidRange(f"{name} {raw!r}: the year must be between {MIN_YEAR} and {MAX_YEAR}")


def user_range(
    raw_from: str | date | datetime | None,
    raw_to: str | date | datetime | None,
    now: datetime,
    default_days: int = 30,
) -> Interval:
    """``--from``/``--to`` as ``[start, end)``. ``to`` defaults to today (IST), ``from`` to
    ``default_days`` days before ``to``'s day. A ``to`` in the future is clipped to ``now``."""
    today = now.astimezone(IST).date()
    end = parse_instant("--to", raw_to if raw_to is not None else today, upper=True)
    if raw_from is None:
        start = _day_bound((end - timedelta(microseconds=1)).date() - timedelta(days=default_days),
                           upper=False)
    else:
        start = parse_instant("--from", raw_from, upper=False)
    if start >= now:
        raise InvalidRange(f"--from ({raw_from}) is in the future; there is nothing to fetch yet")
    if start >= end:
        raise InvalidRange(f"--from ({raw_from}) is after --to ({raw_to or today}); swap them")
    return start, min(end, now)


# ---- interval arithmetic ------------------------------------------------------------------


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, with overlapping or touching intervals joined."""
    out: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def subtract(whole: Interval, covered: Iterable[Interval]) -> list[Interval]:
    """The parts of ``whole`` not inside any of ``covered``."""
    start, end = whole
    out: list[Interval] = []
    cursor = start
    for c_start, c_end in merge(covered):
        if c_end <= cursor or c_start >= end:
            continue
        if c_start > cursor:
            out.append((cursor, c_start))
        cursor = max(cursor, c_end)
        if cursor >= end:
            break
    if cursor < end:
        out.append((cursor, end))
    return out


def clip(intervals: Sequence[Interval], bounds: Interval) -> list[Interval]:
    lo, hi = bounds
    return [(max(a, lo), min(b, hi)) for a, b in intervals if min(b, hi) > max(a, lo)]


# ---- horizons -----------------------------------------------------------------------------


def closed_until(timeframe: Timeframe, now: datetime) -> datetime:
    """Bars starting before this are closed at ``now``; the bar containing ``now`` is still
    forming (Kite returns it, with partial values) and must not be stored as historical."""
    return timeframe.bar_start(now)


def settled_until(calendar: TradingCalendar, now: datetime) -> datetime:
    """History before this is final. During today's session (and ``SETTLE_MARGIN`` after
    it) that is the session's open; otherwise ``now``."""
    local = now.astimezone(IST)
    session = calendar.session(local.date())
    if session is not None and session.open <= local < session.close + SETTLE_MARGIN:
        return session.open
    return local


def done_horizon(calendar: TradingCalendar, timeframe: Timeframe, now: datetime) -> datetime:
    """Fetched history before this may be recorded as done (never fetched again)."""
    return min(closed_until(timeframe, now), settled_until(calendar, now))
