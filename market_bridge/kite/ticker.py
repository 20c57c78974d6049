"""Asyncio Kite Ticker client (no Twisted).

One ``KiteTickerClient`` per API key. Subscriptions are sharded over up to three
WebSocket connections of up to 3000 instruments each (Kite's limits); asking for more is
refused with ``SubscriptionLimitError`` before anything is sent. Each connection is a loop
(connect, resubscribe everything, read) with exponential backoff + jitter between
attempts, a stall detector (no frame at all, heartbeats included, for ``stall_timeout``
seconds -> reconnect) and a fatal stop on HTTP 403 at the handshake (the access token is
invalid or expired), which ``run()`` raises as ``KiteTokenError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

import orjson
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from market_bridge.kite.codec import FrameError, decode_frame, decode_text
from market_bridge.kite.errors import KiteTokenError, SubscriptionLimitError
from market_bridge.kite.models import IST, MODES, Mode, Tick

log = logging.getLogger(__name__)

TOKENS_PER_CONNECTION = 3000
CONNECTIONS_PER_KEY = 3
DEFAULT_MODE: Mode = "quote"  # what Kite itself applies to a new subscription


@dataclass
class TickerMetrics:
    frames: int = 0
    heartbeats: int = 0
    ticks: int = 0
    reconnects: int = 0
    stalls: int = 0
    errors: int = 0  # decode errors, server error messages, connection failures
    decode_errors: int = 0
    server_errors: int = 0
    connected: int = 0  # connections open now
    last_error: str | None = None
    last_frame_at: datetime | None = None

    def as_dict(self) -> dict[str, object]:
        d = dict(self.__dict__)
        d["last_frame_at"] = self.last_frame_at.isoformat() if self.last_frame_at else None
        return d


@dataclass
class _Shard:
    index: int
    modes: dict[int, Mode] = field(default_factory=dict)  # token -> mode
    ws: ClientConnection | None = None
    task: asyncio.Task[None] | None = None


TickHandler = Callable[[list[Tick]], None]
FrameHandler = Callable[[bytes, datetime], None]
MessageHandler = Callable[[str, object], None]


class KiteTickerClient:
    def __init__(
        self,
        api_key: str,
        access_token: str,
        root: str,
        on_ticks: TickHandler | None = None,
        on_frame: FrameHandler | None = None,
        on_message: MessageHandler | None = None,
        stall_timeout: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        connect_timeout: float = 10.0,
        tokens_per_connection: int = TOKENS_PER_CONNECTION,
        max_connections: int = CONNECTIONS_PER_KEY,
    ) -> None:
        self._api_key = api_key
        self._access_token = access_token
        self.root = root.rstrip("/")
        self.on_ticks = on_ticks
        self.on_frame = on_frame  # raw frames for bulk decoders; on_ticks is skipped if set
        self.on_message = on_message
        self.stall_timeout = stall_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.connect_timeout = connect_timeout
        self.per_connection = tokens_per_connection
        self.max_connections = max_connections
        self.metrics = TickerMetrics()
        self._shards: list[_Shard] = []
        self._closed = asyncio.Event()
        self._fatal: BaseException | None = None
        self._done = asyncio.Event()
        self._running = False

    def __repr__(self) -> str:  # never show credentials
        return f"KiteTickerClient(root={self.root!r}, tokens={len(self.subscriptions)})"

    # -- subscriptions ----------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.per_connection * self.max_connections

    @property
    def subscriptions(self) -> dict[int, Mode]:
        out: dict[int, Mode] = {}
        for s in self._shards:
            out.update(s.modes)
        return out

    def _shard_of(self, token: int) -> _Shard | None:
        for s in self._shards:
            if token in s.modes:
                return s
        return None

    async def subscribe(self, tokens: Iterable[int], mode: Mode = DEFAULT_MODE) -> None:
        """Subscribe (or change mode of) tokens; new ones go to the first shard with room."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        wanted = list(dict.fromkeys(int(t) for t in tokens))
        new = [t for t in wanted if self._shard_of(t) is None]
        total = len(self.subscriptions) + len(new)
        if total > self.capacity:
            raise SubscriptionLimitError(
                f"cannot subscribe {total} instruments: Kite allows {self.per_connection} per "
                f"connection and {self.max_connections} connections per API key "
                f"({self.capacity} in all); use another API key for the rest"
            )
        touched: dict[int, list[int]] = {}
        for t in wanted:
            shard = self._shard_of(t)
            if shard is None:
                shard = self._shard_with_room()
            shard.modes[t] = mode
            touched.setdefault(shard.index, []).append(t)
        for idx, toks in touched.items():
            shard = self._shards[idx]
            await self._send(shard, {"a": "subscribe", "v": toks})
            await self._send(shard, {"a": "mode", "v": [mode, toks]})
            self._ensure_running(shard)

    def _shard_with_room(self) -> _Shard:
        for s in self._shards:
            if len(s.modes) < self.per_connection:
                return s
        shard = _Shard(index=len(self._shards))
        self._shards.append(shard)
        return shard

    async def set_mode(self, mode: Mode, tokens: Iterable[int]) -> None:
        await self.subscribe(tokens, mode)

    async def unsubscribe(self, tokens: Iterable[int]) -> None:
        by_shard: dict[int, list[int]] = {}
        for t in tokens:
            shard = self._shard_of(int(t))
            if shard is not None:
                del shard.modes[int(t)]
                by_shard.setdefault(shard.index, []).append(int(t))
        for idx, toks in by_shard.items():
            await self._send(self._shards[idx], {"a": "unsubscribe", "v": toks})

    async def _send(self, shard: _Shard, message: dict[str, object]) -> None:
        ws = shard.ws
        if ws is None:
            return  # applied by the resubscribe that follows the next connect
        with contextlib.suppress(ConnectionClosed):
            await ws.send(orjson.dumps(message).decode())

    # -- lifecycle --------------------------------------------------------------------
    def _url(self) -> str:
        return (f"{self.root}?api_key={quote(self._api_key, safe='')}"
                f"&access_token={quote(self._access_token, safe='')}")

    def _ensure_running(self, shard: _Shard) -> None:
        if self._running and (shard.task is None or shard.task.done()):
            shard.task = asyncio.create_task(self._run_shard(shard), name=f"kite-ws-{shard.index}")

    async def run(self) -> None:
        """Run every shard until ``close()``; raises ``KiteTokenError`` on an auth failure."""
        self._running = True
        for shard in self._shards:
            self._ensure_running(shard)
        await self._closed.wait()
        await self._stop_shards()
        if self._fatal is not None:
            raise self._fatal

    async def close(self) -> None:
        self._closed.set()

    async def _stop_shards(self) -> None:
        tasks = [s.task for s in self._shards if s.task is not None]
        for s in self._shards:
            if s.ws is not None:
                with contextlib.suppress(Exception):
                    await s.ws.close()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._running = False

    async def _run_shard(self, shard: _Shard) -> None:
        attempt = 0
        first = True
        while not self._closed.is_set():
            if not first:
                self.metrics.reconnects += 1
                delay = min(self.backoff_max, self.backoff_initial * 2 ** min(attempt, 16))
                delay *= random.uniform(0.5, 1.0)
                attempt += 1
                try:
                    await asyncio.wait_for(self._closed.wait(), delay)
                    return
                except TimeoutError:
                    pass
            first = False
            try:
                async with websockets.connect(
                    self._url(),
                    additional_headers={"X-Kite-Version": "3"},
                    open_timeout=self.connect_timeout,
                    ping_interval=None,  # our stall detector watches the feed itself
                    max_size=8 * 1024 * 1024,
                    compression=None,
                ) as ws:
                    shard.ws = ws
                    self.metrics.connected += 1
                    try:
                        await self._resubscribe(shard, ws)
                        attempt = 0
                        await self._read(ws)
                    finally:
                        self.metrics.connected -= 1
                        shard.ws = None
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status == 403:
                    self._fatal = KiteTokenError("the Kite Ticker refused the handshake with 403")
                    log.error("%s", self._fatal)
                    self._closed.set()
                    return
                self._record_error(f"handshake refused with HTTP {status}")
            except TimeoutError:
                self.metrics.stalls += 1
                self._record_error(f"no frame for {self.stall_timeout:.1f}s: reconnecting")
            except (ConnectionClosed, OSError) as exc:
                if self._closed.is_set():
                    return  # our own close()
                self._record_error(f"connection lost: {type(exc).__name__}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the feed alive whatever a frame did
                self._record_error(f"unexpected {type(exc).__name__}: {exc}")

    def _record_error(self, message: str) -> None:
        self.metrics.errors += 1
        self.metrics.last_error = message
        log.warning("kite ticker: %s", message)

    async def _resubscribe(self, shard: _Shard, ws: ClientConnection) -> None:
        if not shard.modes:
            return
        groups: dict[Mode, list[int]] = {}
        for token, mode in shard.modes.items():
            groups.setdefault(mode, []).append(token)
        await ws.send(orjson.dumps({"a": "subscribe", "v": list(shard.modes)}).decode())
        for mode, toks in groups.items():
            await ws.send(orjson.dumps({"a": "mode", "v": [mode, toks]}).decode())

    async def _read(self, ws: ClientConnection) -> None:
        m = self.metrics
        while True:
            data = await asyncio.wait_for(ws.recv(), self.stall_timeout)
            now = datetime.now(IST)
            m.last_frame_at = now
            if isinstance(data, str):
                self._on_text(data)
                continue
            m.frames += 1
            if len(data) < 2:
                m.heartbeats += 1
                continue
            if self.on_frame is not None:
                self.on_frame(data, now)
                continue
            try:
                ticks = decode_frame(data, now)
            except FrameError as exc:
                m.decode_errors += 1
                self._record_error(f"malformed frame skipped: {exc}")
                continue
            m.ticks += len(ticks)
            if ticks and self.on_ticks is not None:
                self.on_ticks(ticks)

    def _on_text(self, text: str) -> None:
        try:
            msg = decode_text(text)
        except FrameError as exc:
            self._record_error(f"malformed text message skipped: {exc}")
            return
        if msg.type == "error":
            self.metrics.server_errors += 1
            self._record_error(f"Kite error message: {msg.data}")
        if self.on_message is not None:
            self.on_message(msg.type, msg.data)
