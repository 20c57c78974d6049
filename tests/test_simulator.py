"""The Kite simulator against the real kiteconnect package, a raw WebSocket client and its
own model. Real sockets on 127.0.0.1, free ports; the simulators run in background threads
(kiteconnect is blocking) and KiteTicker runs in a subprocess (Twisted's reactor cannot be
restarted and must not live in the pytest process)."""

from __future__ import annotations

import asyncio
import csv
import gzip
import hashlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import orjson
import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from market_bridge.kite.codec import FrameError, decode_frame, decode_frame_result, decode_text
from market_bridge.kite.models import IST, Tick
from market_bridge.kite.simulator import Simulator, simulator_thread
from market_bridge.kite.simulator.faults import FaultBoard, parse_fault
from market_bridge.kite.simulator.feed import Pacer
from market_bridge.kite.simulator.model import BLOCK, MarketModel, Prefix, series
from market_bridge.kite.simulator.protocol import Subscriptions
from market_bridge.kite.simulator.sessions import SessionRule
from market_bridge.kite.simulator.universe import CSV_HEADER, SEGMENT_IDS, build_universe
from market_bridge.market.timeframes import TIMEFRAMES
from market_bridge.watchlists import all_watchlists

INFY, RELIANCE, NIFTY, BANKNIFTY = 408065, 738561, 256265, 260105
REPLAY_DAY = date(2025, 11, 12)  # a Wednesday
PAST_DAY = date(2025, 11, 11)


# ---- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    """Live, always-open simulator; the historical limit is lifted for the general tests."""
    with simulator_thread(port=0, historical_per_second=1000) as s:
        yield s


@pytest.fixture(autouse=True)
def _no_faults_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sim" in request.fixturenames:
        s = request.getfixturevalue("sim")
        requests.delete(f"{s.url}/sim/faults", timeout=5)


def kite(s: Simulator, token: str | None = None) -> KiteConnect:
    k = KiteConnect(s.config.api_key, root=s.url)
    k.set_access_token(token or s.config.access_token)
    return k


def ws_url(s: Simulator, token: str | None = None) -> str:
    return f"{s.ws_url}?api_key={s.config.api_key}&access_token={token or s.config.access_token}"


def fault(s: Simulator, name: str, seconds: float | None = None) -> None:
    body: dict[str, Any] = {"fault": name}
    if seconds is not None:
        body["seconds"] = seconds
    r = requests.post(f"{s.url}/sim/faults", json=body, timeout=5)
    assert r.status_code == 200, r.text


async def send(ws: ClientConnection, action: str, value: Any) -> None:
    await ws.send(orjson.dumps({"a": action, "v": value}).decode())


async def next_ticks(ws: ClientConnection, timeout: float = 5.0) -> list[Tick]:
    """Ticks of the next binary frame that carries any."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
        if isinstance(msg, bytes) and len(msg) > 1:
            return decode_frame(msg)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S")


# ---- universe -----------------------------------------------------------------------------


def test_instruments_dump_has_kite_shape_and_covers_the_watchlists() -> None:
    universe = build_universe(REPLAY_DAY)
    text = universe.csv()
    rows = list(csv.reader(io.StringIO(text)))
    assert text.splitlines()[0] == ",".join(CSV_HEADER)
    assert all(len(r) == 12 for r in rows)
    body = [dict(zip(CSV_HEADER, r, strict=True)) for r in rows[1:]]
    for r in body:
        for col in ("instrument_token", "exchange_token", "last_price", "strike", "tick_size",
                    "lot_size"):  # fmt: skip
            assert r[col] != "" and float(r[col]) >= 0, (col, r)
        segment = "INDICES" if r["segment"] == "INDICES" else r["exchange"]
        assert int(r["instrument_token"]) == int(r["exchange_token"]) * 256 + SEGMENT_IDS[segment]
        assert r["expiry"] == "" or len(r["expiry"]) == 10
    by_key = {(r["exchange"], r["tradingsymbol"]): r for r in body}
    symbols = {s for wl in all_watchlists() if not wl.dynamic for s in wl.symbols}
    assert all(("NSE", s) in by_key for s in symbols)
    assert by_key[("NSE", "RELIANCE")]["instrument_token"] == str(RELIANCE)
    assert by_key[("NSE", "NIFTY 50")]["instrument_token"] == str(NIFTY)
    assert by_key[("NSE", "NIFTY BANK")]["segment"] == "INDICES"
    segments = {r["segment"] for r in body}
    assert {"NSE", "INDICES", "NFO-FUT", "NFO-OPT", "BSE", "MCX-FUT", "CDS-FUT"} <= segments
    assert {r["tick_size"] for r in body if r["exchange"] == "NSE"} == {"0.05"}
    assert build_universe(REPLAY_DAY).csv() == text  # deterministic


# ---- model --------------------------------------------------------------------------------


def test_model_is_deterministic_and_blocks_match_the_whole_day() -> None:
    universe = build_universe(REPLAY_DAY)
    a = MarketModel(universe, SessionRule("nse"), seed=7)
    b = MarketModel(universe, SessionRule("nse"), seed=7)
    fut = next(i.instrument_token for i in universe.instruments if i.instrument_type == "FUT")
    at = int(datetime(2025, 11, 12, 11, 30, 17, tzinfo=IST).timestamp())
    for token in (RELIANCE, NIFTY, fut):
        assert a.tick_at(token, at, "full") == b.tick_at(token, at, "full")
        plan = a.plan(token, REPLAY_DAY)
        assert plan is not None
        full = series(plan, 0, plan.window.seconds, Prefix())
        for blk in (0, 1, 137, plan.blocks - 1):
            part = series(plan, blk * BLOCK, (blk + 1) * BLOCK, plan.prefix(blk))
            for name in ("price", "qty", "cumvol", "turnover", "high", "low", "oi", "oi_high"):
                assert (getattr(part, name) == getattr(full, name)[blk * 60 : blk * 60 + 60]).all()
    other_seed = MarketModel(universe, SessionRule("nse"), seed=8)
    assert other_seed.tick_at(RELIANCE, at) != a.tick_at(RELIANCE, at)
    tick = a.tick_at(fut, at, "full")
    assert tick is not None and tick.oi and tick.oi_day_low and tick.oi_day_high
    assert tick.oi_day_low <= tick.oi <= tick.oi_day_high
    assert len(tick.depth_buy) == len(tick.depth_sell) == 5
    assert tick.depth_buy[0].price < tick.depth_sell[0].price
    assert tick.exchange_timestamp == datetime.fromtimestamp(at, IST)
    assert a.tick_at(RELIANCE, at - 4 * 3600) is None  # before 09:15 under NSE hours


def test_previous_close_is_the_last_price_of_the_previous_session() -> None:
    model = MarketModel(build_universe(REPLAY_DAY), SessionRule("nse"))
    last = model.tick_at(INFY, int(datetime(2025, 11, 7, 15, 29, 59, tzinfo=IST).timestamp()))
    first = model.tick_at(INFY, int(datetime(2025, 11, 10, 9, 15, tzinfo=IST).timestamp()))
    assert last is not None and first is not None
    assert first.close == last.last_price  # Friday's close is Monday's previous close


def _bars_from_ticks(ticks: list[Tick], minutes: int) -> dict[datetime, list[float]]:
    """What a collector does: OHLC of last_price, volume from cumulative volume deltas."""
    tf = next(t for t in TIMEFRAMES.values() if t.minutes == minutes)
    bars: dict[datetime, list[float]] = {}
    prev_cum: int | None = None
    last_cum: dict[datetime, int] = {}
    for t in ticks:
        assert t.exchange_timestamp is not None and t.volume_traded is not None
        start = tf.bar_start(t.exchange_timestamp)
        bar = bars.get(start)
        if bar is None:
            bars[start] = [t.last_price, t.last_price, t.last_price, t.last_price, 0]
        else:
            bar[1] = max(bar[1], t.last_price)
            bar[2] = min(bar[2], t.last_price)
            bar[3] = t.last_price
        last_cum[start] = t.volume_traded
    for start in bars:
        bars[start][4] = last_cum[start] - (prev_cum or 0)
        prev_cum = last_cum[start]
    return bars


def _as_rows(candles: list[dict[str, Any]]) -> dict[datetime, list[float]]:
    return {c["date"]: [c["open"], c["high"], c["low"], c["close"], c["volume"]] for c in candles}


def test_historical_candles_equal_the_days_ticks_aggregated() -> None:
    """Every second of a past NSE day, straight from the model, aggregated like a collector;
    compared with what kiteconnect gets from /instruments/historical for several intervals."""
    with simulator_thread(port=0, replay=REPLAY_DAY, speed=1.0, historical_per_second=100) as s:
        model = MarketModel(build_universe(REPLAY_DAY), SessionRule("nse"))  # fresh instance
        open_at = int(datetime(2025, 11, 11, 9, 15, tzinfo=IST).timestamp())
        day_ticks: list[Tick] = []
        for second in range(open_at, open_at + 22_500):
            tick = model.tick_at(RELIANCE, second, "quote")  # quote: cheaper than full
            assert tick is not None
            tick.exchange_timestamp = datetime.fromtimestamp(second, IST)
            day_ticks.append(tick)
        k = kite(s)
        for interval, minutes in (("minute", 1), ("5minute", 5), ("60minute", 60)):
            got = _as_rows(k.historical_data(RELIANCE, PAST_DAY, PAST_DAY, interval))
            want = _bars_from_ticks(day_ticks, minutes)
            assert got == want, interval
        assert len(got) == 7  # 09:15 .. 15:15, the last one partial
        day = k.historical_data(RELIANCE, PAST_DAY, PAST_DAY, "day")
        assert len(day) == 1 and day[0]["date"].hour == 0
        whole = _bars_from_ticks(day_ticks, 1440)
        (o, h, lo, c, v) = next(iter(whole.values()))
        assert [day[0][f] for f in ("open", "high", "low", "close", "volume")] == [o, h, lo, c, v]


def test_replayed_stream_aggregates_to_the_historical_minute_candles() -> None:
    """A replayed day at 300x over a real socket: the bars a collector builds from the stream
    equal the simulator's minute candles (with OI for a future)."""
    with simulator_thread(port=0, replay=REPLAY_DAY, speed=300, historical_per_second=100) as s:
        fut = next(
            i.instrument_token for i in s.state.universe.instruments if i.instrument_type == "FUT"
        )

        async def collect() -> list[Tick]:
            out: list[Tick] = []
            async with connect(ws_url(s), max_size=None) as ws:
                await send(ws, "mode", ["full", [RELIANCE, fut]])
                end = time.monotonic() + 2.5
                while time.monotonic() < end:
                    out.extend(await next_ticks(ws))
            return out

        ticks = run(collect())
        assert {t.exchange_timestamp.date() for t in ticks if t.exchange_timestamp} == {REPLAY_DAY}
        k = kite(s)
        for token in (RELIANCE, fut):
            mine = [t for t in ticks if t.instrument_token == token]
            stamps = [t.exchange_timestamp for t in mine]
            assert stamps == sorted(stamps)  # never back in time
            bars = _bars_from_ticks(mine, 1)
            complete = sorted(bars)[1:-1]  # the first and last minute were seen in part
            assert len(complete) >= 5
            candles = k.historical_data(
                token, iso(complete[0]), iso(complete[-1]), "minute", oi=True
            )
            by_start = {c["date"]: c for c in candles}
            for start in complete:
                c = by_start[start]
                assert [c["open"], c["high"], c["low"], c["close"], c["volume"]] == bars[start]
                last_oi = [
                    t.oi for t in mine if t.exchange_timestamp < start + timedelta(minutes=1)
                ]
                assert c["oi"] == last_oi[-1]


# ---- REST with the real kiteconnect ---------------------------------------------------------


def test_kiteconnect_instruments(sim: Simulator) -> None:
    k = kite(sim)
    everything = k.instruments()
    nse = k.instruments("NSE")
    assert len(everything) == len(sim.state.universe)
    assert nse and {i["exchange"] for i in nse} == {"NSE"}
    infy = next(i for i in nse if i["tradingsymbol"] == "INFY")
    assert infy["instrument_token"] == INFY and infy["tick_size"] == 0.05
    fut = next(i for i in k.instruments("NFO") if i["instrument_type"] == "FUT")
    assert isinstance(fut["expiry"], date) and fut["lot_size"] > 1
    raw = requests.get(f"{sim.url}/instruments", headers={"Accept-Encoding": "gzip"}, stream=True)
    assert raw.headers["Content-Encoding"] == "gzip" and "csv" in raw.headers["Content-Type"]
    assert gzip.decompress(raw.raw.read()).startswith(b"instrument_token,exchange_token,")


def test_kiteconnect_historical_data(sim: Simulator) -> None:
    k = kite(sim)
    candles = k.historical_data(INFY, "2025-11-10 09:15:00", "2025-11-10 09:20:00", "minute")
    assert [c["date"].strftime("%H:%M") for c in candles] == [
        "09:15", "09:16", "09:17", "09:18", "09:19", "09:20",
    ]  # fmt: skip
    c = candles[0]
    assert c["date"].utcoffset() == timedelta(hours=5, minutes=30)
    assert c["low"] <= c["open"] <= c["high"] and c["volume"] > 0
    body = requests.get(
        f"{sim.url}/instruments/historical/{INFY}/minute",
        params={"from": "2025-11-10 09:15:00", "to": "2025-11-10 09:15:00", "oi": "1"},
        headers={"Authorization": f"token {sim.config.api_key}:{sim.config.access_token}"},
    ).json()
    assert body["status"] == "success"
    assert body["data"]["candles"][0][0] == "2025-11-10T09:15:00+0530"
    assert len(body["data"]["candles"][0]) == 7
    future = datetime.now(IST) + timedelta(days=3)
    assert k.historical_data(INFY, future, future + timedelta(days=1), "minute") == []


def test_kiteconnect_errors(sim: Simulator) -> None:
    with pytest.raises(kex.TokenException) as bad:
        kite(sim, "wrong").historical_data(INFY, "2025-11-10", "2025-11-10", "minute")
    assert bad.value.code == 403
    with pytest.raises(kex.TokenException):
        kite(sim, "wrong").profile()
    r = requests.get(
        f"{sim.url}/instruments/historical/{INFY}/minute?from=2025-11-10&to=2025-11-10"
    )
    assert r.status_code == 403 and r.json()["error_type"] == "TokenException"
    k = kite(sim)
    with pytest.raises(kex.InputException, match="interval exceeds max limit: 60 days") as long:
        k.historical_data(INFY, date(2025, 1, 1), date(2025, 3, 15), "minute")
    assert long.value.code == 400
    ahead = datetime.now(IST).date() + timedelta(days=2)  # the future: accepted, but empty
    assert k.historical_data(INFY, ahead, ahead + timedelta(days=60), "minute") == []
    with pytest.raises(kex.InputException):
        k.historical_data(INFY, ahead, ahead + timedelta(days=61), "minute")
    assert k.historical_data(INFY, ahead, ahead + timedelta(days=2000), "day") == []
    with pytest.raises(kex.InputException):
        k.historical_data(999_999_999, date(2025, 11, 10), date(2025, 11, 10), "minute")
    with pytest.raises(kex.InputException):
        k.historical_data(INFY, date(2025, 11, 10), date(2025, 11, 10), "2minute")
    missing = requests.get(f"{sim.url}/no/such/route")
    assert missing.status_code == 404 and missing.headers["Content-Type"] == "application/json"


def test_kiteconnect_session_flow(sim: Simulator) -> None:
    k = KiteConnect(sim.config.api_key, root=sim.url)
    session = k.generate_session("req-token-1", api_secret=sim.config.api_secret)
    assert isinstance(session["login_time"], datetime)
    assert session["access_token"] and k.access_token == session["access_token"]
    assert k.profile()["user_id"] == session["user_id"]
    assert k.ltp(["NSE:INFY"])["NSE:INFY"]["instrument_token"] == INFY
    quote = k.quote(["NSE:RELIANCE", "NSE:NIFTY 50"])
    assert len(quote["NSE:RELIANCE"]["depth"]["buy"]) == 5
    assert k.invalidate_access_token() is True
    with pytest.raises(kex.TokenException):
        k.profile()
    with pytest.raises(kex.TokenException):
        KiteConnect(sim.config.api_key, root=sim.url).generate_session("x", api_secret="wrong")
    expected = hashlib.sha256(b"mb_sim_keyreq-token-1mb_sim_secret").hexdigest()
    r = requests.post(
        f"{sim.url}/session/token",
        data={"api_key": "mb_sim_key", "request_token": "req-token-1", "checksum": expected},
    )
    assert r.json()["data"]["access_token"] == session["access_token"]  # same login, same token


def test_historical_rate_limit_and_fault() -> None:
    with simulator_thread(port=0) as s:  # Kite's 3 requests/s
        k = kite(s)
        outcomes = []
        for _ in range(6):
            try:
                k.historical_data(INFY, date(2025, 11, 10), date(2025, 11, 10), "day")
                outcomes.append("ok")
            except kex.NetworkException as exc:
                assert exc.code == 429 and "Too many requests" in str(exc)
                outcomes.append("429")
        assert outcomes.count("ok") == 3 and "429" in outcomes
        time.sleep(1.05)
        fault(s, "rate_limit", 1.0)
        with pytest.raises(kex.NetworkException):
            k.historical_data(INFY, date(2025, 11, 10), date(2025, 11, 10), "day")
        time.sleep(1.05)
        assert k.historical_data(INFY, date(2025, 11, 10), date(2025, 11, 10), "day")


# ---- the real KiteTicker ----------------------------------------------------------------------

_TICKER_SCRIPT = r"""
import json, os, sys, threading
from kiteconnect import KiteTicker
port, api_key, token, tokens = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
full = {}
def on_ticks(ws, ticks):
    for t in ticks:
        if t["mode"] == "full":
            full[t["instrument_token"]] = {
                "tradable": t["tradable"], "last_price": t["last_price"],
                "depth": len(t["depth"]["buy"]) if "depth" in t else None,
                "has_ts": t.get("exchange_timestamp") is not None, "ohlc": "ohlc" in t,
            }
    if len(full) == len(tokens):
        print(json.dumps(full), flush=True)
        os._exit(0)
def on_connect(ws, response):
    ws.subscribe(tokens)
    ws.set_mode(ws.MODE_FULL, tokens)
def on_error(ws, code, reason):
    print(json.dumps({"error": str(reason)}), flush=True)
    os._exit(3)
kws = KiteTicker(api_key, token, root=f"ws://127.0.0.1:{port}")
kws.on_ticks, kws.on_connect, kws.on_error = on_ticks, on_connect, on_error
kws.connect(threaded=True)
threading.Event().wait(15)
os._exit(2)
"""


def test_real_kiteticker_gets_full_ticks_with_depth(sim: Simulator) -> None:
    args = [str(sim.port), sim.config.api_key, sim.config.access_token, json.dumps([INFY, NIFTY])]
    proc = subprocess.run(
        [sys.executable, "-c", _TICKER_SCRIPT, *args], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    ticks = json.loads(proc.stdout.strip().splitlines()[-1])
    infy, nifty = ticks[str(INFY)], ticks[str(NIFTY)]
    assert infy["tradable"] and infy["depth"] == 5 and infy["has_ts"] and infy["last_price"] > 0
    assert not nifty["tradable"] and nifty["depth"] is None and nifty["ohlc"]


# ---- WebSocket protocol ---------------------------------------------------------------------


def test_ws_modes_errors_and_heartbeat(sim: Simulator) -> None:
    async def scenario() -> None:
        async with connect(ws_url(sim), max_size=None) as ws:
            # idle: a 1-byte heartbeat within ~1 s
            msg = await asyncio.wait_for(ws.recv(), 3)
            assert msg == b"\x00"
            await send(ws, "subscribe", [INFY, NIFTY])
            ticks = await next_ticks(ws)
            assert {(t.instrument_token, t.mode) for t in ticks} == {
                (INFY, "quote"),
                (NIFTY, "quote"),
            }
            await send(ws, "mode", ["full", [INFY, NIFTY]])
            ticks = await next_ticks(ws)
            assert {t.mode for t in ticks} == {"full"}
            result = decode_frame_result(await _next_binary(ws))
            assert not result.skipped
            await send(ws, "mode", ["ltp", [INFY]])
            await send(ws, "unsubscribe", [NIFTY])
            await asyncio.sleep(0.05)
            ticks = await next_ticks(ws)
            ticks = await next_ticks(ws)  # a frame surely sent after both messages
            assert [(t.instrument_token, t.mode) for t in ticks] == [(INFY, "ltp")]
            await ws.send("not json")
            assert decode_text(await _next_text(ws)).type == "error"
            await send(ws, "subscribe", [1, INFY])
            err = decode_text(await _next_text(ws))
            assert err.type == "error" and "1" in err.data
            await send(ws, "mode", ["fast", [INFY]])
            assert decode_text(await _next_text(ws)).type == "error"

    run(scenario())


async def _next_text(ws: ClientConnection) -> str:
    while True:
        msg = await asyncio.wait_for(ws.recv(), 5)
        if isinstance(msg, str):
            return msg


async def _next_binary(ws: ClientConnection) -> bytes:
    while True:
        msg = await asyncio.wait_for(ws.recv(), 5)
        if isinstance(msg, bytes) and len(msg) > 1:
            return msg


def test_ws_rejects_bad_credentials_and_a_fourth_connection(sim: Simulator) -> None:
    async def scenario() -> None:
        with pytest.raises(InvalidStatus) as bad:
            async with connect(ws_url(sim, "wrong")):
                pass
        assert bad.value.response.status_code == 403
        conns = [await connect(ws_url(sim)) for _ in range(3)]
        try:
            async with connect(ws_url(sim)) as fourth:
                assert decode_text(await _next_text(fourth)).type == "error"
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(fourth.recv(), 3)
        finally:
            for c in conns:
                await c.close()

    run(scenario())


def test_subscription_limit_and_messages() -> None:
    subs = Subscriptions(lambda t: t < 100, limit=3)
    out = subs.handle(orjson.dumps({"a": "subscribe", "v": [1, 2, 3, 4, 500, "x"]}))
    assert subs.modes == {1: "quote", 2: "quote", 3: "quote"} and out.changed == [1, 2, 3]
    assert any("500" in e for e in out.errors) and any("limit of 3" in e for e in out.errors)
    out = subs.handle(orjson.dumps({"a": "mode", "v": ["full", [2]]}))
    assert subs.modes[2] == "full" and out.changed == [2] and not out.errors
    subs.handle(orjson.dumps({"a": "unsubscribe", "v": [1]}))
    assert set(subs.modes) == {2, 3}
    assert subs.handle(b"{oops").errors and subs.handle(b'{"a": "dance"}').errors


def test_pacer_gives_every_second_then_skips_a_backlog() -> None:
    pacer = Pacer(1.0, 100.2)
    assert pacer.due(100.9, 10) == []
    assert pacer.due(103.1, 10) == [(101, 1), (102, 1), (103, 1)]
    fast = Pacer(4.0, 10.0)
    assert fast.due(11.0, 100) == [(10, 3), (11, 1)]
    assert fast.due(20.0, 8) == [(18, 3), (19, 4), (20, 1)]  # backlog of 36 slots cut to 8


def test_fault_board_and_specs() -> None:
    board = FaultBoard()
    board.start("stall", 2.0, now=100.0)
    board.start("drop", None, now=100.0)
    assert board.is_active("stall", 101.0) and not board.is_active("stall", 102.0)
    assert not board.is_active("drop", 100.0)  # a one-off
    assert parse_fault("garbage:1.5") == ("garbage", 1.5)
    assert parse_fault("expire_token") == ("expire_token", None)
    with pytest.raises(ValueError):
        parse_fault("meteor")


# ---- faults over real sockets -----------------------------------------------------------------


def test_fault_drop_closes_connections_and_refuses_new_ones(sim: Simulator) -> None:
    async def scenario() -> None:
        async with connect(ws_url(sim)) as ws:
            await send(ws, "subscribe", [INFY])
            await next_ticks(ws)
            await asyncio.to_thread(fault, sim, "drop", 1.0)
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 3)
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(sim)):
                pass
        assert refused.value.response.status_code == 503
        await asyncio.sleep(1.1)
        async with connect(ws_url(sim)) as again:
            await send(again, "subscribe", [INFY])
            assert await next_ticks(again)

    run(scenario())


def test_fault_stall_sends_nothing_then_resumes(sim: Simulator) -> None:
    async def scenario() -> None:
        async with connect(ws_url(sim)) as ws:
            await send(ws, "subscribe", [INFY, NIFTY])
            await next_ticks(ws)
            await asyncio.to_thread(fault, sim, "stall", 1.5)
            started = time.monotonic()
            with pytest.raises(TimeoutError):  # nothing at all, heartbeats included
                while True:
                    await asyncio.wait_for(ws.recv(), 1.2)
                    assert time.monotonic() - started < 0.2  # only frames already in flight
            ticks = await next_ticks(ws, timeout=3)
            assert ticks and time.monotonic() - started >= 1.4

    run(scenario())


def test_fault_garbage_sends_frames_that_do_not_decode(sim: Simulator) -> None:
    async def scenario() -> None:
        async with connect(ws_url(sim)) as ws:
            await send(ws, "subscribe", [INFY])
            await next_ticks(ws)
            await asyncio.to_thread(fault, sim, "garbage", 0.8)
            bad = 0
            end = time.monotonic() + 0.7
            while time.monotonic() < end:
                msg = await asyncio.wait_for(ws.recv(), 2)
                if not isinstance(msg, bytes) or len(msg) < 2:
                    continue
                try:
                    decode_frame(msg)
                except FrameError:
                    bad += 1
            assert bad >= 2
            await asyncio.sleep(0.3)
            assert await next_ticks(ws, timeout=3)  # clean again afterwards

    run(scenario())


def test_fault_expire_token_gives_403_until_cleared_or_relogin(sim: Simulator) -> None:
    k = kite(sim)
    assert k.profile()
    fault(sim, "expire_token")
    with pytest.raises(kex.TokenException) as exc:
        k.profile()
    assert exc.value.code == 403

    async def handshake(token: str | None = None) -> int:
        try:
            async with connect(ws_url(sim, token)):
                return 101
        except InvalidStatus as err:
            return err.response.status_code

    assert run(handshake()) == 403
    fresh = KiteConnect(sim.config.api_key, root=sim.url)
    token = fresh.generate_session("relogin", api_secret=sim.config.api_secret)["access_token"]
    assert fresh.profile() and run(handshake(token)) == 101  # a new login works meanwhile
    listed = requests.get(f"{sim.url}/sim/faults").json()["data"]["faults"]
    assert [f["fault"] for f in listed] == ["expire_token"]
    requests.delete(f"{sim.url}/sim/faults")
    assert k.profile() and run(handshake()) == 101


def test_sim_status_and_fault_api_validation(sim: Simulator) -> None:
    status = requests.get(f"{sim.url}/sim/status").json()["data"]
    assert status["clock"]["session"] == "always" and status["clock"]["market_open"]
    assert {"clients_connected", "subscriptions", "ticks_sent", "faults"} <= set(status)
    bad = requests.post(f"{sim.url}/sim/faults", json={"fault": "meteor"})
    assert bad.status_code == 400 and bad.json()["error_type"] == "InputException"
    neg = requests.post(f"{sim.url}/sim/faults", json={"fault": "stall", "seconds": -1})
    assert neg.status_code == 400
