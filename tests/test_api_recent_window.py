"""Recent-window-first reads (issue #6): the answers do not depend on where the bars are.

``latest``, ``bars`` and the stream's latest bars look at the last days first and read
further back only when that window holds too little; the symbol check asks md.instruments
before the data tables. These tests put bars inside and outside the window (the API's
clock is NOW, 2024-01-30) and check the same answers as a plain read of everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime, time

import httpx
import psycopg
import pytest

from market_bridge.kite.models import IST
from market_bridge.market.symbols import Symbol
from market_bridge.queries import bars as bar_queries
from market_bridge.queries import latest as latest_queries
from market_bridge.queries import symbols as symbol_queries

from .test_api_support import (
    NOW,
    ApiServer,
    insert_bars,
    insert_instruments,
    make_bars,
    running_api,
    session_minutes,
)

OLD = date(2023, 11, 30)  # two months before NOW: far outside any recent window
MON = date(2024, 1, 29)


@pytest.fixture(scope="module")
def api(module_db_url: str) -> Iterator[ApiServer]:
    dsn = module_db_url
    insert_instruments(dsn, [("NSE", "TCS", 2953217, "EQ"), ("NSE", "INFY", 408065, "EQ"),
                             ("NSE", "SBIN", 779521, "EQ")])  # fmt: skip
    # TCS: a full day two months ago and a full day yesterday (Monday).
    insert_bars(dsn, make_bars("TCS", 2953217, session_minutes(OLD), base=3000, step=0.5))
    insert_bars(dsn, make_bars("TCS", 2953217, session_minutes(MON), base=3500, step=0.5))
    # INFY: only old bars. WIPRO: bars but not in md.instruments (a backfill before the
    # first instruments sync), old ones only.
    insert_bars(dsn, make_bars("INFY", 408065, session_minutes(OLD, last=time(9, 19)),
                               base=1500, step=1))  # fmt: skip
    insert_bars(dsn, make_bars("WIPRO", 969473, session_minutes(OLD, last=time(9, 16)),
                               base=450, step=1))  # fmt: skip
    with running_api(dsn) as server:
        yield server


@pytest.fixture(scope="module")
def client(api: ApiServer) -> Iterator[httpx.Client]:
    with api.client() as c:
        yield c


def _at(day: date, hh: int, mm: int) -> str:
    return datetime.combine(day, time(hh, mm), IST).isoformat()


def test_latest_outside_the_recent_window_is_still_found(client: httpx.Client) -> None:
    r = client.get("/intraday/latest/INFY")
    assert r.status_code == 200
    assert r.json()["bar"]["timestamp"] == _at(OLD, 9, 19)
    assert client.get("/intraday/latest/TCS").json()["bar"]["timestamp"] == _at(MON, 15, 29)


def test_bars_too_few_in_the_window_reads_further_back(client: httpx.Client) -> None:
    # 375 bars in the window (Monday); 500 asked: the last 125 of the old day come first.
    body = client.get("/intraday/bars/TCS", params={"limit": 500}).json()
    stamps = [b["timestamp"] for b in body["bars"]]
    assert body["count"] == 500
    assert stamps[0] == _at(OLD, 13, 25) and stamps[124] == _at(OLD, 15, 29)
    assert stamps[125] == _at(MON, 9, 15) and stamps[-1] == _at(MON, 15, 29)
    assert stamps == sorted(stamps)
    # Enough in the window: only the window's newest.
    small = client.get("/intraday/bars/TCS", params={"limit": 10}).json()["bars"]
    assert [b["timestamp"] for b in small] == stamps[-10:]


def test_bars_window_counts_back_from_to(client: httpx.Client) -> None:
    body = client.get("/intraday/bars/TCS", params={"to": "2023-12-01", "limit": 3}).json()
    assert [b["timestamp"] for b in body["bars"]] == [_at(OLD, 15, m) for m in (27, 28, 29)]
    everything = client.get("/intraday/bars/TCS", params={"from": "2023-01-01", "limit": 10000})
    assert everything.json()["count"] == 750


def test_symbol_with_bars_but_not_listed_is_known(client: httpx.Client) -> None:
    r = client.get("/intraday/latest/WIPRO")
    assert r.status_code == 200 and r.json()["bar"]["timestamp"] == _at(OLD, 9, 16)
    assert client.get("/intraday/latest/NOSUCH").status_code == 404


def test_a_gap_fill_shows_in_completeness_at_once(api: ApiServer, module_db_url: str) -> None:
    day = date(2024, 1, 25)  # a Thursday; SBIN is listed but has no bars yet
    params = {"from": day.isoformat(), "to": day.isoformat()}
    with api.client() as c:
        before = c.get("/intraday/completeness/SBIN", params=params).json()
        assert (before["actual"], before["expected"]) == (0, 375)
        insert_bars(module_db_url, make_bars("SBIN", 779521, session_minutes(day, last=time(9, 24)),
                                             base=600, step=1))  # fmt: skip
        after = c.get("/intraday/completeness/SBIN", params=params).json()
    assert (after["actual"], after["missing"]) == (10, 365)


def test_query_functions_agree_with_and_without_the_window(module_db_url: str) -> None:
    asyncio.run(_query_functions(module_db_url))


async def _query_functions(module_db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(module_db_url, autocommit=True) as conn:
        await conn.execute("SET TimeZone = 'UTC'")  # timestamps still come back in IST
        key = ("NSE", "TCS", "1m")
        for now in (NOW, datetime(2030, 1, 1, tzinfo=UTC)):  # window hit, window empty
            bar = await bar_queries.latest_bar(conn, *key, now=now)
            assert bar is not None and bar.timestamp.isoformat() == _at(MON, 15, 29)
            rows = await bar_queries.bars_in_range(conn, *key, None, None, 400, now=now)
            assert len(rows) == 400 and rows[-1].timestamp.isoformat() == _at(MON, 15, 29)
            assert rows[0].timestamp.isoformat() == _at(OLD, 15, 5)
            latest = await latest_queries.latest_bars(
                conn, [Symbol("NSE", s) for s in ("TCS", "INFY", "NOSUCH")], "1m", now=now
            )
            assert {s.tradingsymbol: b.timestamp.isoformat() for s, b in latest.items()} == {
                "TCS": _at(MON, 15, 29),
                "INFY": _at(OLD, 9, 19),
            }
            assert latest[Symbol("NSE", "INFY")].instrument_token == 408065
        known = await symbol_queries.known_symbols(
            conn, [Symbol("NSE", s) for s in ("TCS", "WIPRO", "NOSUCH")]
        )
        assert known == {Symbol("NSE", "TCS"), Symbol("NSE", "WIPRO")}
