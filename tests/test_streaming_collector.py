"""A collector end to end: the real simulator, the streaming service in-process, a real DB.

The simulator replays days at high speed so that every timeframe closes within seconds;
what the database ends up with is compared with what the simulator says happened.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from market_bridge.collect import MAX_PAYLOAD
from market_bridge.kite.models import IST
from market_bridge.kite.simulator import running_simulator
from market_bridge.market.timeframes import TIMEFRAMES
from market_bridge.watchlists import get_watchlist

from .test_streaming_support import (
    AUTH,
    create_collector,
    fetch,
    listening,
    load_sim_instruments,
    running_service,
    service_config,
    status_of,
    wait_for,
)

DAY = date(2026, 11, 23)  # a Monday
IT = get_watchlist("IT").symbols


def test_full_mode_watchlist_writes_ticks_bars_of_every_timeframe_and_depth(
    db_url: str, tmp_path: Path
) -> None:
    """Replay 23:55 -> 00:16 at 200x (market open all day): the day, 1h and 30m bars close."""

    async def go() -> None:
        start = datetime.combine(DAY, datetime.min.time(), IST) + timedelta(hours=23, minutes=55)
        async with running_simulator(port=0, replay=start, speed=200, session="always") as sim:
            await load_sim_instruments(db_url, sim)
            config = service_config(
                db_url, sim, tmp_path / "spool", max_tick_age=None, depth_interval=5.0
            )
            async with listening(db_url) as live, running_service(config):
                await create_collector(db_url, "it", watchlists=["IT"], mode="full")

                async def hour_bars() -> int:
                    rows = await fetch(db_url, "SELECT count(*) FROM md.intraday_bars "
                                               "WHERE timeframe = '1h'")  # fmt: skip
                    return int(rows[0][0]) >= len(IT)

                await wait_for(hour_bars, timeout=20, what="1h bars of every IT symbol")
                status = await status_of(db_url, "it")
                await asyncio.sleep(0.3)  # a few more live flushes
        assert status is not None
        assert status["state"] == "running" and status["running"] is True
        assert status["subscribed_tokens"] == len(IT)
        assert status["ticks_received"] > 1000 and status["bars_created"] > 0
        assert status["metrics"]["ticker"]["connected"] == 1

        midnight = datetime.combine(DAY + timedelta(days=1), datetime.min.time(), IST)
        # bars: every timeframe, live provenance, for every symbol of the watchlist
        rows = await fetch(db_url, "SELECT timeframe, count(DISTINCT symbol) FROM md.intraday_bars"
                                   " WHERE provenance = 'live' GROUP BY timeframe")  # fmt: skip
        assert dict(rows) == dict.fromkeys(TIMEFRAMES, len(IT))

        # per-tick volume: deltas of the cumulative volume add up to the day's volume (the
        # first tick of the new day counts in full: we watched since the previous day)
        rows = await fetch(db_url, """
            SELECT symbol, sum(volume_delta), max(volume_traded) FROM md.tick_data
            WHERE tick_timestamp >= %s GROUP BY symbol""", (midnight,))
        assert len(rows) == len(IT)
        for symbol, delta_sum, day_volume in rows:
            assert delta_sum == day_volume, symbol

        # 1m bars of the new day carry exactly the per-tick volumes of their minute
        rows = await fetch(db_url, """
            WITH t AS (SELECT symbol, date_trunc('minute', tick_timestamp) AS m,
                              sum(volume_delta) AS v FROM md.tick_data GROUP BY 1, 2)
            SELECT b.symbol, b.bar_timestamp, b.volume, t.v FROM md.intraday_bars b
            JOIN t ON t.symbol = b.symbol AND t.m = b.bar_timestamp
            WHERE b.timeframe = '1m' AND b.bar_timestamp >= %s""", (midnight,))
        assert len(rows) >= 10 * len(IT)
        assert all(vol == v for _, _, vol, v in rows)

        # order book: stored, at most one snapshot per 5 s per instrument (exchange time)
        rows = await fetch(db_url, """
            SELECT symbol, count(*), min(gap) FROM (
                SELECT symbol, snapshot_timestamp - lag(snapshot_timestamp) OVER
                       (PARTITION BY symbol ORDER BY snapshot_timestamp) AS gap
                FROM md.order_book) s GROUP BY symbol""")
        assert len(rows) == len(IT)
        for symbol, count, min_gap in rows:
            assert count > 100 and min_gap >= timedelta(seconds=5), symbol
        book = await fetch(db_url, "SELECT bid_prices, ask_prices FROM md.order_book LIMIT 1")
        assert len(book[0][0]) == 5 and len(book[0][1]) == 5 and book[0][0][0] < book[0][1][0]

        # live messages: every type, the contract's shape, payloads under the NOTIFY limit
        assert live.payload_sizes and max(live.payload_sizes) < MAX_PAYLOAD
        assert {m["type"] for m in live.messages} >= {"tick", "bar", "orderbook", "stats"}
        assert {m["symbol"] for m in live.of("tick")} == set(IT)
        final = [m for m in live.of("bar", "INFY") if m["data"]["final"]]
        assert {m["data"]["timeframe"] for m in final} == set(TIMEFRAMES)
        assert all(m["data"]["revision"] == 0 and m["data"]["source"] == "live" for m in final)
        forming = [m for m in live.of("bar", "INFY") if not m["data"]["final"]]
        assert {m["data"]["timeframe"] for m in forming} == set(TIMEFRAMES)
        tick = live.of("tick", "INFY")[-1]["data"]
        assert tick["price"] > 0 and tick["volume"] > 0 and tick["timestamp"].endswith("+05:30")
        assert len(live.of("orderbook", "INFY")[-1]["data"]["bids"]) == 5
        stats = live.of("stats", "INFY")[-1]["data"]
        assert stats["prev_close"] > 0 and stats["high"] >= stats["low"] > 0

    asyncio.run(go())


def test_replayed_day_minute_bars_equal_the_simulators_historical_candles(
    db_url: str, tmp_path: Path
) -> None:
    """The key correctness check: live 1m bars == Kite's (the simulator's) minute candles.

    The replay starts before the 09:15 open, so the first minute's volume is complete
    (the aggregator counts a day's first cumulative volume in full only when it was
    watching before the open)."""
    symbols = ["INFY", "RELIANCE", "SBIN", "NIFTY 50"]

    async def go() -> None:
        start = datetime.combine(DAY, datetime.min.time(), IST) + timedelta(hours=9, minutes=12)
        async with running_simulator(port=0, replay=start, speed=120, historical_per_second=20) as sim:
            await load_sim_instruments(db_url, sim)
            config = service_config(db_url, sim, tmp_path / "spool", max_tick_age=None)
            async with running_service(config):
                await create_collector(db_url, "replay", symbols=symbols, mode="full")

                async def minutes() -> bool:
                    rows = await fetch(db_url, "SELECT count(*) FROM md.intraday_bars WHERE "
                                               "timeframe = '1m' AND bar_timestamp >= %s",
                                       (start + timedelta(minutes=3),))  # fmt: skip
                    return int(rows[0][0]) >= 6 * len(symbols)

                await wait_for(minutes, timeout=20, what="six minutes of 1m bars")
            async with httpx.AsyncClient() as client:
                candles = {}
                for token, symbol in await fetch(
                    db_url, "SELECT instrument_token, tradingsymbol FROM md.instruments "
                            "WHERE exchange = 'NSE' AND tradingsymbol = ANY(%s)", (symbols,),
                ):  # fmt: skip
                    resp = await client.get(
                        f"{sim.url}/instruments/historical/{token}/minute", headers=AUTH,
                        params={"from": f"{DAY} 09:15:00", "to": f"{DAY} 09:30:00"},
                    )  # fmt: skip
                    resp.raise_for_status()
                    candles[symbol] = resp.json()["data"]["candles"]
        rows = await fetch(db_url, """
            SELECT symbol, bar_timestamp, open, high, low, close, volume FROM md.intraday_bars
            WHERE timeframe = '1m' AND bar_timestamp >= %s ORDER BY symbol, bar_timestamp""",
            (start + timedelta(minutes=3),))  # fmt: skip
        ours: dict[str, list[tuple[datetime, list[float]]]] = {}
        for symbol, ts, *ohlcv in rows:
            ours.setdefault(symbol, []).append((ts, ohlcv))
        assert set(ours) == set(symbols)
        first_minute = start + timedelta(minutes=3)  # 09:15, the session open
        for symbol, bars in ours.items():
            assert bars[0][0] == first_minute, symbol  # the first minute is there, complete
            kite = {datetime.strptime(r[0], "%Y-%m-%dT%H:%M:%S%z"): r[1:6]
                    for r in candles[symbol]}  # fmt: skip
            for ts, ohlcv in bars:
                assert ohlcv == pytest.approx(kite[ts], rel=1e-12), (symbol, ts)

    asyncio.run(go())
