"""Gap detection and fill, completeness, instruments sync and maintenance, against the Kite
simulator and a real TimescaleDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

import psycopg
import pytest

from market_bridge.backfill import (
    KiteClients,
    backfill_symbols,
    completeness_report,
    fill_gaps,
    find_symbol_gaps,
    load_index,
    run_maintenance,
    sync_instruments,
)
from market_bridge.instruments import InstrumentIndex
from market_bridge.kite.models import IST
from market_bridge.kite.simulator import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_API_KEY,
    Simulator,
    simulator_thread,
)
from market_bridge.market.calendar import TradingCalendar
from market_bridge.market.timeframes import TIMEFRAMES
from market_bridge.quality import Gap

M1, M5 = TIMEFRAMES["1m"], TIMEFRAMES["5m"]
THU, FRI, MON, HOLIDAY = date(2026, 11, 19), date(2026, 11, 20), date(2026, 11, 23), date(2026, 11, 24)
SPAN = (datetime(2026, 11, 19, tzinfo=IST), datetime(2026, 11, 25, tzinfo=IST))  # Thu..Tue


def ist(d: date, hh: int = 0, mm: int = 0) -> datetime:
    return datetime.combine(d, time(hh, mm), IST)


@pytest.fixture(scope="module")
def cal() -> TradingCalendar:
    return TradingCalendar()


@pytest.fixture(scope="module")
def sim(cal: TradingCalendar) -> Iterator[Simulator]:
    with simulator_thread(port=0, session="nse", is_trading_day=cal.is_trading_day) as s:
        yield s


@pytest.fixture(scope="module")
def kite(sim: Simulator) -> KiteClients:
    return KiteClients(DEFAULT_API_KEY, DEFAULT_ACCESS_TOKEN, sim.url)


@pytest.fixture
def filled(db_url: str, kite: KiteClients, cal: TradingCalendar) -> str:
    """Thu..Tue of TCS and INFY 1m bars, then a hole punched into each."""
    sync_instruments(db_url, kite())
    backfill_symbols(db_url, cal, ["TCS", "INFY"], M1, *SPAN, kite)
    with psycopg.connect(db_url) as conn:
        conn.execute("""DELETE FROM md.intraday_bars WHERE symbol = 'TCS'
                         AND bar_timestamp >= %s AND bar_timestamp < %s""",
                     (ist(FRI, 10, 0), ist(FRI, 10, 30)))
        conn.execute("""DELETE FROM md.intraday_bars WHERE symbol = 'INFY'
                         AND bar_timestamp >= %s AND bar_timestamp < %s""",
                     (ist(MON, 15, 0), ist(MON, 15, 30)))  # runs to the close
    return db_url


def test_gaps_have_exact_boundaries_and_ignore_weekends_and_holidays(
    filled: str, cal: TradingCalendar
) -> None:
    now = datetime.now(IST)
    with psycopg.connect(filled) as conn:
        report = find_symbol_gaps(conn, cal, load_index(conn), ["TCS", "INFY"], M1, *SPAN, now)
    tcs, infy = report.symbols
    assert tcs.gaps == (Gap(ist(FRI, 10, 0), ist(FRI, 10, 30), 30),)
    assert infy.gaps == (Gap(ist(MON, 15, 0), ist(MON, 15, 30), 30),)
    assert tcs.expected == 3 * 375 and tcs.present == 3 * 375 - 30  # Thu, Fri, Mon only
    assert not any(g.start.date() in (date(2026, 11, 21), date(2026, 11, 22), HOLIDAY)
                   for s in report.symbols for g in s.gaps)


def test_gap_fill_repairs_exactly_the_gaps_and_closes_feed_gaps(
    filled: str, kite: KiteClients, cal: TradingCalendar
) -> None:
    with psycopg.connect(filled) as conn:
        conn.execute(
            """INSERT INTO md.feed_gaps (collector, symbols, gap_start, gap_end, reason) VALUES
               ('primary', '{TCS}', %s, %s, 'process killed'),
               ('primary', '{TCS,NOSUCH}', %s, %s, 'disconnect'),
               ('primary', '{INFY}', %s, NULL, 'still down')""",
            (ist(FRI, 10, 0) + timedelta(seconds=20), ist(FRI, 10, 29, ) + timedelta(seconds=40),
             ist(FRI, 11, 0), ist(FRI, 11, 5), ist(MON, 15, 0)))
    dry = fill_gaps(filled, cal, _index(filled), ["TCS", "INFY"], M1, *SPAN, kite, dry_run=True)
    assert dry.plan.requests == 2 and dry.backfill is None and dry.before.missing == 60

    result = fill_gaps(filled, cal, _index(filled), ["TCS", "INFY"], M1, *SPAN, kite)
    assert result.backfill is not None and result.backfill.requests == 2
    assert result.backfill.bars_written == 60 and result.backfill.bars_unchanged == 0
    assert result.after is not None and result.after.gap_count == 0
    assert "0 gaps (0 bars) remain" in result.summary()
    with psycopg.connect(filled) as conn:
        rows = conn.execute("SELECT reason, filled_at IS NOT NULL FROM md.feed_gaps ORDER BY id"
                            ).fetchall()
    # repaired; names an unknown instrument; has no end yet
    assert rows == [("process killed", True), ("disconnect", False), ("still down", False)]


def test_completeness_per_day_matches_the_quality_labels(
    filled: str, cal: TradingCalendar
) -> None:
    now = datetime.now(IST)
    with psycopg.connect(filled) as conn:
        report = completeness_report(conn, cal, load_index(conn), ["TCS", "INFY"], [M1, M5],
                                     THU, HOLIDAY, now)
    assert report.days == (THU, FRI, MON)  # no weekend, no holiday
    by_key = {(r.symbol, r.timeframe, r.day): r for r in report.rows}
    fri = by_key[("TCS", "1m", FRI)]
    assert (fri.expected, fri.actual, fri.percent, fri.quality) == (375, 345, 92.0, "fair")
    assert by_key[("TCS", "1m", THU)].quality == "excellent"
    assert by_key[("TCS", "5m", FRI)].expected == 75 and by_key[("TCS", "5m", FRI)].actual == 0
    assert report.worst(1)[0].timeframe == "5m"  # nothing of 5m was backfilled


def test_instruments_sync_is_idempotent(db_url: str, kite: KiteClients) -> None:
    first = sync_instruments(db_url, kite())
    assert first.before == 0 and first.total > 100 and first.by_exchange["NSE"] > 50
    second = sync_instruments(db_url, kite())
    assert second.before == second.total == first.total


def test_maintenance_applies_retention_and_reports_sizes(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:  # one bar far older than the 365-day retention
        conn.execute(
            """INSERT INTO md.intraday_bars (exchange, symbol, instrument_token, bar_timestamp,
                   timeframe, open, high, low, close) VALUES ('NSE', 'TCS', 1, %s, '1m', 1, 1, 1, 1)""",
            (datetime.now(IST) - timedelta(days=800),))
    report = run_maintenance(db_url)
    by_table = {r.table: r for r in report.retention}
    if report.capabilities.policies:
        assert by_table["md.intraday_bars"].via == "policy"
    else:
        assert by_table["md.intraday_bars"].dropped_chunks == 1
    assert {s.table for s in report.sizes} >= {"md.intraday_bars", "md.tick_data"}


def _index(dsn: str) -> InstrumentIndex:
    with psycopg.connect(dsn) as conn:
        return load_index(conn)
