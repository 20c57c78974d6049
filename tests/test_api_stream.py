"""WS /stream/ws against a real server and database: the live feed is a real NOTIFY on
mb_live, packed with the streaming service's own ``pack``."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from websockets.exceptions import ConnectionClosed

from market_bridge.kite.models import IST

from .conftest import free_port
from .test_api_stream_support import (
    TEST_STREAM_OPTIONS,
    Message,
    hub,
    insert_ticks,
    metric,
    notify,
    recv,
    recv_until,
    request,
    send,
    stalled_client,
    stream_server,
    subscribe,
    wait_until,
    ws_client,
)
from .test_api_support import ApiServer, insert_bars, insert_instruments, make_bars

T0 = datetime(2024, 1, 30, 9, 15, tzinfo=IST)
SYMBOLS = ["RELIANCE", "TCS", "INFY", "HDFCBANK", "ITC", "SBIN", "WIPRO"]


@pytest.fixture(scope="module")
def dsn(module_db_url: str) -> str:
    insert_instruments(
        module_db_url,
        [("NSE", s, 1000 + i, "EQ") for i, s in enumerate(SYMBOLS)]
        + [("BSE", "SENSEX", 265, "INDEX")],
    )
    minutes = [T0 + timedelta(minutes=i) for i in range(5)]
    insert_bars(module_db_url, make_bars("RELIANCE", 1000, minutes, base=2500.0, step=1.0))
    # a later 5m bar: the snapshot must still pick the latest *1m* bar
    insert_bars(module_db_url, make_bars("RELIANCE", 1000, [T0 + timedelta(minutes=10)],
                                         base=9999.0, step=1.0, timeframe="5m"))  # fmt: skip
    insert_ticks(module_db_url, [
        ("NSE", "RELIANCE", 1000, T0 + timedelta(seconds=1), 2500.5, 10),
        ("NSE", "RELIANCE", 1000, T0 + timedelta(minutes=4, seconds=59), 2504.25, 99),
    ])  # fmt: skip
    return module_db_url


@pytest.fixture(scope="module")
def server(dsn: str) -> Iterator[ApiServer]:
    with stream_server(dsn) as s:
        yield s


def tick(symbol: str, price: float, **extra: Any) -> Message:
    return {"type": "tick", "symbol": symbol, "data": {"price": price, **extra}}


def bar(symbol: str, minute: int, *, final: bool = True, revision: int = 0, close: float = 1.0,
        **extra: Any) -> Message:  # fmt: skip
    start = (T0 + timedelta(minutes=minute)).isoformat()
    data = {"timeframe": "1m", "start": start, "timestamp": start, "open": close, "high": close,
            "low": close, "close": close, "volume": 10, "final": final, "revision": revision,
            "source": "live", **extra}  # fmt: skip
    return {"type": "bar", "symbol": symbol, "data": data}


# ---- subscribe, snapshot, live -----------------------------------------------------


def test_subscribe_acks_sends_snapshot_then_live_messages(server: ApiServer, dsn: str) -> None:
    with ws_client(server.port) as ws:
        send(ws, {"type": "subscribe", "symbols": ["reliance", "NSE:TCS", "RELIANCE"], "id": 1})
        assert recv(ws) == {"type": "subscribed", "symbols": ["RELIANCE", "TCS"], "id": 1}
        snap_tick, snap_bar = recv(ws), recv(ws)
        assert snap_tick["type"] == "tick" and snap_tick["snapshot"] is True
        assert snap_tick["symbol"] == "RELIANCE"
        assert snap_tick["data"]["price"] == 2504.25  # message.data.price, as in the seed
        assert snap_tick["data"]["timestamp"] == "2024-01-30T09:19:59+05:30"
        assert snap_bar["type"] == "bar" and snap_bar["snapshot"] is True
        data = snap_bar["data"]
        assert (data["timeframe"], data["start"], data["close"]) == (
            "1m",
            "2024-01-30T09:19:00+05:30",
            2504.0,
        )
        assert data["final"] is True and data["source"] == "historical"
        # TCS has no stored data: no snapshot for it. Live data flows next.
        live = [tick("INFY", 1.0), tick("RELIANCE", 2510.0, volume=5), bar("TCS", 6, close=3900.0)]
        notify(dsn, live)
        assert recv(ws) == live[1]  # exactly as published; INFY is not subscribed
        assert recv(ws) == live[2]


def test_unsubscribe_stops_only_those_symbols(server: ApiServer, dsn: str) -> None:
    with ws_client(server.port) as ws:
        subscribe(ws, ["RELIANCE", "TCS"])
        reply = request(ws, {"type": "unsubscribe", "symbols": ["nse:reliance", "INFY"], "id": "u"})
        assert reply == {"type": "unsubscribed", "symbols": ["RELIANCE", "INFY"], "id": "u"}
        notify(dsn, [tick("RELIANCE", 1.0), tick("TCS", 2.0)])
        assert recv(ws)["symbol"] == "TCS"


def test_get_latest_replies_with_tick_and_bar(server: ApiServer) -> None:
    with ws_client(server.port) as ws:
        reply = request(ws, {"type": "get_latest", "symbol": "NSE:reliance", "id": "g"})
        assert reply["type"] == "latest" and reply["symbol"] == "RELIANCE" and reply["id"] == "g"
        assert reply["data"]["tick"]["price"] == 2504.25
        assert reply["data"]["bar"]["close"] == 2504.0
        empty = request(ws, {"type": "get_latest", "symbol": "BSE:SENSEX"})
        assert empty["symbol"] == "BSE:SENSEX" and empty["data"] == {"tick": None, "bar": None}


def test_bad_messages_get_errors_and_the_connection_stays_open(server: ApiServer) -> None:
    cases: list[tuple[str | Message, str]] = [
        ("{oops", "invalid json"),
        ({"type": "publish"}, "unknown type"),
        ({"type": "subscribe", "symbols": "RELIANCE"}, "invalid symbols"),
        ({"type": "subscribe", "symbols": ["RELI$NCE"]}, "invalid symbol"),
        ({"type": "subscribe", "symbols": ["NOSUCHCO", "TCS"], "id": 9}, "unknown symbol"),
        ({"type": "get_latest", "symbol": "NOSUCHCO"}, "unknown symbol"),
        ({"type": "subscribe", "symbols": SYMBOLS}, "subscription limit"),  # 7 > 5
        ({"type": "ping", "pad": "x" * 5000}, "message too large"),
    ]
    with ws_client(server.port) as ws:
        for message, error in cases:
            reply = request(ws, message)
            assert reply["type"] == "error" and reply["error"] == error, (message, reply)
            assert reply["detail"]
        unknown = request(ws, cases[4][0])
        assert unknown["id"] == 9 and unknown["request"] == "subscribe"
        assert unknown["detail"].startswith("NSE:NOSUCHCO: not in the instruments list")
        # All or nothing: the refused request did not subscribe TCS, so 5 others still fit.
        subscribe(ws, ["INFY", "HDFCBANK", "ITC", "SBIN", "WIPRO"])
        reply = request(ws, {"type": "subscribe", "symbols": ["TCS"]})
        assert reply["error"] == "subscription limit" and "at most 5" in reply["detail"]
        assert request(ws, {"type": "ping", "id": 3}) == {"type": "pong", "id": 3}
    wait_until(lambda: metric(server.port, "mb_ws_client_errors_total",
                              'error="unknown symbol"') >= 3, what="error metrics")  # fmt: skip


def test_status_and_revised_bars_reach_subscribers_unchanged(server: ApiServer, dsn: str) -> None:
    lost = {"type": "status", "symbol": "TCS",
            "data": {"state": "feed_lost", "collector": "primary", "at": T0.isoformat(),
                     "reason": "stall"}}  # fmt: skip
    restored = {"type": "status", "symbol": "TCS",
                "data": {"state": "feed_restored", "collector": "primary",
                         "at": (T0 + timedelta(seconds=30)).isoformat(), "reason": "reconnected",
                         "lost_at": T0.isoformat()}}  # fmt: skip
    forming = bar("TCS", 7, final=False, close=10.0)
    final = bar("TCS", 7, close=11.0)
    revised = bar("TCS", 7, revision=1, close=11.5)
    sent = [lost, forming, final, restored, revised]
    with ws_client(server.port) as a, ws_client(server.port) as b:
        subscribe(a, ["TCS"])
        subscribe(b, ["tcs"])
        notify(dsn, sent)
        for ws in (a, b):
            assert [recv(ws) for _ in sent] == sent


# ---- backpressure ------------------------------------------------------------------


def test_slow_client_is_conflated_then_closed_while_others_get_every_bar(
    server: ApiServer, dsn: str
) -> None:
    pad = "x" * 6000  # big messages fill the socket buffers quickly
    conflated_before = metric(server.port, "mb_ws_messages_conflated_total")
    with ws_client(server.port, max_queue=None) as fast, stalled_client(server.port) as slow:
        subscribe(fast, ["RELIANCE"])
        subscribe(slow, ["RELIANCE"])
        # 1. The slow client stops reading: its ticks are conflated, its status kept.
        ticks = [tick("RELIANCE", float(i), pad=pad) for i in range(400)]
        status = {"type": "status", "symbol": "RELIANCE", "data": {"state": "feed_lost"}}
        for batch in (ticks[:300], [status], ticks[300:]):
            notify(dsn, batch)
        wait_until(lambda: metric(server.port, "mb_ws_messages_conflated_total")
                   > conflated_before, what="conflation")  # fmt: skip
        got = recv_until(slow, lambda m: m["type"] == "tick" and m["data"]["price"] == 399.0)
        got_ticks = [m["data"]["price"] for m in got if m["type"] == "tick"]
        assert len(got_ticks) < 400 and got_ticks == sorted(got_ticks)  # latest wins, in order
        assert status in got
        recv_until(fast, lambda m: m["type"] == "tick" and m["data"]["price"] == 399.0)

        # 2. It stops reading again and bars pile up (never dropped): it is closed.
        bars = [bar("RELIANCE", i, pad=pad) for i in range(300)]
        for i in range(0, len(bars), 10):  # as a feed would: a few at a time
            notify(dsn, bars[i : i + 10])
            time.sleep(0.01)
        got = recv_until(
            fast, lambda m: m["type"] == "bar" and m["data"]["start"] == bars[-1]["data"]["start"]
        )
        assert [m for m in got if m["type"] == "bar"] == bars  # every bar, in order
        wait_until(lambda: metric(server.port, "mb_ws_slow_client_disconnects_total",
                                  'reason="queue"') >= 1, what="the slow client's disconnect")  # fmt: skip
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                slow.recv(timeout=5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4000 and "too slow" in closed.value.rcvd.reason
        # The fast client is unaffected and still live.
        notify(dsn, [tick("RELIANCE", 7.0)])
        assert recv_until(fast, lambda m: m["type"] == "tick")[-1]["data"]["price"] == 7.0
    assert metric(server.port, "mb_ws_messages_sent_total", 'type="bar"') >= 300


def sessions_of(server: ApiServer, symbol: str) -> list[Any]:
    """The hub's sessions subscribed to ``symbol`` (read from the test thread: retried if
    the server's loop changes the set meanwhile)."""
    while True:
        try:
            return list(hub(server).registry.subscribers(symbol))
        except RuntimeError:
            continue


def test_stalled_client_goes_through_its_queue_then_back_to_direct_writes(
    server: ApiServer, dsn: str
) -> None:
    pad = "x" * 6000
    queued_before = metric(server.port, "mb_ws_messages_queued_total")
    with ws_client(server.port, max_queue=None) as fast, stalled_client(server.port) as slow:
        subscribe(fast, ["WIPRO"])
        subscribe(slow, ["WIPRO"])
        ticks = [tick("WIPRO", float(i), pad=pad) for i in range(200)]
        for i in range(0, len(ticks), 20):
            notify(dsn, ticks[i : i + 20])
        # The stalled client backs up (its transport buffer fills): its messages wait,
        # conflated, in its queue. The fast one reads on (if it lagged for a moment, some
        # of its ticks were conflated too: newest last, in order).
        got = recv_until(fast, lambda m: m["type"] == "tick" and m["data"]["price"] == 199.0)
        prices = [m["data"]["price"] for m in got]
        assert prices == sorted(set(prices))
        wait_until(lambda: metric(server.port, "mb_ws_messages_queued_total") > queued_before,
                   what="the stalled client's queue")  # fmt: skip
        recv_until(slow, lambda m: m["type"] == "tick" and m["data"]["price"] == 199.0)

        # Caught up: both are back on the direct path, nothing waits in a queue.
        def both_direct() -> bool:
            sessions = sessions_of(server, "WIPRO")
            return len(sessions) == 2 and all(s.fast and not s.queue for s in sessions)

        wait_until(both_direct, what="both clients back on direct writes")
        time.sleep(0.3)  # the hub flushes its counters every 0.2 s
        queued = metric(server.port, "mb_ws_messages_queued_total")
        direct = metric(server.port, "mb_ws_direct_writes_total")
        bars = [bar("WIPRO", i, close=float(i)) for i in range(5)]
        notify(dsn, bars)
        for ws in (fast, slow):
            assert [recv(ws) for _ in bars] == bars
        wait_until(lambda: metric(server.port, "mb_ws_direct_writes_total") >= direct + 2,
                   what="direct writes")  # fmt: skip
        assert metric(server.port, "mb_ws_messages_queued_total") == queued


def test_replies_keep_their_place_among_direct_writes(server: ApiServer, dsn: str) -> None:
    """While live messages stream, an ``unsubscribed`` reply still follows everything queued
    before it and precedes nothing for those symbols."""
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            notify(dsn, [tick("SBIN", float(i)), tick("ITC", float(i))])
            i += 1

    with ws_client(server.port, max_queue=None) as ws:
        subscribe(ws, ["SBIN", "ITC"])
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            recv_until(ws, lambda m: m["type"] == "tick" and m["symbol"] == "SBIN")
            send(ws, {"type": "unsubscribe", "symbols": ["SBIN"], "id": "u"})
            recv_until(ws, lambda m: m.get("id") == "u")
            itc = [0]

            def enough(m: Message) -> bool:  # 20 more ITC ticks after the reply
                itc[0] += m["type"] == "tick" and m["symbol"] == "ITC"
                return itc[0] >= 20

            after = recv_until(ws, enough)
        finally:
            stop.set()
            feeder.join(10)
    assert all(m["symbol"] == "ITC" for m in after if m["type"] == "tick")


def test_pings_and_the_close_handshake_interleave_with_direct_writes(dsn: str) -> None:
    """Sanic's keepalive pings (every 50 ms here) and a client's close travel between the
    fan-out's whole frames: the clients see valid frames, every bar, and a clean close."""
    config = {"WEBSOCKET_PING_INTERVAL": 0.05, "WEBSOCKET_PING_TIMEOUT": 10}
    with stream_server(dsn, sanic_config=config) as srv:
        with ws_client(srv.port, max_queue=None) as a, ws_client(srv.port, max_queue=None) as b:
            subscribe(a, ["HDFCBANK"])
            subscribe(b, ["HDFCBANK"])
            assert [s.ws.ping_interval for s in sessions_of(srv, "HDFCBANK")] == [0.05] * 2
            bars = [bar("HDFCBANK", i, close=float(i)) for i in range(60)]
            for i in range(0, len(bars), 3):
                notify(dsn, bars[i : i + 3])
                time.sleep(0.02)  # the run spans several pings
            for ws in (a, b):
                got = recv_until(ws, lambda m: m["data"]["start"] == bars[-1]["data"]["start"])
                assert got == bars
            notify(dsn, bars[:3])
            a.close()  # while the server may be writing to it
            assert a.protocol.close_rcvd is not None and a.protocol.close_rcvd.code == 1000
            assert [recv(b) for _ in range(3)] == bars[:3]
            assert request(b, {"type": "ping", "id": 1}) == {"type": "pong", "id": 1}


@pytest.mark.parametrize("write_path", ["task", "send"])
def test_baseline_write_paths_deliver_the_same(dsn: str, write_path: str) -> None:
    """The bench's baselines (every message through the client's writer task)."""
    options = dataclasses.replace(TEST_STREAM_OPTIONS, write_path=write_path)
    with stream_server(dsn, options) as srv, ws_client(srv.port) as ws:
        subscribe(ws, ["ITC"])
        live = [tick("ITC", 1.0), bar("ITC", 1), bar("ITC", 2)]  # no tick replaces another
        notify(dsn, live)
        assert [recv(ws) for _ in live] == live
        assert [s.fast for s in sessions_of(srv, "ITC")] == [False]


# ---- the LISTEN connection -----------------------------------------------------------


def test_listen_reconnects_and_tells_clients(server: ApiServer, dsn: str) -> None:
    the_hub = hub(server)
    with ws_client(server.port) as ws:
        subscribe(ws, ["INFY"])
        pid = the_hub.listen_backend_pid
        assert pid is not None
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        lost = recv(ws)
        assert lost["type"] == "status" and lost["symbol"] is None
        assert lost["data"]["state"] == "stream_lost"
        restored = recv(ws)
        assert restored["data"]["state"] == "stream_restored" and "lost_at" in restored["data"]
        notify(dsn, [tick("INFY", 1500.0)])
        assert recv(ws)["data"]["price"] == 1500.0
    assert the_hub.listen_backend_pid != pid


# ---- several workers ---------------------------------------------------------------


def test_every_server_listens_and_serves_the_same_feed(server: ApiServer, dsn: str) -> None:
    """Two app instances (as two Sanic workers would be), each with its own LISTEN."""
    with stream_server(dsn) as other:
        assert hub(other).listen_backend_pid != hub(server).listen_backend_pid
        with ws_client(server.port) as a, ws_client(other.port) as b:
            subscribe(a, ["ITC"])
            subscribe(b, ["ITC"])
            live = [tick("ITC", 440.0), bar("ITC", 3, close=441.0)]
            notify(dsn, live)
            assert [recv(a), recv(a)] == live
            assert [recv(b), recv(b)] == live


# ---- the database is down ----------------------------------------------------------


def test_database_down_gives_status_and_error_replies_not_a_dead_socket() -> None:
    dead = f"postgresql://market_bridge@127.0.0.1:{free_port()}/nothing"
    with stream_server(dead, pool_timeout=0.5) as down, ws_client(down.port) as ws:
        status = recv(ws)  # told on connect: no live feed into this server
        assert status["type"] == "status" and status["symbol"] is None
        assert status["data"]["state"] == "stream_lost"
        reply = request(ws, {"type": "subscribe", "symbols": ["TCS"], "id": 1})
        assert reply["type"] == "error" and reply["error"] == "database unavailable"
        assert "refused" in reply["detail"] and reply["id"] == 1
        assert request(ws, {"type": "ping"}) == {"type": "pong"}
