"""Backfill planning without I/O: ranges, what is requested, what is skipped."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest

from market_bridge.backfill.plan import group_into_requests, plan_backfill, plan_gap_fill
from market_bridge.backfill.ranges import (
    InvalidRange,
    done_horizon,
    merge,
    subtract,
    user_range,
)
from market_bridge.backfill.targets import NoSymbols, select_symbols
from market_bridge.instruments import Instrument, InstrumentIndex
from market_bridge.kite.models import IST
from market_bridge.market.calendar import TradingCalendar
from market_bridge.market.symbols import InvalidSymbol
from market_bridge.market.timeframes import TIMEFRAMES
from market_bridge.quality import Gap
from market_bridge.watchlists import UnknownWatchlist

M1, M5, DAY = TIMEFRAMES["1m"], TIMEFRAMES["5m"], TIMEFRAMES["day"]
HOLIDAY = date(2026, 11, 24)  # NSE holiday (Guru Nanak Jayanti), a Tuesday


def ist(d: date, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime.combine(d, time(hh, mm, ss), IST)


def inst(symbol: str, token: int, exchange: str = "NSE") -> Instrument:
    return Instrument(token, None, symbol, symbol, 0.0, None, 0.0, 0.05, 1, "EQ", exchange,
                      exchange)


@pytest.fixture(scope="module")
def cal() -> TradingCalendar:
    return TradingCalendar()


@pytest.fixture(scope="module")
def index() -> InstrumentIndex:
    return InstrumentIndex([inst("RELIANCE", 738561), inst("TCS", 2953217),
                            inst("INFY", 408065)])


AFTER_CLOSE = ist(date(2026, 11, 25), 18, 0)  # Wednesday evening: the day has settled


def test_user_range_reads_dates_as_ist_days_inclusive() -> None:
    now = ist(date(2026, 11, 25), 18)
    assert user_range("2026-11-02", "2026-11-06", now) == (ist(date(2026, 11, 2)),
                                                          ist(date(2026, 11, 7)))
    start, end = user_range("2026-11-02T09:15:00+05:30", None, now)
    assert start == ist(date(2026, 11, 2), 9, 15) and end == now  # --to defaults to today
    start, _ = user_range(None, "2026-11-20", now)
    assert start == ist(date(2026, 10, 21))  # 30 days before --to


@pytest.mark.parametrize(
    ("frm", "to", "needle"),
    [
        ("2026-13-01", None, "--from '2026-13-01' is not a date"),
        ("2026-11-20", "2026-11-10", "is after --to"),
        ("2027-01-05", None, "in the future"),
        ("0001-01-01", None, "the year must be between"),
    ],
)
def test_bad_ranges_name_the_problem(frm: str, to: str | None, needle: str) -> None:
    with pytest.raises(InvalidRange, match=needle):
        user_range(frm, to, AFTER_CLOSE)


def test_interval_arithmetic() -> None:
    d = date(2026, 11, 2)
    a, b, c, e = ist(d, 1), ist(d, 2), ist(d, 3), ist(d, 4)
    assert merge([(c, e), (a, b), (b, c)]) == [(a, e)]
    assert subtract((a, e), [(b, c)]) == [(a, b), (c, e)]
    assert subtract((a, e), [(a, e)]) == []
    assert subtract((b, c), [(a, b), (c, e)]) == [(b, c)]


def test_select_symbols_merges_watchlists_and_lists() -> None:
    assert select_symbols(None, "reliance, TCS,INFY,RELIANCE") == ["RELIANCE", "TCS", "INFY"]
    chosen = select_symbols("NIFTY50", "BSE:SENSEX")
    assert chosen[-1] == "BSE:SENSEX" and len(chosen) == 51
    with pytest.raises(UnknownWatchlist, match="NIFTY5000"):
        select_symbols("NIFTY5000", None)
    with pytest.raises(InvalidSymbol, match="XX:RELIANCE"):
        select_symbols(None, "XX:RELIANCE")
    with pytest.raises(NoSymbols):
        select_symbols(None, " , ")


def test_a_month_of_minutes_is_one_request_per_symbol_and_skips_the_holiday(
    cal: TradingCalendar, index: InstrumentIndex
) -> None:
    start, end = ist(date(2026, 10, 26)), ist(date(2026, 11, 26))
    plan = plan_backfill(["RELIANCE", "TCS", "INFY"], index, M1, start, end, cal, AFTER_CLOSE)
    days = cal.trading_days(date(2026, 10, 26), date(2026, 11, 25))
    assert HOLIDAY not in days
    assert plan.requests == 3
    assert [s.expected_bars for s in plan.symbols] == [375 * len(days)] * 3
    unit = plan.symbols[0].units[0]
    # trimmed to trading minutes: from the first session's open to the last one's close
    assert unit.window.start == ist(date(2026, 10, 26), 9, 15)
    assert unit.window.end == ist(date(2026, 11, 25), 15, 29, 59)
    assert plan.estimated_seconds == pytest.approx(1.0)


def test_long_ranges_split_within_kites_span_limit(
    cal: TradingCalendar, index: InstrumentIndex
) -> None:
    plan = plan_backfill(["RELIANCE"], index, M1, ist(date(2026, 1, 1)), ist(date(2026, 7, 1)),
                         cal, AFTER_CLOSE)
    windows = [u.window for u in plan.units]
    assert len(windows) == 4  # 181 days at most 60 per request
    for w in windows:
        assert (w.end.date() - w.start.date()).days <= M1.max_days_per_request
    for prev, nxt in zip(windows, windows[1:], strict=False):
        assert nxt.start > prev.end  # no candle requested twice


def test_weekend_only_range_needs_no_request(
    cal: TradingCalendar, index: InstrumentIndex
) -> None:
    plan = plan_backfill(["TCS"], index, M1, ist(date(2026, 11, 21)), ist(date(2026, 11, 23)),
                         cal, AFTER_CLOSE)
    assert plan.requests == 0 and plan.expected_bars == 0


def test_done_stretches_are_skipped_unless_forced(
    cal: TradingCalendar, index: InstrumentIndex
) -> None:
    start, end = ist(date(2026, 11, 16)), ist(date(2026, 11, 21))  # Mon..Fri
    done = {"NSE:TCS": [(ist(date(2026, 11, 16)), ist(date(2026, 11, 19)))]}
    plan = plan_backfill(["TCS", "INFY"], index, M1, start, end, cal, AFTER_CLOSE, done)
    tcs, infy = plan.symbols
    assert tcs.done_bars == 3 * 375 and tcs.bars_to_fetch == 2 * 375
    assert tcs.units[0].window.start == ist(date(2026, 11, 19), 9, 15)
    assert infy.bars_to_fetch == 5 * 375
    forced = plan_backfill(["TCS"], index, M1, start, end, cal, AFTER_CLOSE, done, force=True)
    assert forced.symbols[0].bars_to_fetch == 5 * 375 and forced.symbols[0].done_bars == 0


def test_only_closed_bars_are_planned(cal: TradingCalendar, index: InstrumentIndex) -> None:
    now = ist(date(2026, 11, 25), 11, 2, 30)
    plan = plan_backfill(["TCS"], index, M1, ist(date(2026, 11, 25)), ist(date(2026, 11, 26)),
                         cal, now)
    unit = plan.units[0]
    assert unit.keep == ((ist(date(2026, 11, 25), 9, 15), ist(date(2026, 11, 25), 11, 2)),)
    assert unit.expected_bars == 107  # 09:15 .. 11:01
    day = plan_backfill(["TCS"], index, DAY, ist(date(2026, 11, 23)), ist(date(2026, 11, 26)),
                        cal, now)
    assert day.expected_bars == 1  # Monday only: the 24th is a holiday, today is not over


def test_today_is_recorded_done_only_once_settled(cal: TradingCalendar) -> None:
    wed = date(2026, 11, 25)
    assert done_horizon(cal, M1, ist(wed, 11, 2, 30)) == ist(wed, 9, 15)
    assert done_horizon(cal, M1, ist(wed, 15, 45)) == ist(wed, 9, 15)  # settling margin
    assert done_horizon(cal, M1, ist(wed, 18, 0)) == ist(wed, 18, 0)
    assert done_horizon(cal, DAY, ist(wed, 18, 0)) == ist(wed)  # today's day bar is open


def test_unknown_symbols_are_reported_and_others_planned(
    cal: TradingCalendar, index: InstrumentIndex
) -> None:
    plan = plan_backfill(["TCS", "NOPE"], index, M1, ist(date(2026, 11, 23)),
                         ist(date(2026, 11, 24)), cal, AFTER_CLOSE)
    assert plan.requests == 1
    assert plan.errors and plan.errors[0][0] == "NOPE" and "unknown instrument" in plan.errors[0][1]


def test_gaps_share_a_request_but_only_gaps_are_kept(index: InstrumentIndex) -> None:
    tcs = index.by_symbol("TCS")
    g1 = Gap(ist(date(2026, 11, 16), 10, 0), ist(date(2026, 11, 16), 10, 5), 5)
    g2 = Gap(ist(date(2026, 11, 20), 14, 0), ist(date(2026, 11, 20), 14, 1), 1)
    plan = plan_gap_fill({"TCS": (tcs, [g1, g2])}, M1, ist(date(2026, 11, 16)),
                         ist(date(2026, 11, 21)), AFTER_CLOSE)
    (unit,) = plan.units
    assert unit.keep == ((g1.start, g1.end), (g2.start, g2.end))
    assert unit.expected_bars == 6
    assert unit.keeps(ist(date(2026, 11, 16), 10, 4)) and not unit.keeps(g1.end)


def test_request_grouping_respects_the_span_limit() -> None:
    d0 = date(2026, 1, 5)
    wanted = [(ist(d0, 9, 15), ist(d0, 9, 20)),
              (ist(d0 + timedelta(days=59), 9, 15), ist(d0 + timedelta(days=59), 9, 20)),
              (ist(d0 + timedelta(days=61), 9, 15), ist(d0 + timedelta(days=61), 9, 20))]
    groups = group_into_requests(M1, wanted)
    assert [len(keep) for _, keep in groups] == [2, 1]
    assert group_into_requests(M5, wanted)[0][1] == tuple(wanted)  # 5m allows 100 days
