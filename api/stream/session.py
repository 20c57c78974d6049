"""One WebSocket connection: a reader that answers requests, an outbox written directly by
the hub, and a writer task that drains the client's queue while it is backed up.

While the client keeps up, what it is sent (live messages and replies) collects in its
``outbox`` and the hub writes it with one ``transport.write`` per dispatch round
(``flush``), without waiting. When its connection is backed up, messages go to its
``ConflatingQueue`` instead and its own writer task, the only coroutine that ever waits
on this socket, writes them as the client reads. Requests are handled one at a time, so
one client has at most one database query in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout
from sanic import Sanic
from sanic.exceptions import WebsocketClosed
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.exceptions import ConnectionClosed

from api.db import describe_failure, pooled
from api.stream import frames, protocol
from api.stream.latest import latest_values, snapshot_messages
from api.stream.protocol import (
    GetLatest,
    LiveMessage,
    Ping,
    RequestError,
    Subscribe,
    Unsubscribe,
)
from api.stream.queue import ConflatingQueue, Put
from api.stream.registry import SubscriptionLimit
from market_bridge.market.symbols import Symbol
from market_bridge.queries.symbols import known_symbols

if TYPE_CHECKING:
    from api.stream.hub import StreamHub

log = logging.getLogger("market_bridge.api.stream")

_DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, PoolClosed, OSError)
_CLOSED = (ConnectionClosed, WebsocketClosed)
_UNKNOWN_HINT = (
    "not in the instruments list and no stored data; check the spelling "
    "(EXCHANGE:TRADINGSYMBOL, NSE by default) or run the instruments sync"
)
_ids = itertools.count(1)
CLOSE_INTERNAL_ERROR = 1011
WRITE_BATCH_BYTES = 64 * 1024  # about the transport's write-buffer high-water mark


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A reply or status: what the write paths need of a ``LiveMessage``."""

    type: str
    key: Hashable | None
    frame: bytes


class ClientSession:
    def __init__(self, hub: StreamHub, ws: WebsocketImplProtocol, app: Sanic) -> None:
        self.id = next(_ids)
        self.hub = hub
        self.ws = ws
        self.app = app
        self.options = hub.options
        self.queue = ConflatingQueue(hub.options.max_pending)
        self.closed = False
        # The direct path (docs/websocket.md#slow-clients): frames of the current dispatch
        # round, written by ``flush``; the queue and writer task only while backed up.
        self._transport: Any = None  # set by serve() when direct writes are possible
        self._limit = hub.options.direct_write_limit
        self.outbox: list[Outgoing | LiveMessage] = []
        self._writing = False  # the writer task has popped frames it has not written yet
        # True while the hub may append live messages to ``outbox`` itself (the hot path):
        # direct writes, nothing queued or being written, not closed, no snapshot pending.
        self.fast = False
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        # While a subscribe reads its snapshot: symbol -> series seen live meanwhile (a
        # live message is newer than the snapshot, which must then not follow it).
        self._awaiting: dict[str, set[str]] | None = None

    def __hash__(self) -> int:
        return self.id

    def __eq__(self, other: object) -> bool:
        return self is other

    # ---- outgoing: sync, never waits ------------------------------------------------
    #
    # Order: everything for this client goes either to ``outbox`` (frames for the hub's
    # next flush, written directly) or to ``queue`` (its writer task), never both at once
    # out of order: a round is only started while the queue is empty and the writer idle,
    # and while a round is open everything joins it. A flush that cannot write directly
    # moves the round, in order, into the (then empty) queue.

    def offer(self, message: LiveMessage, now: float) -> None:
        """A live message from the broadcaster (which appends to ``outbox`` itself while
        ``fast``)."""
        if self.closed:
            return
        if self._awaiting is not None:
            seen = self._awaiting.get(message.symbol)
            if seen is not None:
                seen.add(message.series)
        self._put(message, now)

    def reply(self, data: bytes, kind: str) -> None:
        """A reply or hub status (UTF-8 JSON): never conflated."""
        if not self.closed:
            self._put(Outgoing(kind, None, frames.text_frame(data)), self.hub.now())

    def _put(self, item: Outgoing | LiveMessage, now: float) -> None:
        batch = self.outbox
        if batch:
            batch.append(item)
        elif self._transport is not None and not self._writing and not self.queue:
            batch.append(item)
            self.hub.flush_soon(self)
        else:
            self._enqueue(item, now)
            return
        self.hub.stats.sent[item.type] += 1  # taken back by flush if it cannot write

    def _enqueue(self, item: Outgoing | LiveMessage, now: float) -> None:
        self.fast = False
        self.hub.stats.queued += 1
        result = self.queue.put(item.frame, item.type, now, item.key)
        if result is Put.OVERFLOW:
            self.hub.slow(self, "queue", f"client too slow: over {self.queue.max_pending} "
                          "messages waiting")  # fmt: skip
            return
        if result is Put.CONFLATED:
            self.hub.stats.conflated += 1
        self._wake.set()

    def _refresh_fast(self) -> None:
        self.fast = (self._transport is not None and not self.closed and not self._writing
                     and self._awaiting is None and not self.queue)  # fmt: skip

    def flush(self, now: float) -> None:
        """Write this round's frames at once, or hand them to the writer task (backed up).
        The hub counted them as sent: what is not written here is taken back."""
        batch, self.outbox = self.outbox, []
        if not batch:
            return
        if not self.closed:
            outcome = frames.write_now(self.ws, self._transport,
                                       [item.frame for item in batch], self._limit)  # fmt: skip
            if outcome is frames.Direct.WRITTEN:
                self.hub.stats.direct_writes += 1
                return
        else:
            outcome = frames.Direct.CLOSED
        stats = self.hub.stats
        for item in batch:
            stats.sent[item.type] -= 1
        if outcome is frames.Direct.LATER:
            for i, item in enumerate(batch):
                if self.closed:  # the queue overflowed: the client is being closed
                    stats.dropped += len(batch) - i
                    break
                self._enqueue(item, now)
        else:
            self.fast = False
            stats.dropped += len(batch)

    def close(self, code: int, reason: str) -> None:
        """Close now, without waiting for the client (it may not be reading at all)."""
        if self.closed:
            return
        self.closed = True
        self.fast = False
        self.hub.stats.dropped += self.queue.clear()  # a pending round: counted by flush
        if self._writer is not None:
            self._writer.cancel()
        # Writes the close frame straight to the transport (behind whatever is buffered)
        # and closes the TCP connection; Sanic aborts it after its close timeout.
        try:
            self.ws.fail_connection(code, reason)
        except Exception:  # called mid-broadcast: the other clients must still get theirs
            log.exception("stream: closing client %s failed", self.id)

    async def _write(self) -> None:
        raw = self.options.write_path != "send" and frames.supports_raw_frames(self.ws)
        try:
            while True:
                # Everything pending (up to a bound) in one write: under load a client
                # gets fewer, larger writes instead of one syscall per message.
                batch = self.queue.pop_batch(WRITE_BATCH_BYTES)
                if not batch:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                self._writing = True
                try:
                    await frames.send_frames(self.ws, [e.frame for e in batch], raw=raw)
                finally:
                    self._writing = False
                sent = self.hub.stats.sent  # not cached across writes: flushes swap it
                for entry in batch:
                    sent[entry.kind] += 1
                self._refresh_fast()  # caught up: back to direct writes
        except _CLOSED:
            pass  # the reader sees the close too and cleans up
        except Exception:  # a bug: better a closed connection than a silent one
            log.exception("stream: writer of client %s failed", self.id)
            self.close(CLOSE_INTERNAL_ERROR, "internal error")

    # ---- incoming ---------------------------------------------------------------------

    async def serve(self) -> None:
        if not self.hub.attach(self):
            await self.ws.close(1013, "server busy: too many connections, retry later")
            return
        self._limit_send_buffer()
        if self.options.write_path == "direct":
            self._transport = frames.transport_of(self.ws)
            self._refresh_fast()
        self._writer = asyncio.create_task(self._write(), name=f"ws-writer-{self.id}")
        try:
            while not self.closed:
                raw = await self.ws.recv()
                if raw is not None and not self.closed:
                    await self._handle(raw)
        except _CLOSED:
            pass
        finally:
            self.closed = True
            self.fast = False
            self.hub.detach(self)
            self.hub.stats.dropped += self.queue.clear()  # a pending round: counted by flush
            writer, self._writer = self._writer, None
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, *_CLOSED):
                await writer

    def _limit_send_buffer(self) -> None:
        size = self.options.send_buffer_bytes
        transport = getattr(self.ws.io_proto, "transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if size is not None and sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)

    async def _handle(self, raw: str | bytes) -> None:
        request_type: str | None = None
        request_id: protocol.RequestId = None
        try:
            request = protocol.parse_request(
                raw,
                max_bytes=self.options.max_message_bytes,
                max_symbols=self.options.max_subscriptions,
            )
            request_id = request.id
            if isinstance(request, Ping):
                request_type = "ping"
                self.reply(protocol.pong(request.id), "pong")
            elif isinstance(request, Subscribe):
                request_type = "subscribe"
                await self._subscribe(request)
            elif isinstance(request, Unsubscribe):
                request_type = "unsubscribe"
                self._unsubscribe(request)
            else:
                request_type = "get_latest"
                await self._get_latest(request)
        except RequestError as exc:
            exc.id = exc.id if exc.id is not None else request_id
            exc.request = exc.request or request_type
            self._error(exc)
        except _DB_ERRORS as exc:
            reason = await describe_failure(self.app, exc)
            self._error(RequestError("database unavailable", reason, id=request_id,
                                     request=request_type))  # fmt: skip
        except Exception:
            log.exception("stream: unexpected error handling a %s request", request_type)
            self._error(RequestError("internal error", "unexpected server error; the server "
                                     "log has the details", id=request_id,
                                     request=request_type))  # fmt: skip

    def _error(self, exc: RequestError) -> None:
        self.hub.stats.count_error(exc.error)
        self.reply(protocol.error(exc), "error")

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        pool: AsyncConnectionPool = self.app.ctx.pool
        async with self.hub.db_slots, pooled(pool) as conn:
            yield conn

    @staticmethod
    async def _ensure_known(conn: AsyncConnection[Any], symbols: tuple[Symbol, ...]) -> None:
        known = await known_symbols(conn, symbols)
        unknown = [str(s) for s in symbols if s not in known]
        if unknown:
            raise RequestError("unknown symbol", f"{', '.join(unknown)}: {_UNKNOWN_HINT}")

    async def _subscribe(self, request: Subscribe) -> None:
        names = [s.display for s in request.symbols]
        limit = self.options.max_subscriptions
        try:
            self.hub.registry.check(self, names, limit)  # before touching the database
        except SubscriptionLimit as exc:
            raise RequestError("subscription limit", str(exc)) from None
        async with self._connection() as conn:
            await self._ensure_known(conn, request.symbols)
            if self.closed:
                return
            self.hub.subscribe(self, names)
            self.reply(protocol.subscribed(names, request.id), "subscribed")
            if not self.options.snapshot_on_subscribe:
                return
            self._awaiting = {name: set() for name in names}
            self.fast = False  # live messages go through offer(), which notes them
            try:
                values = await latest_values(conn, request.symbols, self.options.snapshot_timeframe)
            except _DB_ERRORS as exc:
                reason = await describe_failure(self.app, exc)
                raise RequestError(
                    "database unavailable",
                    f"subscribed, but the snapshot could not be read: {reason}",
                ) from None
            finally:
                seen, self._awaiting = self._awaiting, None
                self._refresh_fast()
        by_name = {s.display: values[s] for s in request.symbols}
        for message in snapshot_messages(by_name, seen, self.options.snapshot_timeframe):
            self.reply(message, "snapshot")

    def _unsubscribe(self, request: Unsubscribe) -> None:
        names = [s.display for s in request.symbols]
        self.hub.unsubscribe(self, names)
        # Everything queued for these symbols was queued before this reply: after it, none.
        self.reply(protocol.unsubscribed(names, request.id), "unsubscribed")

    async def _get_latest(self, request: GetLatest) -> None:
        symbol = request.symbol
        async with self._connection() as conn:
            await self._ensure_known(conn, (symbol,))
            values = await latest_values(conn, [symbol], self.options.snapshot_timeframe)
        value = values[symbol]
        self.reply(protocol.latest(symbol.display, value.tick, value.bar, request.id), "latest")
