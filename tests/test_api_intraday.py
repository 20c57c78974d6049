"""/intraday/*: bars, latest, today, stats, vwap, ticks, order book, gaps, completeness."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time

import httpx
import pytest

from market_bridge.kite.models import IST

from .test_api_support import (
    ApiServer,
    SeedBar,
    execute,
    insert_bars,
    insert_instruments,
    make_bars,
    running_api,
    session_minutes,
)

THU, MON, TUE = date(2024, 1, 25), date(2024, 1, 29), date(2024, 1, 30)
HOLE = [datetime.combine(MON, time(10, m), IST) for m in (0, 1, 2)]  # missing on Monday


def _reliance() -> list[SeedBar]:
    thu = make_bars("RELIANCE", 738561, session_minutes(THU), base=2500, step=0.1)
    mon = make_bars(
        "RELIANCE", 738561, [t for t in session_minutes(MON) if t not in HOLE], base=2560, step=0.1
    )
    # Tuesday: live bars 09:15..11:59 (the fixed clock is 12:00:30).
    tue = make_bars(
        "RELIANCE", 738561, session_minutes(TUE, last=time(11, 59)), base=2610, step=0.1,
        provenance="live",
    )
    return thu + mon + tue


RELIANCE = _reliance()


@pytest.fixture(scope="module")
def api(module_db_url: str) -> Iterator[ApiServer]:
    dsn = module_db_url
    insert_instruments(
        dsn,
        [
            ("NSE", "RELIANCE", 738561, "EQ"),
            ("NSE", "TCS", 2953217, "EQ"),
            ("NSE", "INFY", 408065, "EQ"),
            ("NSE", "NIFTY 50", 256265, "EQ"),
        ],
    )
    insert_bars(dsn, RELIANCE)
    insert_bars(dsn, make_bars("NIFTY 50", 256265, session_minutes(TUE, last=time(9, 20)),
                               base=21500, step=1))
    insert_bars(dsn, make_bars("SENSEX", 265, session_minutes(TUE, last=time(9, 16)),
                               base=71000, step=1, exchange="BSE"))
    execute(
        dsn,
        """INSERT INTO md.tick_data (exchange, symbol, instrument_token, tick_timestamp, price,
               quantity, volume_traded, mode)
           SELECT 'NSE', 'TCS', 2953217, %s::timestamptz + g * interval '1 second',
                  3500 + g, 5, 1000 + 5 * g, 'full'
           FROM generate_series(0, 9) g""",
        (datetime(2024, 1, 30, 11, 0, tzinfo=IST),),
    )
    execute(
        dsn,
        """INSERT INTO md.order_book (exchange, symbol, instrument_token, snapshot_timestamp,
               bid_prices, bid_quantities, bid_orders, ask_prices, ask_quantities, ask_orders,
               total_buy_quantity, total_sell_quantity)
           VALUES ('NSE', 'RELIANCE', 738561, %s, '{2626.3,2626.2,2626.1,2626.0,2625.9}',
                   '{10,20,30,40,50}', '{1,2,3,4,5}', '{2626.5,2626.6,2626.7,2626.8,2626.9}',
                   '{15,25,35,45,55}', '{1,1,1,1,1}', 150, 175),
                  ('NSE', 'RELIANCE', 738561, %s, '{1,0,0,0,0}', '{1,0,0,0,0}', '{1,0,0,0,0}',
                   '{2,0,0,0,0}', '{1,0,0,0,0}', '{1,0,0,0,0}', 1, 1)""",
        (datetime(2024, 1, 30, 11, 59, 59, tzinfo=IST), datetime(2024, 1, 30, 9, 30, tzinfo=IST)),
    )
    with running_api(dsn) as server:
        yield server


@pytest.fixture(scope="module")
def client(api: ApiServer) -> Iterator[httpx.Client]:
    with api.client() as c:
        yield c


def _bars_on(day: date) -> list[SeedBar]:
    return [b for b in RELIANCE if b.ts.date() == day]


# ---- bars --------------------------------------------------------------------------


def test_bars_default_is_most_recent_limit_ascending(client: httpx.Client) -> None:
    r = client.get("/intraday/bars/RELIANCE", params={"limit": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["symbol"], body["exchange"], body["timeframe"]) == ("RELIANCE", "NSE", "1m")
    assert body["count"] == 5 and body["limit"] == 5
    assert [b["timestamp"] for b in body["bars"]] == [
        b.ts.isoformat() for b in RELIANCE[-5:]
    ]
    last = body["bars"][-1]
    seed = RELIANCE[-1]
    assert last == {
        "timestamp": "2024-01-30T11:59:00+05:30",
        "open": seed.open, "high": seed.high, "low": seed.low, "close": seed.close,
        "volume": seed.volume, "trades_count": seed.trades_count, "vwap": seed.vwap,
        "oi": None, "provenance": "live", "revision": 0,
    }


def test_bars_range_with_offsets_is_inclusive_and_answers_in_ist(client: httpx.Client) -> None:
    # 09:15..09:20 IST given in UTC ("Z") and with an unencoded "+" (arrives as a space).
    for params in (
        {"from": "2024-01-30T03:45:00Z", "to": "2024-01-30T03:50:00Z"},
        {"from": "2024-01-30T09:15:00+05:30", "to": "2024-01-30T09:20:00+05:30"},
    ):
        body = client.get("/intraday/bars/RELIANCE", params=params).json()
        assert [b["timestamp"][11:16] for b in body["bars"]] == [
            "09:15", "09:16", "09:17", "09:18", "09:19", "09:20"
        ]
        assert body["from"] == "2024-01-30T09:15:00+05:30"
        assert body["to"] == "2024-01-30T09:20:00+05:30"
    raw = client.get("/intraday/bars/RELIANCE?from=2024-01-30T09:15:00+05:30&to=2024-01-30T09:16:00+05:30")
    assert raw.json()["count"] == 2


def test_bars_plain_dates_cover_whole_ist_days(client: httpx.Client) -> None:
    body = client.get(
        "/intraday/bars/RELIANCE", params={"from": "2024-01-25", "to": "2024-01-29"}
    ).json()
    assert body["count"] == len(_bars_on(THU)) + len(_bars_on(MON))
    assert body["bars"][0]["timestamp"] == "2024-01-25T09:15:00+05:30"
    assert body["bars"][-1]["timestamp"] == "2024-01-29T15:29:00+05:30"
    assert body["to"] == "2024-01-29T23:59:59.999999+05:30"


def test_bars_limit_keeps_the_most_recent_of_the_range(client: httpx.Client) -> None:
    body = client.get(
        "/intraday/bars/RELIANCE", params={"from": "2024-01-25", "to": "2024-01-25", "limit": 3}
    ).json()
    assert [b["timestamp"][11:16] for b in body["bars"]] == ["15:27", "15:28", "15:29"]


def test_index_and_bse_symbols_resolve(client: httpx.Client) -> None:
    r = client.get("/intraday/bars/NSE:NIFTY%2050")
    assert r.status_code == 200, r.text
    assert (r.json()["symbol"], r.json()["count"]) == ("NIFTY 50", 6)
    r = client.get("/intraday/bars/bse%3Asensex")
    assert (r.json()["exchange"], r.json()["symbol"], r.json()["count"]) == ("BSE", "SENSEX", 2)


def test_known_instrument_without_bars_is_an_empty_list(client: httpx.Client) -> None:
    r = client.get("/intraday/bars/INFY")
    assert r.status_code == 200 and r.json()["bars"] == []


def test_unknown_symbol_is_404_naming_it(client: httpx.Client) -> None:
    for path in ("bars", "latest", "today", "stats", "vwap", "ticks", "orderbook", "gaps",
                 "completeness"):
        r = client.get(f"/intraday/{path}/NOPE")
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error"] == "unknown symbol"
        assert "NSE:NOPE" in r.json()["detail"]


# ---- latest, today -----------------------------------------------------------------


def test_latest_is_the_newest_bar(client: httpx.Client) -> None:
    body = client.get("/intraday/latest/RELIANCE").json()
    assert body["bar"]["timestamp"] == "2024-01-30T11:59:00+05:30"
    assert body["bar"]["close"] == RELIANCE[-1].close


def test_latest_without_bars_of_that_timeframe_is_404_no_data(client: httpx.Client) -> None:
    r = client.get("/intraday/latest/RELIANCE", params={"timeframe": "5m"})
    assert r.status_code == 404
    assert r.json() == {"error": "no data", "detail": "no 5m bars stored for NSE:RELIANCE"}


def test_today_is_the_current_ist_trading_day(client: httpx.Client) -> None:
    body = client.get("/intraday/today/RELIANCE").json()
    assert body["date"] == "2024-01-30"
    assert body["count"] == len(_bars_on(TUE))
    assert body["bars"][0]["timestamp"] == "2024-01-30T09:15:00+05:30"


# ---- stats, vwap -------------------------------------------------------------------


def test_stats_default_to_today_with_change_vs_previous_close(client: httpx.Client) -> None:
    body = client.get("/intraday/stats/RELIANCE").json()
    today, previous = _bars_on(TUE), _bars_on(MON)
    assert body["date"] == "2024-01-30"
    assert body["bar_count"] == len(today)
    assert body["open"] == today[0].open
    assert body["high"] == max(b.high for b in today)
    assert body["low"] == min(b.low for b in today)
    assert body["close"] == today[-1].close
    assert body["volume"] == sum(b.volume for b in today)
    assert body["previous_close"] == previous[-1].close
    assert body["change"] == pytest.approx(today[-1].close - previous[-1].close)
    assert body["change_percent"] == pytest.approx(
        (today[-1].close - previous[-1].close) * 100 / previous[-1].close
    )
    assert body["first_bar_at"] == "2024-01-30T09:15:00+05:30"


def test_stats_of_an_empty_range_and_of_the_first_day(client: httpx.Client) -> None:
    empty = client.get("/intraday/stats/RELIANCE", params={"from": "2024-01-27", "to": "2024-01-28"})
    assert empty.status_code == 200
    assert empty.json()["bar_count"] == 0 and empty.json()["open"] is None
    assert empty.json()["change"] is None
    first = client.get("/intraday/stats/RELIANCE", params={"from": "2024-01-25", "to": "2024-01-25"})
    assert first.json()["previous_close"] is None and first.json()["change"] is None


def _expected_vwap(bars: list[SeedBar]) -> list[float]:
    out, pv, vol = [], 0.0, 0
    for b in bars:
        price = b.vwap if b.vwap is not None else (b.high + b.low + b.close) / 3
        pv += price * b.volume
        vol += b.volume
        out.append(pv / vol)
    return out


def test_vwap_is_cumulative_and_resets_each_ist_day(client: httpx.Client) -> None:
    body = client.get("/intraday/vwap/RELIANCE").json()
    expected = _expected_vwap(_bars_on(TUE))
    assert body["count"] == len(expected)
    assert [p["vwap"] for p in body["series"]] == pytest.approx(expected)
    assert body["vwap"] == pytest.approx(expected[-1])
    assert body["as_of"] == "2024-01-30T11:59:00+05:30"
    # A two-day range restarts the cumulation at Tuesday's first bar.
    two_days = client.get(
        "/intraday/vwap/RELIANCE", params={"from": "2024-01-29", "to": "2024-01-30", "limit": 10000}
    ).json()
    assert [p["vwap"] for p in two_days["series"]] == pytest.approx(
        _expected_vwap(_bars_on(MON)) + expected
    )


def test_vwap_from_mid_session_still_cumulates_from_the_open(client: httpx.Client) -> None:
    body = client.get(
        "/intraday/vwap/RELIANCE", params={"from": "2024-01-30T10:00:00+05:30"}
    ).json()
    tue = _bars_on(TUE)
    expected = _expected_vwap(tue)
    first = next(i for i, b in enumerate(tue) if b.ts.time() == time(10, 0))
    assert body["series"][0]["timestamp"] == "2024-01-30T10:00:00+05:30"
    assert body["series"][0]["vwap"] == pytest.approx(expected[first])


# ---- ticks, order book -------------------------------------------------------------


def test_ticks_most_recent_limit_ascending(client: httpx.Client) -> None:
    body = client.get("/intraday/ticks/TCS", params={"limit": 3}).json()
    assert body["count"] == 3
    assert [t["price"] for t in body["ticks"]] == [3507.0, 3508.0, 3509.0]
    assert body["ticks"][-1]["timestamp"] == "2024-01-30T11:00:09+05:30"
    assert body["ticks"][-1]["volume_traded"] == 1045 and body["ticks"][-1]["mode"] == "full"
    ranged = client.get(
        "/intraday/ticks/TCS",
        params={"from": "2024-01-30T11:00:02+05:30", "to": "2024-01-30T11:00:04+05:30"},
    ).json()
    assert [t["price"] for t in ranged["ticks"]] == [3502.0, 3503.0, 3504.0]


def test_orderbook_is_the_latest_snapshot(client: httpx.Client) -> None:
    body = client.get("/intraday/orderbook/RELIANCE").json()
    assert body["timestamp"] == "2024-01-30T11:59:59+05:30"
    assert body["bids"][0] == {"price": 2626.3, "quantity": 10, "orders": 1}
    assert body["asks"][4] == {"price": 2626.9, "quantity": 55, "orders": 1}
    assert len(body["bids"]) == len(body["asks"]) == 5
    assert body["spread"] == pytest.approx(0.2)
    assert body["mid"] == pytest.approx(2626.4)
    assert (body["total_buy_quantity"], body["total_sell_quantity"]) == (150, 175)


def test_orderbook_without_snapshots_is_404_no_data(client: httpx.Client) -> None:
    r = client.get("/intraday/orderbook/TCS")
    assert r.status_code == 404 and r.json()["error"] == "no data"


# ---- gaps, completeness --------------------------------------------------------------


def test_gaps_skip_holidays_and_weekends(client: httpx.Client) -> None:
    # Thu 25 .. Mon 29: Fri 26 is Republic Day, then a weekend; only Monday's hole is a gap.
    body = client.get(
        "/intraday/gaps/RELIANCE", params={"from": "2024-01-25", "to": "2024-01-29"}
    ).json()
    assert body["expected_bars"] == 750
    assert body["actual_bars"] == 747
    assert body["gap_count"] == 1 and body["missing_bars"] == 3
    assert body["gaps"] == [
        {"start": "2024-01-29T10:00:00+05:30", "end": "2024-01-29T10:03:00+05:30",
         "missing_bars": 3}
    ]
    assert body["beyond_known_holidays"] is False


def test_gaps_today_count_only_closed_bars(client: httpx.Client) -> None:
    body = client.get("/intraday/gaps/RELIANCE").json()
    # 09:15..11:59 have closed by 12:00:30; the forming 12:00 bar is not expected yet.
    assert body["expected_bars"] == 165 and body["gaps"] == []
    assert body["from"] == "2024-01-30T00:00:00+05:30"


def test_gaps_in_utc_range_from_the_seed_example(client: httpx.Client) -> None:
    # The seed's example: 09:15Z..15:30Z is 14:45..21:00 IST: 45 session minutes on Monday.
    body = client.get(
        "/intraday/gaps/RELIANCE",
        params={"timeframe": "1m", "from": "2024-01-29T09:15:00Z", "to": "2024-01-29T15:30:00Z"},
    ).json()
    assert body["expected_bars"] == 45 and body["gaps"] == []


def test_completeness_shape_and_labels(client: httpx.Client) -> None:
    body = client.get(
        "/intraday/completeness/RELIANCE",
        params={"timeframe": "1m", "from": "2024-01-29", "to": "2024-01-29"},
    ).json()
    assert body["completeness"] == 99.2
    assert body["quality"] == "excellent"
    assert (body["expected"], body["actual"], body["missing"]) == (375, 372, 3)
    assert body["quality_thresholds"] == {"excellent": 99.0, "good": 95.0, "fair": 80.0}
    holiday = client.get(
        "/intraday/completeness/RELIANCE", params={"from": "2024-01-26", "to": "2024-01-26"}
    ).json()
    assert (holiday["expected"], holiday["quality"]) == (0, "no_session")
    five = client.get(
        "/intraday/completeness/RELIANCE", params={"timeframe": "5m", "from": "2024-01-29"}
    ).json()
    assert five["actual"] == 0 and five["quality"] == "poor"
    # from without to runs to now: Monday 75 + Tuesday's 33 closed 5m bars.
    assert five["expected"] == 75 + 33
