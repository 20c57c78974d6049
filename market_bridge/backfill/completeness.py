"""Completeness per symbol, timeframe and trading day: expected vs stored bars.

Expected bars come from the trading calendar, labels and thresholds from
``quality.completeness`` (the API's), so the report and ``/intraday/completeness`` agree.
Today counts only the bars closed so far; non-trading days have no row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import psycopg

from market_bridge.backfill import store
from market_bridge.backfill.plan import resolve_symbols
from market_bridge.backfill.ranges import closed_until
from market_bridge.instruments import InstrumentIndex
from market_bridge.kite.models import IST
from market_bridge.market.calendar import TradingCalendar, expected_bar_starts
from market_bridge.market.timeframes import Timeframe
from market_bridge.quality import Quality, completeness


@dataclass(frozen=True, slots=True)
class DayCompleteness:
    symbol: str
    timeframe: str
    day: date
    expected: int
    actual: int
    percent: float
    quality: Quality

    @property
    def missing(self) -> int:
        return max(self.expected - self.actual, 0)

    def as_row(self) -> dict[str, object]:
        return {"symbol": self.symbol, "timeframe": self.timeframe, "day": self.day.isoformat(),
                "expected": self.expected, "actual": self.actual, "missing": self.missing,
                "percent": self.percent, "quality": self.quality}


@dataclass(frozen=True, slots=True)
class CompletenessReport:
    days: tuple[date, ...]  # trading days covered
    rows: tuple[DayCompleteness, ...]
    errors: tuple[tuple[str, str], ...] = ()

    def worst(self, n: int = 10) -> list[DayCompleteness]:
        return sorted(self.rows, key=lambda r: (r.percent, r.symbol, r.day))[:n]


def completeness_report(
    conn: psycopg.Connection,
    calendar: TradingCalendar,
    index: InstrumentIndex,
    symbols: Sequence[str],
    timeframes: Sequence[Timeframe],
    first_day: date,
    last_day: date,
    now: datetime,
) -> CompletenessReport:
    days = [d for d in calendar.trading_days(first_day, last_day)
            if (s := calendar.session(d)) is not None and s.open < now]  # started already
    rows: list[DayCompleteness] = []
    errors: list[tuple[str, str]] = []
    resolved = resolve_symbols(symbols, index)
    errors.extend((name, err or "unknown symbol") for name, inst, err in resolved if inst is None)
    if not days:
        return CompletenessReport((), (), tuple(errors))
    span_start = datetime.combine(days[0], time(0), IST)
    span_end = datetime.combine(days[-1] + timedelta(days=1), time(0), IST)
    for tf in timeframes:
        horizon = closed_until(tf, now)
        expected_by_day: dict[date, set[datetime]] = {}
        for d in days:
            start = datetime.combine(d, time(0), IST)
            end = min(start + timedelta(days=1), horizon)
            expected_by_day[d] = set(expected_bar_starts(calendar, tf, start, end))
        for name, inst, _ in resolved:
            if inst is None:
                continue
            present_by_day: dict[date, set[datetime]] = {}
            for ts in store.bar_timestamps(conn, inst, tf, (span_start, span_end)):
                present_by_day.setdefault(ts.astimezone(IST).date(), set()).add(ts)
            for d in days:
                expected = expected_by_day[d]
                actual = len(expected & present_by_day.get(d, set()))
                c = completeness(len(expected), actual)
                rows.append(DayCompleteness(name, tf.name, d, c.expected, actual, c.percent,
                                            c.quality))
    return CompletenessReport(tuple(days), tuple(rows), tuple(errors))
