"""Missing bars: find them, fetch exactly them, check again, close repaired feed gaps.

Expected bars come from the trading calendar (``expected_bar_starts``) and gaps from
``quality.find_gaps`` — the same code the API's gap endpoint uses — so a weekend or an
exchange holiday is never a gap, and only closed bars are expected.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from market_bridge.backfill import store
from market_bridge.backfill.engine import (
    BackfillResult,
    Clock,
    KiteFactory,
    Progress,
    now_ist,
    run_plan,
)
from market_bridge.backfill.plan import BackfillPlan, plan_gap_fill, resolve_symbols
from market_bridge.backfill.ranges import Interval, closed_until
from market_bridge.instruments import Instrument, InstrumentIndex
from market_bridge.market.calendar import TradingCalendar, expected_bar_starts
from market_bridge.market.timeframes import Timeframe
from market_bridge.quality import Gap, find_gaps, present_count
from market_bridge.watchlists import merge_watchlists


@dataclass(frozen=True, slots=True)
class SymbolGaps:
    symbol: str
    instrument: Instrument
    expected: int
    present: int  # expected bars that are stored
    gaps: tuple[Gap, ...]

    @property
    def missing(self) -> int:
        return sum(g.missing_bars for g in self.gaps)


@dataclass(frozen=True, slots=True)
class GapReport:
    timeframe: Timeframe
    start: datetime
    end: datetime  # exclusive, clipped to closed bars
    symbols: tuple[SymbolGaps, ...]
    errors: tuple[tuple[str, str], ...] = ()  # (symbol, why it was not checked)

    @property
    def missing(self) -> int:
        return sum(s.missing for s in self.symbols)

    @property
    def gap_count(self) -> int:
        return sum(len(s.gaps) for s in self.symbols)


def find_symbol_gaps(
    conn: psycopg.Connection,
    calendar: TradingCalendar,
    index: InstrumentIndex,
    symbols: Sequence[str],
    timeframe: Timeframe,
    start: datetime,
    end: datetime,
    now: datetime,
) -> GapReport:
    end = max(start, min(end, closed_until(timeframe, now)))
    expected = expected_bar_starts(calendar, timeframe, start, end)
    expected_set = frozenset(expected)
    found: list[SymbolGaps] = []
    errors: list[tuple[str, str]] = []
    for name, inst, error in resolve_symbols(symbols, index):
        if inst is None:
            errors.append((name, error or "unknown symbol"))
            continue
        present = store.bar_timestamps(conn, inst, timeframe, (start, end))
        gaps = find_gaps(expected, present, timeframe)
        found.append(SymbolGaps(name, inst, len(expected), present_count(expected_set, present),
                                tuple(gaps)))
    return GapReport(timeframe, start, end, tuple(found), tuple(errors))


@dataclass
class GapFillResult:
    before: GapReport
    plan: BackfillPlan
    backfill: BackfillResult | None = None  # None on a dry run or when nothing was missing
    after: GapReport | None = None
    feed_gaps_closed: list[int] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.before.gap_count} gaps ({self.before.missing} bars) found in "
                f"{len(self.before.symbols)} symbols")
        if self.backfill is not None:
            text += (f"; {self.backfill.requests} requests wrote "
                     f"{self.backfill.bars_written} bars")
        if self.after is not None:
            text += (f"; {self.after.gap_count} gaps ({self.after.missing} bars) remain")
        if self.feed_gaps_closed:
            text += f"; closed {len(self.feed_gaps_closed)} feed gap(s)"
        return text


def fill_gaps(
    dsn: str,
    calendar: TradingCalendar,
    index: InstrumentIndex,
    symbols: Sequence[str],
    timeframe: Timeframe,
    start: datetime,
    end: datetime,
    kite_factory: KiteFactory | None,
    concurrent: int = 3,
    dry_run: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    clock: Clock = now_ist,
) -> GapFillResult:
    """Find gaps, backfill exactly those bars, check again and close repaired feed gaps.

    Bars Kite does not have (an instrument that did not trade, a suspension) remain gaps:
    the second check reports them. Raises ``BackfillStopped`` like ``run_plan``.
    """
    now = clock()
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        before = find_symbol_gaps(conn, calendar, index, symbols, timeframe, start, end, now)
    wanted = {s.symbol: (s.instrument, s.gaps) for s in before.symbols if s.gaps}
    plan = plan_gap_fill(wanted, timeframe, before.start, before.end, now)
    result = GapFillResult(before, plan)
    if dry_run:
        return result
    if plan.units:
        if kite_factory is None:
            raise ValueError("fill_gaps needs a Kite client factory unless dry_run")
        result.backfill = run_plan(plan, dsn, kite_factory, calendar, concurrent, on_progress,
                                   clock)
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        if plan.units:
            result.after = find_symbol_gaps(conn, calendar, index, symbols, timeframe, start,
                                            end, now)
        else:
            result.after = before
        result.feed_gaps_closed = close_repaired_feed_gaps(
            conn, calendar, index, timeframe, (before.start, before.end), now)
        conn.commit()
    return result


def close_repaired_feed_gaps(
    conn: psycopg.Connection,
    calendar: TradingCalendar,
    index: InstrumentIndex,
    timeframe: Timeframe,
    span: Interval,
    now: datetime,
) -> list[int]:
    """Mark open feed gaps overlapping ``span`` as filled when every one of their symbols
    now has all expected ``timeframe`` bars over the gap. Returns the ids closed.

    A gap with no symbols listed means all of its collector's symbols and watchlists. A gap
    still running (no end), not yet over, or naming an instrument we cannot resolve stays
    open.
    """
    horizon = closed_until(timeframe, now)
    repaired: list[int] = []
    for fg in store.open_feed_gaps(conn, span):
        if fg.end > horizon:
            continue
        names = list(fg.symbols)
        if not names:
            listed, watchlists = store.collector_members(conn, fg.collector)
            try:
                names = listed + merge_watchlists(watchlists)
            except ValueError:  # unknown or dynamic watchlist: members unknowable now
                continue
        resolved = resolve_symbols(names, index)
        if not names or any(inst is None for _, inst, _ in resolved):
            continue
        report = find_symbol_gaps(conn, calendar, index, names, timeframe,
                                  timeframe.bar_start(fg.start), fg.end, now)
        if report.gap_count == 0:
            repaired.append(fg.id)
    store.close_feed_gaps(conn, repaired)
    return repaired


def feed_gap_targets(
    conn: psycopg.Connection, span: Interval
) -> tuple[list[str], datetime | None]:
    """Symbols named by open feed gaps overlapping ``span`` and the earliest gap start:
    the gap-fill flow adds them to its default work."""
    symbols: dict[str, None] = {}
    earliest: datetime | None = None
    for fg in store.open_feed_gaps(conn, span):
        names = list(fg.symbols)
        if not names:
            listed, watchlists = store.collector_members(conn, fg.collector)
            try:
                names = listed + merge_watchlists(watchlists)
            except ValueError:
                names = listed
        symbols.update(dict.fromkeys(names))
        earliest = fg.start if earliest is None else min(earliest, fg.start)
    return list(symbols), earliest


def default_targets(
    conn: psycopg.Connection, timeframe: Timeframe, span: Interval, lookback: Interval
) -> tuple[list[str], Interval]:
    """What a scheduled check covers when told nothing: the members of running (or
    auto-start) collectors, every symbol with bars in ``span``, and those named by open
    feed gaps in ``lookback``; the span is widened back to the earliest such feed gap, so a
    gap left by a missed nightly run is not forgotten."""
    listed, watchlists = store.active_collector_members(conn)
    symbols: dict[str, None] = dict.fromkeys(listed)
    for name in watchlists:
        try:
            symbols.update(dict.fromkeys(merge_watchlists([name])))
        except ValueError:  # dynamic (movers) or no longer defined: members unknowable
            continue
    symbols.update(dict.fromkeys(store.symbols_with_bars(conn, timeframe, span)))
    fg_symbols, earliest = feed_gap_targets(conn, lookback)
    symbols.update(dict.fromkeys(fg_symbols))
    start = span[0]
    if earliest is not None:
        start = min(start, timeframe.bar_start(max(earliest, lookback[0])))
    return list(symbols), (start, span[1])
