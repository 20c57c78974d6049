"""Completeness per symbol and trading day, for the dashboard's heatmap.

``GET /intraday/completeness`` answers one symbol and one range; a heatmap of 50 symbols
by 20 days would take a thousand of those. This computes the whole grid with one query:
expected bar labels come from the trading calendar (``expected_bar_starts``, so holidays
and weekends are never missing, special sessions count), the database counts the stored
bars that sit on an expected label, per symbol and IST day. Bars that have not closed by
now are not expected (as in /intraday/gaps). Labels from ``market_bridge.quality``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from psycopg import AsyncConnection

from market_bridge.kite.models import IST
from market_bridge.market.calendar import TradingCalendar, expected_bar_starts
from market_bridge.market.symbols import Symbol
from market_bridge.market.timeframes import Timeframe
from market_bridge.quality import completeness

MAX_SYMBOLS = 200
MAX_INTRADAY_DAYS = 62  # calendar days; at 1m that is about 16,000 expected labels
MAX_DAY_DAYS = 366 * 5

# Stored bars on expected labels, per symbol and IST day. The expected labels and the
# symbols go in as arrays (parameters, never SQL text); the join on the unnested labels
# is a hash join, and each symbol's rows come from the (symbol, timeframe, exchange,
# bar_timestamp) index.
COUNT_SQL = """
SELECT b.exchange, b.symbol,
       (b.bar_timestamp AT TIME ZONE 'Asia/Kolkata')::date AS day,
       count(*)::int AS actual
FROM md.intraday_bars AS b
JOIN unnest(%(exchanges)s::text[], %(symbols)s::text[]) AS s(exchange, symbol)
  ON b.exchange = s.exchange AND b.symbol = s.symbol
JOIN unnest(%(expected)s::timestamptz[]) AS e(ts) ON b.bar_timestamp = e.ts
WHERE b.timeframe = %(timeframe)s
  AND b.bar_timestamp >= %(start)s AND b.bar_timestamp < %(end)s
GROUP BY 1, 2, 3
"""


@dataclass(frozen=True, slots=True)
class Cell:
    expected: int
    actual: int

    def view(self) -> dict[str, Any]:
        result = completeness(self.expected, min(self.actual, self.expected))
        return {
            "expected": result.expected,
            "actual": result.actual,
            "missing": result.missing,
            "percent": result.percent,
            "quality": result.quality,
        }


def expected_by_day(
    calendar: TradingCalendar, timeframe: Timeframe, first: date, last: date, now: datetime
) -> dict[date, list[datetime]]:
    """Expected bar labels per trading day in ``[first, last]`` that have closed by ``now``."""
    start = datetime.combine(first, time(0), IST)
    end = datetime.combine(last + timedelta(days=1), time(0), IST)
    days: dict[date, list[datetime]] = {d: [] for d in calendar.trading_days(first, last)}
    for ts in expected_bar_starts(calendar, timeframe, start, end):
        if timeframe.bar_end(ts) <= now:
            days.setdefault(ts.astimezone(IST).date(), []).append(ts)
    return days


async def count_present(
    conn: AsyncConnection[Any],
    symbols: Sequence[Symbol],
    timeframe: Timeframe,
    expected: Sequence[datetime],
) -> dict[tuple[str, str, date], int]:
    """``(exchange, tradingsymbol, day) -> stored bars on expected labels``."""
    if not symbols or not expected:
        return {}
    params = {
        "exchanges": [s.exchange for s in symbols],
        "symbols": [s.tradingsymbol for s in symbols],
        "expected": list(expected),
        "timeframe": timeframe.name,
        "start": min(expected),
        "end": max(expected) + timedelta(microseconds=1),
    }
    async with conn.cursor() as cur:
        await cur.execute(COUNT_SQL, params)
        rows = await cur.fetchall()
    return {(ex, sym, day): int(n) for ex, sym, day, n in rows}


def grid(
    symbols: Sequence[Symbol],
    days: dict[date, list[datetime]],
    present: dict[tuple[str, str, date], int],
) -> list[dict[str, Any]]:
    """One row per symbol: per-day cells and the total over the range."""
    rows: list[dict[str, Any]] = []
    for symbol in symbols:
        cells: dict[str, Any] = {}
        total: defaultdict[str, int] = defaultdict(int)
        for day, labels in sorted(days.items()):
            cell = Cell(len(labels), present.get((symbol.exchange, symbol.tradingsymbol, day), 0))
            cells[day.isoformat()] = cell.view()
            total["expected"] += cell.expected
            total["actual"] += min(cell.actual, cell.expected)
        rows.append({
            "symbol": symbol.display,
            "days": cells,
            "total": Cell(total["expected"], total["actual"]).view(),
        })
    return rows
