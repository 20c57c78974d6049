"""Helpers for the /stream/ws tests (no tests here): WebSocket clients with the
``websockets`` library, NOTIFY as the streaming service sends it, seed data."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
import orjson
import psycopg
from websockets.sync.client import connect
from websockets.sync.connection import Connection as ClientConnection

from api.stream import StreamHub, StreamOptions
from market_bridge.collect.messages import LIVE_CHANNEL, pack

from .test_api_support import ApiServer, make_options, make_settings

Message = dict[str, Any]

# Small bounds so that a slow client shows within a few hundred messages. max_pending
# leaves a reading client (a thread of the test process, which shares the GIL with the
# server's thread) room to lag behind for a moment on a loaded machine: at 20, the "fast"
# client of the slow-client test was once closed too, in a CI run (300 bars of 6 KB).
TEST_STREAM_OPTIONS = StreamOptions(
    max_subscriptions=5,
    max_message_bytes=4096,
    max_pending=100,
    max_lag=30.0,
    sweep_interval=0.2,
    send_buffer_bytes=8192,
    listen_backoff_initial=0.1,
    listen_backoff_max=0.5,
    listen_probe_interval=1.0,
)


@contextmanager
def stream_server(
    dsn: str,
    options: StreamOptions = TEST_STREAM_OPTIONS,
    sanic_config: dict[str, Any] | None = None,
    **api_options: Any,
) -> Iterator[ApiServer]:
    server = ApiServer(make_settings(dsn), make_options(**api_options))
    server.app.ctx.stream_options = options  # read by the hub's start-up listener
    server.app.config.update(sanic_config or {})  # e.g. WEBSOCKET_PING_INTERVAL
    server.start()
    try:
        yield server
    finally:
        server.stop()


def hub(server: ApiServer) -> StreamHub:
    found: StreamHub = server.app.ctx.stream_hub
    return found


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/stream/ws"


@contextmanager
def ws_client(port: int, **kwargs: Any) -> Iterator[ClientConnection]:
    # proxy=None: loopback only, whatever proxy the environment names
    with connect(ws_url(port), open_timeout=5, close_timeout=2, proxy=None, **kwargs) as ws:
        yield ws


@contextmanager
def stalled_client(port: int) -> Iterator[ClientConnection]:
    """A client that reads only when told to: a tiny kernel receive buffer and at most one
    buffered message, so the server's writes back up as soon as the test stops calling
    ``recv``."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    with connect(ws_url(port), sock=sock, open_timeout=5, close_timeout=2, max_queue=1,
                 proxy=None) as ws:  # fmt: skip
        yield ws


def send(ws: ClientConnection, message: Message | str) -> None:
    ws.send(message if isinstance(message, str) else orjson.dumps(message).decode())


def recv(ws: ClientConnection, timeout: float = 5.0) -> Message:
    raw = ws.recv(timeout=timeout)
    assert isinstance(raw, str), "the server sends text frames"
    message: Message = orjson.loads(raw)
    return message


def recv_until(
    ws: ClientConnection, done: Callable[[Message], bool], timeout: float = 10.0
) -> list[Message]:
    """Messages up to and including the first one for which ``done`` is true."""
    deadline = time.monotonic() + timeout
    seen: list[Message] = []
    while True:
        left = deadline - time.monotonic()
        try:
            seen.append(recv(ws, max(left, 0.01)))
        except TimeoutError:
            raise AssertionError(f"timed out; received {seen[-5:]!r} (last 5)") from None
        if done(seen[-1]):
            return seen


def request(ws: ClientConnection, message: Message | str) -> Message:
    send(ws, message)
    return recv(ws)


def subscribe(ws: ClientConnection, symbols: Sequence[str]) -> list[Message]:
    """Subscribe; returns the snapshot messages that follow the ack (a ping sent right
    after marks their end: replies come in order)."""
    send(ws, {"type": "subscribe", "symbols": list(symbols)})
    send(ws, {"type": "ping", "id": "end-of-snapshot"})
    got = recv_until(ws, lambda m: m.get("id") == "end-of-snapshot")
    assert got[0]["type"] == "subscribed", got
    return got[1:-1]


def notify(dsn: str, messages: Sequence[Message], limit: int | None = None) -> int:
    """NOTIFY like the streaming service: packed arrays, one statement; returns payloads."""
    packed = pack(messages) if limit is None else pack(messages, limit)
    assert packed.oversized == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p",
            (LIVE_CHANNEL, packed.payloads),
        )
    return len(packed.payloads)


def insert_ticks(dsn: str, rows: Sequence[tuple[str, str, int, datetime, float, int]]) -> None:
    """Rows of (exchange, symbol, token, timestamp, price, cumulative volume)."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO md.tick_data (exchange, symbol, instrument_token, tick_timestamp,
                   price, quantity, volume_traded, mode)
               VALUES (%s, %s, %s, %s, %s, 1, %s, 'quote')""",
            rows,
        )


def metric(port: int, name: str, labels: str = "") -> float:
    """A sample from this server's /metrics (0 when absent)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    pattern = re.escape(name + (("{" + labels + "}") if labels else "")) + r" ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
