"""What a backfill or gap fill will ask Kite for, before anything is fetched.

Pure. A plan is per symbol a list of ``WorkUnit``s: one historical request each (within
Kite's span limit for the interval) plus the stretches of that request whose candles are
to be written. Requests are the scarce resource (3/s per API key), so nearby stretches
share one request when their hull fits in Kite's span, and stretches with no trading
minutes (weekends, holidays, nights) are never requested.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from market_bridge.backfill.ranges import Interval, clip, closed_until, subtract
from market_bridge.instruments import Instrument, InstrumentIndex, UnknownInstrument
from market_bridge.kite.rest import RequestWindow, plan_requests
from market_bridge.market.calendar import TradingCalendar, expected_bar_starts
from market_bridge.market.symbols import Symbol
from market_bridge.market.timeframes import Timeframe
from market_bridge.quality import Gap

HISTORICAL_RATE_PER_S = 3.0  # Kite's historical API limit per API key
_ONE_S = timedelta(seconds=1)

PlanKind = Literal["backfill", "gap_fill"]


def display_symbol(inst: Instrument) -> str:
    """RELIANCE for NSE, EXCHANGE:SYMBOL otherwise (as the API and watchlists show them)."""
    return Symbol(inst.exchange, inst.tradingsymbol).display


@dataclass(frozen=True, slots=True)
class WorkUnit:
    instrument: Instrument
    window: RequestWindow  # what to ask Kite for (inclusive bounds, as Kite takes them)
    keep: tuple[Interval, ...]  # write only candles starting inside these
    expected_bars: int  # trading-calendar bars inside ``keep``

    @property
    def symbol(self) -> str:
        return display_symbol(self.instrument)

    def keeps(self, ts: datetime) -> bool:
        return any(a <= ts < b for a, b in self.keep)


@dataclass(frozen=True, slots=True)
class SymbolPlan:
    symbol: str
    instrument: Instrument | None
    units: tuple[WorkUnit, ...] = ()
    expected_bars: int = 0  # closed bars the calendar expects in the whole range
    done_bars: int = 0  # of those, bars in stretches already backfilled (skipped)
    error: str | None = None  # e.g. unknown symbol: nothing is fetched for it

    @property
    def requests(self) -> int:
        return len(self.units)

    @property
    def bars_to_fetch(self) -> int:
        return sum(u.expected_bars for u in self.units)


@dataclass(frozen=True, slots=True)
class BackfillPlan:
    kind: PlanKind
    timeframe: Timeframe
    start: datetime
    end: datetime  # exclusive, clipped to bars closed at planning time
    now: datetime
    symbols: tuple[SymbolPlan, ...]
    force: bool = False
    rate_per_s: float = HISTORICAL_RATE_PER_S
    notes: tuple[str, ...] = field(default=())

    @property
    def units(self) -> list[WorkUnit]:
        return [u for s in self.symbols for u in s.units]

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.symbols)

    @property
    def expected_bars(self) -> int:
        return sum(s.expected_bars for s in self.symbols)

    @property
    def bars_to_fetch(self) -> int:
        return sum(s.bars_to_fetch for s in self.symbols)

    @property
    def done_bars(self) -> int:
        return sum(s.done_bars for s in self.symbols)

    @property
    def estimated_seconds(self) -> float:
        """Lower bound: the rate limit alone (latency and retries come on top)."""
        return self.requests / self.rate_per_s

    @property
    def errors(self) -> list[tuple[str, str]]:
        return [(s.symbol, s.error) for s in self.symbols if s.error]


# ---- pure building blocks -----------------------------------------------------------------


class BarGrid:
    """The expected bar starts of one range (same for every symbol), with fast counts."""

    def __init__(self, starts: Sequence[datetime], timeframe: Timeframe) -> None:
        self.starts = list(starts)
        self.step = timeframe.delta

    def count(self, interval: Interval) -> int:
        return bisect_left(self.starts, interval[1]) - bisect_left(self.starts, interval[0])

    def trim(self, interval: Interval) -> Interval | None:
        """``interval`` narrowed to its first and last expected bar; None if it has none."""
        i = bisect_left(self.starts, interval[0])
        j = bisect_left(self.starts, interval[1])
        if i >= j:
            return None
        return self.starts[i], self.starts[j - 1] + self.step


def group_into_requests(
    timeframe: Timeframe, wanted: Sequence[Interval]
) -> list[tuple[RequestWindow, tuple[Interval, ...]]]:
    """One request per run of ``wanted`` stretches whose hull fits in Kite's span limit.

    ``wanted`` must be sorted and disjoint. A stretch longer than the limit is split the
    way ``plan_requests`` splits a range.
    """
    limit = timedelta(days=timeframe.max_days_per_request)
    pieces: list[Interval] = []
    for start, end in wanted:
        pieces.extend((w.start, w.end + _ONE_S) for w in plan_requests(timeframe, start, end - _ONE_S))
    groups: list[list[Interval]] = []
    for piece in pieces:
        if groups and piece[1] - groups[-1][0][0] <= limit:
            groups[-1].append(piece)
        else:
            groups.append([piece])
    return [(RequestWindow(g[0][0], g[-1][1] - _ONE_S), tuple(g)) for g in groups]


def _units(
    inst: Instrument, timeframe: Timeframe, wanted: Sequence[Interval], grid: BarGrid
) -> tuple[WorkUnit, ...]:
    trimmed = [t for t in (grid.trim(w) for w in wanted) if t is not None]
    return tuple(
        WorkUnit(inst, window, keep, sum(grid.count(k) for k in keep))
        for window, keep in group_into_requests(timeframe, trimmed)
    )


def resolve_symbols(
    symbols: Sequence[str], index: InstrumentIndex
) -> list[tuple[str, Instrument | None, str | None]]:
    """(symbol as given, instrument or None, error) in order, duplicates dropped."""
    seen: set[str] = set()
    out: list[tuple[str, Instrument | None, str | None]] = []
    for raw in symbols:
        try:
            inst = index.by_symbol(raw)
        except UnknownInstrument as exc:
            out.append((raw, None, str(exc)))
            continue
        if inst.key not in seen:
            seen.add(inst.key)
            out.append((display_symbol(inst), inst, None))
    return out


# ---- plans --------------------------------------------------------------------------------


def plan_backfill(
    symbols: Sequence[str],
    index: InstrumentIndex,
    timeframe: Timeframe,
    start: datetime,
    end: datetime,
    calendar: TradingCalendar,
    now: datetime,
    done: Mapping[str, Sequence[Interval]] | None = None,
    force: bool = False,
    rate_per_s: float = HISTORICAL_RATE_PER_S,
) -> BackfillPlan:
    """Requests to fetch ``[start, end)`` for ``symbols``, skipping what ``done`` (keyed by
    ``Instrument.key``) records as already backfilled unless ``force``."""
    end = min(end, closed_until(timeframe, now))
    grid = BarGrid(expected_bar_starts(calendar, timeframe, start, end) if end > start else [],
                   timeframe)
    whole: Interval = (start, end)
    plans: list[SymbolPlan] = []
    for name, inst, error in resolve_symbols(symbols, index):
        if inst is None:
            plans.append(SymbolPlan(name, None, error=error))
            continue
        expected = grid.count(whole)
        if end <= start:
            plans.append(SymbolPlan(name, inst))
            continue
        todo = [whole] if force else subtract(whole, (done or {}).get(inst.key, ()))
        units = _units(inst, timeframe, todo, grid)
        done_bars = 0 if force else expected - sum(grid.count(t) for t in todo)
        plans.append(SymbolPlan(name, inst, units, expected, done_bars))
    notes: list[str] = []
    if calendar.is_beyond_known_holidays((end - _ONE_S).date()):
        notes.append(f"NSE holidays after {calendar.known_until} are not known: every weekday "
                     "after it is treated as a trading day")
    return BackfillPlan("backfill", timeframe, start, max(end, start), now, tuple(plans),
                        force, rate_per_s, tuple(notes))


def plan_gap_fill(
    gaps: Mapping[str, tuple[Instrument, Sequence[Gap]]],
    timeframe: Timeframe,
    start: datetime,
    end: datetime,
    now: datetime,
    rate_per_s: float = HISTORICAL_RATE_PER_S,
) -> BackfillPlan:
    """Requests that cover exactly the missing bars (``gaps`` keyed by display symbol)."""
    plans: list[SymbolPlan] = []
    for name, (inst, found) in gaps.items():
        wanted = clip([(g.start, g.end) for g in found], (start, end))
        starts = [g.start + timeframe.delta * k for g in found for k in range(g.missing_bars)]
        units = _units(inst, timeframe, wanted, BarGrid(sorted(starts), timeframe))
        plans.append(SymbolPlan(name, inst, units, sum(g.missing_bars for g in found)))
    return BackfillPlan("gap_fill", timeframe, start, end, now, tuple(plans), True, rate_per_s)
