"""Backfill against the Kite simulator and a real TimescaleDB: what lands in md.intraday_bars,
idempotence, resume, faults (429 bursts, expired tokens, rejected instruments)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

import httpx
import psycopg
import pytest

from market_bridge.backfill import (
    BackfillStopped,
    KiteClients,
    backfill_symbols,
    sync_instruments,
)
from market_bridge.kite.models import IST
from market_bridge.kite.rest import KiteRest, RequestWindow
from market_bridge.kite.simulator import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_API_KEY,
    Simulator,
    simulator_thread,
)
from market_bridge.market.calendar import TradingCalendar, expected_bar_starts
from market_bridge.market.timeframes import TIMEFRAMES

M1 = TIMEFRAMES["1m"]
SYMBOLS = ["RELIANCE", "TCS", "INFY"]
# A month ending on an NSE holiday (Tue 2026-11-24), with weekends inside.
MONTH = (datetime(2026, 10, 24, tzinfo=IST), datetime(2026, 11, 25, tzinfo=IST))


def ist(d: date, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime.combine(d, time(hh, mm, ss), IST)


@pytest.fixture(scope="module")
def cal() -> TradingCalendar:
    return TradingCalendar()


@pytest.fixture(scope="module")
def sim(cal: TradingCalendar) -> Iterator[Simulator]:
    with simulator_thread(port=0, session="nse", is_trading_day=cal.is_trading_day) as s:
        yield s


@pytest.fixture
def kite(sim: Simulator) -> Iterator[KiteClients]:
    yield KiteClients(DEFAULT_API_KEY, DEFAULT_ACCESS_TOKEN, sim.url)
    httpx.delete(f"{sim.url}/sim/faults")  # whatever a test injected ends with it


@pytest.fixture
def dsn(db_url: str, kite: KiteClients) -> str:
    sync_instruments(db_url, kite())
    return db_url


def fault(sim: Simulator, name: str, seconds: float) -> None:
    httpx.post(f"{sim.url}/sim/faults", json={"fault": name, "seconds": seconds}).raise_for_status()


def stored(dsn: str, symbol: str, tf: str = "1m") -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            """SELECT bar_timestamp, open, high, low, close, volume, provenance
                 FROM md.intraday_bars WHERE exchange = 'NSE' AND symbol = %s AND timeframe = %s
                ORDER BY bar_timestamp""", (symbol, tf)).fetchall()


def count_bars(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM md.intraday_bars").fetchone()
    return int(row[0]) if row else 0


def test_a_month_of_minutes_lands_exactly_and_a_second_run_writes_nothing(
    dsn: str, kite: KiteClients, cal: TradingCalendar
) -> None:
    dry = backfill_symbols(dsn, cal, SYMBOLS, M1, *MONTH, kite, dry_run=True)
    assert dry.status == "dry_run" and count_bars(dsn) == 0
    expected = expected_bar_starts(cal, M1, *MONTH)
    assert dry.plan.expected_bars == 3 * len(expected)

    result = backfill_symbols(dsn, cal, SYMBOLS, M1, *MONTH, kite, concurrent=3)
    assert result.status == "completed", result.summary()
    assert result.requests == dry.plan.requests == 3
    assert result.bars_written == 3 * len(expected)

    # Row by row what the simulator serves for the same range (fetched independently).
    direct = KiteRest(DEFAULT_API_KEY, DEFAULT_ACCESS_TOKEN, root=kite.root)
    window = RequestWindow(MONTH[0], MONTH[1] - timedelta(seconds=1))
    for symbol, token in (("RELIANCE", 738561), ("TCS", 2953217), ("INFY", 408065)):
        served = [(c.start, c.open, c.high, c.low, c.close, c.volume, "historical")
                  for c in direct.historical(token, M1, window)]
        assert stored(dsn, symbol) == served
        assert [row[0] for row in served] == expected  # no holiday, weekend or night bars

    again = backfill_symbols(dsn, cal, SYMBOLS, M1, *MONTH, kite)
    assert again.status == "nothing_to_do" and again.requests == 0
    assert "nothing to do" in again.summary()
    assert count_bars(dsn) == 3 * len(expected)


def test_forced_rerun_fetches_again_but_writes_nothing_identical(
    dsn: str, kite: KiteClients, cal: TradingCalendar
) -> None:
    week = (ist(date(2026, 11, 16)), ist(date(2026, 11, 21)))
    first = backfill_symbols(dsn, cal, ["TCS"], M1, *week, kite)
    assert first.bars_written == 5 * 375
    with psycopg.connect(dsn) as conn:
        before = conn.execute("SELECT max(updated_at) FROM md.intraday_bars").fetchone()
    forced = backfill_symbols(dsn, cal, ["TCS"], M1, *week, kite, force=True)
    assert forced.requests == 1 and forced.bars_written == 0
    assert forced.bars_unchanged == 5 * 375
    assert "nothing new" in forced.summary()
    with psycopg.connect(dsn) as conn:
        after = conn.execute("SELECT max(updated_at) FROM md.intraday_bars").fetchone()
    assert after == before  # identical rows were not rewritten


def test_historical_bars_replace_live_ones(
    dsn: str, kite: KiteClients, cal: TradingCalendar
) -> None:
    day = date(2026, 11, 20)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            """INSERT INTO md.intraday_bars (exchange, symbol, instrument_token, bar_timestamp,
                   timeframe, open, high, low, close, volume, provenance, revision)
               VALUES ('NSE', 'INFY', 408065, %s, '1m', 1, 1, 1, 1, 1, 'live', 3)""",
            (ist(day, 10, 0),))
    result = backfill_symbols(dsn, cal, ["INFY"], M1, ist(day), ist(day + timedelta(days=1)),
                              kite)
    assert result.stats[0].bars_updated == 1 and result.stats[0].bars_new == 374
    row = next(r for r in stored(dsn, "INFY") if r[0] == ist(day, 10, 0))
    assert row[6] == "historical" and row[1] != 1


def test_resume_fetches_only_what_is_missing(
    dsn: str, kite: KiteClients, cal: TradingCalendar
) -> None:
    wk1 = (ist(date(2026, 11, 16)), ist(date(2026, 11, 18)))  # Mon, Tue: an interrupted run
    backfill_symbols(dsn, cal, ["RELIANCE"], M1, *wk1, kite)
    full = (ist(date(2026, 11, 16)), ist(date(2026, 11, 21)))
    resumed = backfill_symbols(dsn, cal, ["RELIANCE"], M1, *full, kite)
    (sp,) = resumed.plan.symbols
    assert sp.done_bars == 2 * 375 and sp.bars_to_fetch == 3 * 375
    assert sp.units[0].window.start == ist(date(2026, 11, 18), 9, 15)
    assert resumed.requests == 1 and resumed.bars_written == 3 * 375 and resumed.bars_unchanged == 0


def test_a_429_burst_is_retried_and_the_run_completes(
    dsn: str, kite: KiteClients, cal: TradingCalendar, sim: Simulator
) -> None:
    fault(sim, "rate_limit", 2)
    day = (ist(date(2026, 11, 20)), ist(date(2026, 11, 21)))
    result = backfill_symbols(dsn, cal, SYMBOLS, M1, *day, kite, concurrent=3)
    assert result.status == "completed", result.summary()
    assert result.retries >= 3  # every request met the 429s at least once
    assert result.bars_written == 3 * 375


def test_an_expired_token_stops_everything_with_the_login_hint(
    dsn: str, kite: KiteClients, cal: TradingCalendar, sim: Simulator
) -> None:
    fault(sim, "expire_token", 30)
    day = (ist(date(2026, 11, 20)), ist(date(2026, 11, 21)))
    with pytest.raises(BackfillStopped, match="run `market-bridge kite login`") as info:
        backfill_symbols(dsn, cal, SYMBOLS, M1, *day, kite, concurrent=1)
    result = info.value.result
    assert result.status == "stopped" and result.bars_written == 0
    assert sum(s.requests_skipped for s in result.stats) == 2  # the others never went out
    assert result.requests == 1
    assert count_bars(dsn) == 0
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT status, message FROM md.backfill_runs").fetchone()
    assert row is not None and row[0] == "stopped" and "kite login" in row[1]


def test_a_rejected_symbol_does_not_stop_the_others(
    dsn: str, kite: KiteClients, cal: TradingCalendar
) -> None:
    with psycopg.connect(dsn) as conn:  # listed locally, unknown to Kite: 400 InputException
        conn.execute("""INSERT INTO md.instruments (exchange, tradingsymbol, instrument_token)
                        VALUES ('NSE', 'DELISTED', 1)""")
    day = (ist(date(2026, 11, 20)), ist(date(2026, 11, 21)))
    result = backfill_symbols(dsn, cal, ["DELISTED", "TCS", "NOSUCH"], M1, *day, kite)
    assert result.status == "completed_with_errors"
    by_symbol = {s.symbol: s for s in result.stats}
    assert "Kite rejected the request" in by_symbol["DELISTED"].errors[0]
    assert "unknown instrument 'NOSUCH'" in by_symbol["NOSUCH"].errors[0]
    assert by_symbol["TCS"].bars_written == 375 and not by_symbol["TCS"].errors


def test_today_writes_only_closed_bars_and_is_fetched_again_until_settled(
    dsn: str, kite: KiteClients, cal: TradingCalendar
) -> None:
    today = date(2026, 11, 25)

    def clock() -> datetime:  # 11:02:30 during the session: the 11:02 bar is still forming
        return ist(today, 11, 2, 30)

    span = (ist(today), ist(today + timedelta(days=1)))
    first = backfill_symbols(dsn, cal, ["TCS"], M1, *span, kite, clock=clock)
    rows = stored(dsn, "TCS")
    assert rows[0][0] == ist(today, 9, 15) and rows[-1][0] == ist(today, 11, 1)
    assert first.bars_written == len(rows) == 107
    second = backfill_symbols(dsn, cal, ["TCS"], M1, *span, kite, clock=clock)
    assert second.requests == 1 and second.bars_written == 0  # today is not "done" yet
