"""Live messages to every API process: batched ``pg_notify('mb_live', ...)``.

Producers call the sync methods (``tick``, ``bar``, ...) from the collection hot path;
they only touch in-memory buffers and never wait. A flush task sends what accumulated every
``interval`` seconds from its own autocommit connection, as JSON arrays chunked under the
NOTIFY payload limit, all chunks of a flush in one transaction (one round trip).

What a flush sends, in this order: status messages and final/revised bars (queued, never
conflated), then the latest forming bar per symbol and timeframe, the latest tick and the
latest order book per symbol (conflated: latest wins; books at most every
``book_interval`` per symbol), and the latest stats per symbol.

The database being unavailable must never slow collection: a failed flush drops its
messages (counted in ``metrics.dropped``; the data itself is safe in storage) and further
flushes are skipped until ``retry_interval`` has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import psycopg

from market_bridge.aggregation import Bar, BarUpdate
from market_bridge.collect.aio import cancel_requested
from market_bridge.collect.messages import (
    LIVE_CHANNEL,
    MAX_PAYLOAD,
    bar_data,
    message,
    orderbook_data,
    pack,
    tick_data,
)
from market_bridge.kite.models import Tick

log = logging.getLogger(__name__)

# One statement per payload, pipelined (one round trip) in one transaction (one commit,
# delivered in order). Plain text parameters: a text[] parameter would make psycopg escape
# every quote of the JSON, which profiled as most of the publisher's time.
_NOTIFY = "SELECT pg_notify(%s, %s)"
_SLICE = 200  # messages formatted between yields to the event loop


@dataclass
class PublisherMetrics:
    published: int = 0  # messages handed to NOTIFY
    payloads: int = 0
    flushes: int = 0
    conflated: int = 0  # ticks/books/forming bars/stats replaced by a newer one before a flush
    dropped: int = 0  # lost because the database was unavailable
    overflow: int = 0  # queued bars/status dropped because the queue was full
    oversized: int = 0
    db_up: bool = True
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LivePublisher:
    def __init__(
        self,
        dsn: str,
        *,
        channel: str = LIVE_CHANNEL,
        interval: float = 0.05,
        max_payload: int = MAX_PAYLOAD,
        max_queued: int = 100_000,
        retry_interval: float = 1.0,
        send_timeout: float = 2.0,
        book_interval: float = 0.2,
    ) -> None:
        self.dsn = dsn
        self.channel = channel
        self.interval = interval
        self.max_payload = max_payload
        self.max_queued = max_queued
        self.retry_interval = retry_interval
        self.send_timeout = send_timeout
        # order books are large (~700 bytes) and cost a depth parse each: at most one per
        # symbol per book_interval (the latest one when it is sent)
        self.book_interval = book_interval
        self._book_sent: dict[str, float] = {}
        self.metrics = PublisherMetrics()
        self._queued: deque[dict[str, Any]] = deque()  # status + final/revised bars, in order
        self._forming: dict[tuple[str, str], Bar] = {}
        self._ticks: dict[str, Tick] = {}
        self._books: dict[str, Tick] = {}
        self._stats: dict[str, dict[str, Any]] = {}
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._retry_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one flush at a time (loop and close())
        self._closing: set[asyncio.Task[None]] = set()
        # called before each flush: collectors hand over their newest ticks and books here
        # (latest per symbol), instead of one call per tick on the hot path
        self._sources: list[Callable[[], None]] = []

    def add_source(self, source: Callable[[], None]) -> None:
        if source not in self._sources:
            self._sources.append(source)

    def remove_source(self, source: Callable[[], None]) -> None:
        if source in self._sources:
            self._sources.remove(source)

    def _pull(self) -> None:
        for source in list(self._sources):
            try:
                source()
            except Exception:  # one collector's bug must not stop the others' messages
                log.exception("live publisher: a source failed")

    # -- producers: sync, O(1), never block ----------------------------------------------
    def tick(self, symbol: str, tick: Tick) -> None:
        if self._ticks.get(symbol) is not None:
            self.metrics.conflated += 1
        self._ticks[symbol] = tick

    def orderbook(self, symbol: str, tick: Tick) -> None:
        if self._books.get(symbol) is not None:
            self.metrics.conflated += 1
        self._books[symbol] = tick

    def bar(self, symbol: str, update: BarUpdate) -> None:
        bar = update.bar
        key = (symbol, bar.timeframe)
        if update.kind == "forming":
            if key in self._forming:
                self.metrics.conflated += 1
            self._forming[key] = bar
            return
        forming = self._forming.get(key)
        if forming is not None and forming.start <= bar.start:
            del self._forming[key]  # never show "forming" after the bar went final
        self._enqueue(message("bar", symbol, bar_data(bar)))

    def stats(self, symbol: str, data: dict[str, Any]) -> None:
        if symbol in self._stats:
            self.metrics.conflated += 1
        self._stats[symbol] = data

    def status(self, symbol: str, data: dict[str, Any]) -> None:
        self._enqueue(message("status", symbol, data))

    def _enqueue(self, msg: dict[str, Any]) -> None:
        if len(self._queued) >= self.max_queued:
            self._queued.popleft()
            self.metrics.overflow += 1
        self._queued.append(msg)

    @property
    def pending(self) -> int:
        return (
            len(self._queued)
            + len(self._forming)
            + len(self._ticks)
            + len(self._books)
            + len(self._stats)
        )

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="live-publisher")

    async def close(self) -> None:
        """Send what is buffered (once, no retry), then close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._retry_at = 0.0
        await self.flush()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def _run(self) -> None:
        while not cancel_requested():
            started = time.monotonic()
            try:
                await self.flush()
            except Exception:  # never let a bug in one flush stop live data for good
                log.exception("live publisher: flush failed")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    # -- flushing ------------------------------------------------------------------------
    async def _drain(self) -> list[dict[str, Any]]:
        """Everything buffered, as messages. The buffers are taken at once (producers go
        on filling new ones); formatting yields to the event loop every ``_SLICE``
        messages, so that a large flush (every symbol's ticks, books, stats and forming
        bars) does not hold up frame handling and the storage writer for its whole length."""
        queued, self._queued = self._queued, deque()
        forming, self._forming = self._forming, {}
        ticks, self._ticks = self._ticks, {}
        books, self._books = self._books, {}
        stats, self._stats = self._stats, {}
        out: list[dict[str, Any]] = list(queued)
        budget = _SLICE
        for (sym, _), bar in forming.items():
            out.append(message("bar", sym, bar_data(bar)))
            budget -= 1
            if not budget:
                budget = _SLICE
                await asyncio.sleep(0)
        for sym, t in ticks.items():
            out.append(message("tick", sym, tick_data(t)))
            budget -= 1
            if not budget:
                budget = _SLICE
                await asyncio.sleep(0)
        now = time.monotonic()
        held: dict[str, Tick] = {}
        sent = self._book_sent
        for sym, t in books.items():
            if now - sent.get(sym, -1e18) >= self.book_interval:
                out.append(message("orderbook", sym, orderbook_data(t)))
                sent[sym] = now
                budget -= 4  # a book costs about four ticks
                if budget <= 0:
                    budget = _SLICE
                    await asyncio.sleep(0)
            else:
                held[sym] = t  # sent by a later flush, unless a newer book replaces it
        for sym, t in held.items():
            self._books.setdefault(sym, t)  # a book that came in meanwhile is newer
        out.extend(message("stats", sym, data) for sym, data in stats.items())
        return out

    async def flush(self) -> int:
        """Send everything buffered now; returns the number of messages sent."""
        async with self._lock:
            self._pull()
            if not self.pending:
                return 0
            msgs = await self._drain()
            if not msgs:
                return 0
            if time.monotonic() < self._retry_at:
                self.metrics.dropped += len(msgs)
                return 0
            packed = pack(msgs, self.max_payload)
            self.metrics.oversized += packed.oversized
            try:
                conn = await self._connection()
                await asyncio.wait_for(self._send(conn, packed.payloads), self.send_timeout)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                self._failed(exc)
                self.metrics.dropped += packed.messages
                return 0
            self.metrics.flushes += 1
            self.metrics.payloads += len(packed.payloads)
            self.metrics.published += packed.messages
            return packed.messages

    async def _send(self, conn: psycopg.AsyncConnection[Any], payloads: list[str]) -> None:
        async with conn.transaction(), conn.cursor() as cur:
            await cur.executemany(_NOTIFY, [(self.channel, p) for p in payloads])

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=2
            )
            if not self.metrics.db_up:
                log.warning("live publisher: database is back, publishing again")
            self.metrics.db_up = True
        return self._conn

    def _failed(self, exc: BaseException) -> None:
        self.metrics.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if self.metrics.db_up:
            log.warning(
                "live publisher: cannot NOTIFY (%s); dropping live messages for now "
                "(storage keeps the data)",
                self.metrics.last_error,
            )
        self.metrics.db_up = False
        self._retry_at = time.monotonic() + self.retry_interval
        conn, self._conn = self._conn, None
        if conn is not None:
            # close in the background: closing a connection to a dead server can hang
            task = asyncio.get_running_loop().create_task(_close_quietly(conn))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)


async def _close_quietly(conn: psycopg.AsyncConnection[Any]) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.close(), 2.0)
