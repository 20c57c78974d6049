"""A per-worker cache of rendered bar answers, kept exact by ``LISTEN mb_bars_changed``.

What is cached: the body, content type and headers of ``/intraday/bars``, ``/today`` (every
format) and ``/latest`` answers that hold at least one bar. Such an answer depends only on
the stored bars of its symbol and on the request's parameters (the key): not on the
clock (``bars`` without a range reads a recent window first, but answers the latest
``limit`` bars of everything), not on ``md.instruments`` (a symbol with bars is known).

How it stays correct (docs/api.md, "Bar cache"):

- Migration 0010's triggers ``NOTIFY mb_bars_changed, '<exchange>:<symbol>'`` for every
  inserted, updated or deleted bar (``'*'`` after a TRUNCATE); PostgreSQL delivers them
  when the writing transaction commits. ``BarChangeListener`` LISTENs on a connection of
  its own; a notification bumps the symbol's generation and drops its entries.
- A miss reads the symbol's generation (``ticket``) before its query and stores the
  answer only if the generation is unchanged afterwards (``put``): a write that commits
  while the query runs either bumps it first (not stored) or drops the entry when its
  notification arrives.
- A hit first waits for a round trip on the LISTEN connection (``BarChangeListener.sync``,
  shared by the requests that arrive while one is on its way): PostgreSQL signals the
  listening backend before it acknowledges a commit, and that backend sends the pending
  notifications before it answers the round trip. So every write committed before the
  request arrived has been applied to the cache when it is looked at: a client that
  writes bars and then asks for them gets them.
- No LISTEN connection, or a round trip that fails or takes longer than
  ``SYNC_TIMEOUT_S``: nothing is served or stored. Connecting (and reconnecting) empties
  the cache: notifications sent while not listening are lost.
- Entries older than the TTL (5 min by default) are not served: retention's
  ``drop_chunks`` removes bars without firing a trigger.

Memory: at most ``max_bytes`` of bodies (plus ``ENTRY_OVERHEAD`` each), least recently
used first out; one answer larger than a quarter of that is not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq
from psycopg.pq.abc import PGconn
from sanic import Sanic

from api.listen import keep_listening
from api.metrics import Registry
from api.responses import Rendered

log = logging.getLogger("market_bridge.api.bar_cache")

CHANNEL = "mb_bars_changed"  # migration 0010
EVERYTHING = "*"  # the payload after a TRUNCATE
ENTRY_OVERHEAD = 512  # bytes counted per entry besides its body: key, headers, bookkeeping
MAX_ENTRY_SHARE = 4  # an answer over max_bytes / 4 is not kept
SYNC_TIMEOUT_S = 1.0  # a hit waits this long for its LISTEN round trip, then is a miss
MAX_GENERATIONS = 100_000  # symbols with a generation; beyond, they are forgotten (see changed)
_CHANNEL_BYTES = CHANNEL.encode()

SymbolKey = tuple[str, str]  # (exchange, tradingsymbol), exactly as stored


@dataclass(frozen=True, slots=True)
class Ticket:
    """Taken before a miss's query; ``put`` stores only if the symbol is still at it."""

    symbol: SymbolKey
    epoch: int
    generation: int


@dataclass(slots=True)
class _Entry:
    rendered: Rendered
    symbol: SymbolKey
    size: int
    stored_at: float


class BarCache:
    """The cache of one worker. Runs on the worker's event loop only (no locks)."""

    def __init__(
        self,
        max_bytes: int,
        ttl: float,
        metrics: Registry,
        *,
        clock: Callable[[], float] = time.monotonic,
        sync_timeout: float = SYNC_TIMEOUT_S,
    ) -> None:
        self.max_bytes = max(0, max_bytes)
        self.ttl = ttl
        self.clock = clock
        self.sync_timeout = sync_timeout
        self.listener: BarChangeListener | None = None
        self.listening = False
        self.bytes = 0
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._by_symbol: dict[SymbolKey, set[Hashable]] = {}
        self._generations: dict[SymbolKey, int] = {}
        self._epoch = 0
        self._metrics(metrics)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def _metrics(self, registry: Registry) -> None:
        self._m_hits = registry.counter(
            "mb_api_bar_cache_hits_total", "Bar answers served from this worker's cache"
        )
        self._m_misses = registry.counter(
            "mb_api_bar_cache_misses_total",
            "Cacheable bar requests answered from the database",
        )
        self._m_evictions = registry.counter(
            "mb_api_bar_cache_evictions_total",
            "Cached bar answers dropped to stay within MB_API_BAR_CACHE_MB",
        )
        self._m_invalidations = registry.counter(
            "mb_api_bar_cache_invalidations_total",
            "Cached bar answers dropped as stale: write (their symbol's bars changed), "
            "truncate, listen (LISTEN connection lost or (re)established), ttl",
            ("reason",),
        )
        self._m_notifications = registry.counter(
            "mb_api_bar_cache_notifications_total", "mb_bars_changed notifications received"
        )
        self._m_not_stored = registry.counter(
            "mb_api_bar_cache_not_stored_total",
            "Answers not cached because their symbol changed while they were read",
        )

        def samples() -> list[tuple[str, dict[str, str], float]]:
            if not self.enabled:
                return []
            return [
                ("mb_api_bar_cache_bytes", {}, float(self.bytes)),
                ("mb_api_bar_cache_entries", {}, float(len(self._entries))),
                ("mb_api_bar_cache_listening", {}, 1.0 if self.listening else 0.0),
            ]

        registry.add_callback(samples)

    # ---- requests -------------------------------------------------------------------

    async def get(self, key: Hashable) -> Rendered | None:
        """The cached answer for ``key``, if it is still the database's answer."""
        if not self.enabled:
            return None
        entry = self._entries.get(key)
        if entry is not None and self.clock() - entry.stored_at > self.ttl:
            self._drop(key, "ttl")
            entry = None
        if entry is not None and await self._synced():
            entry = self._entries.get(key)  # the round trip may have brought its invalidation
            if entry is not None:
                self._entries.move_to_end(key)
                self._m_hits.inc()
                return entry.rendered
        self._m_misses.inc()
        return None

    def ticket(self, exchange: str, symbol: str) -> Ticket | None:
        """Before a miss's query: the symbol's state, or None when nothing can be stored."""
        if not self.enabled or not self.listening:
            return None
        key = (exchange, symbol)
        return Ticket(key, self._epoch, self._generations.get(key, 0))

    def put(self, key: Hashable, ticket: Ticket | None, rendered: Rendered) -> bool:
        """Keep ``rendered`` if nothing changed the symbol since ``ticket`` was taken."""
        if ticket is None:
            return False
        if (
            not self.listening
            or ticket.epoch != self._epoch
            or ticket.generation != self._generations.get(ticket.symbol, 0)
        ):
            self._m_not_stored.inc()
            return False
        size = len(rendered.body) + ENTRY_OVERHEAD
        if size > self.max_bytes // MAX_ENTRY_SHARE:
            return False
        if key in self._entries:
            self._remove(key)
        self._entries[key] = _Entry(rendered, ticket.symbol, size, self.clock())
        self._by_symbol.setdefault(ticket.symbol, set()).add(key)
        self.bytes += size
        while self.bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self._m_evictions.inc()
        return True

    async def _synced(self) -> bool:
        listener = self.listener
        if listener is None or not self.listening:
            return False
        try:
            return await asyncio.wait_for(asyncio.shield(listener.sync()), self.sync_timeout)
        except TimeoutError:
            return False

    # ---- invalidation (called by the listener) --------------------------------------

    def changed(self, payload: str) -> None:
        """A committed write announced ``EXCHANGE:SYMBOL`` (or ``*``: everything)."""
        self._m_notifications.inc()
        if payload == EVERYTHING:
            self._reset("truncate")
            return
        exchange, _, symbol = payload.partition(":")
        key = (exchange, symbol)
        if len(self._generations) >= MAX_GENERATIONS and key not in self._generations:
            # Forget every symbol's generation (a new epoch voids the tickets taken before,
            # so no answer read before a change can be stored); the entries stay valid.
            self._epoch += 1
            self._generations.clear()
        self._generations[key] = self._generations.get(key, 0) + 1
        keys = self._by_symbol.pop(key, None)
        if keys:
            for k in keys:
                self._remove(k, index=False)
            self._m_invalidations.inc(len(keys), reason="write")

    def listening_started(self) -> None:
        self._reset("listen")  # whatever was written while nobody listened
        self.listening = True

    def listening_lost(self) -> None:
        self.listening = False
        self._reset("listen")

    def _reset(self, reason: str) -> None:
        self._epoch += 1  # tickets taken before are void
        if self._entries:
            self._m_invalidations.inc(len(self._entries), reason=reason)
        self._entries.clear()
        self._by_symbol.clear()
        self._generations.clear()
        self.bytes = 0

    def _drop(self, key: Hashable, reason: str) -> None:
        self._remove(key)
        self._m_invalidations.inc(reason=reason)

    def _remove(self, key: Hashable, *, index: bool = True) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.size
        if index:
            keys = self._by_symbol.get(entry.symbol)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_symbol[entry.symbol]


class BarChangeListener:
    """``LISTEN mb_bars_changed`` on a connection of its own, feeding ``BarCache.changed``.

    After the LISTEN, the connection is driven through libpq directly (a reader callback
    on its socket): notifications are applied as soon as they arrive, and ``sync`` sends
    an empty query whose answer comes after every notification the backend had to send
    when the query reached it. Lost connections are retried with backoff and jitter.
    """

    def __init__(
        self,
        dsn: str,
        cache: BarCache,
        *,
        probe_interval: float = 5.0,
        probe_timeout: float = 5.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        startup_wait: float = 3.0,
    ) -> None:
        self.dsn = dsn
        self.cache = cache
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.startup_wait = startup_wait
        self.backend_pid: int | None = None
        self.syncs = 0  # round trips completed (tests, diagnostics)
        self._pgconn: PGconn | None = None
        self._fd = -1
        self._writing = False
        self._closed: asyncio.Future[None] | None = None
        self._inflight: asyncio.Future[bool] | None = None  # the sync on its way
        self._next: asyncio.Future[bool] | None = None  # syncs asked for since it was sent
        self._last_sync = 0.0
        self._first_attempt = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ---- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bar-cache-listen")
        # Like the stream hub: wait for the first LISTEN, but not for a database that is down.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), self.startup_wait)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        await keep_listening(
            self.dsn, CHANNEL,
            application_name=f"market-bridge-api-cache:{os.getpid()}",
            serve=self._listening, failed=self._failed, attempted=self._first_attempt,
            backoff_initial=self.backoff_initial, backoff_max=self.backoff_max,
        )  # fmt: skip

    async def _listening(self, conn: psycopg.AsyncConnection[Any]) -> None:
        try:
            self._attach(conn.pgconn)
            log.info("bar cache: LISTEN %s", CHANNEL)
            await self._serve()
        finally:
            self._detach()

    @staticmethod
    def _failed(exc: BaseException, bug: bool) -> None:
        if bug:  # log it, keep trying (the cache is off meanwhile)
            log.error("bar cache: LISTEN loop failed", exc_info=exc)
            return
        log.warning("bar cache: LISTEN connection failed (%s); the cache is off until it is "
                    "back", " ".join(str(exc).split()) or type(exc).__name__)  # fmt: skip

    async def _serve(self) -> None:
        """Until the connection fails: probe it when no request has for a while."""
        closed = self._closed
        assert closed is not None
        while not closed.done():
            await asyncio.wait([closed], timeout=self.probe_interval)
            if closed.done():
                break
            if time.monotonic() - self._last_sync < self.probe_interval:
                continue
            try:
                await asyncio.wait_for(asyncio.shield(self.sync()), self.probe_timeout)
            except TimeoutError:
                self._fail(TimeoutError(f"no answer from the LISTEN session in "
                                        f"{self.probe_timeout:g} s"))  # fmt: skip
        closed.result()  # raises the failure

    def _attach(self, pgconn: PGconn) -> None:
        loop = asyncio.get_running_loop()
        self._pgconn = pgconn
        self._fd = pgconn.socket
        self.backend_pid = pgconn.backend_pid
        self._closed = loop.create_future()
        self._last_sync = time.monotonic()
        loop.add_reader(self._fd, self._on_readable)
        self.cache.listening_started()
        self._first_attempt.set()
        self._drain()  # whatever libpq read along with the LISTEN's answer

    def _detach(self) -> None:
        if self._pgconn is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._fd)
        if self._writing:
            loop.remove_writer(self._fd)
            self._writing = False
        self._pgconn = None
        self._fd = -1
        self.backend_pid = None
        self._abandon_syncs()
        self.cache.listening_lost()

    def _fail(self, exc: BaseException) -> None:
        """The connection is unusable: stop serving at once (``_run`` then closes it)."""
        closed = self._closed
        if closed is None or closed.done():
            return
        closed.set_exception(exc)
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._fd)  # a dead socket stays readable: no busy loop meanwhile
        if self._writing:
            loop.remove_writer(self._fd)
            self._writing = False
        self._abandon_syncs()
        self.cache.listening_lost()

    def _abandon_syncs(self) -> None:
        for fut in (self._inflight, self._next):
            if fut is not None and not fut.done():
                fut.set_result(False)
        self._inflight = self._next = None

    # ---- the round trip -----------------------------------------------------------------

    def sync(self) -> asyncio.Future[bool]:
        """True once every notification committed before this call has been applied
        (False when the connection is lost first). Requests that ask while a round trip
        is on its way share the next one."""
        loop = asyncio.get_running_loop()
        if self._pgconn is None or self._closed is None or self._closed.done():
            fut: asyncio.Future[bool] = loop.create_future()
            fut.set_result(False)
            return fut
        if self._inflight is None:
            fut = self._inflight = loop.create_future()
            self._send()  # on failure, resolves ``fut`` with False
            return fut
        if self._next is None:
            self._next = loop.create_future()
        return self._next

    def _send(self) -> None:
        assert self._pgconn is not None
        try:
            self._pgconn.send_query(b"")  # an empty query: EmptyQueryResponse, ReadyForQuery
            self._flush()
        except psycopg.Error as exc:
            self._fail(exc)

    def _flush(self) -> None:
        assert self._pgconn is not None
        pending = self._pgconn.flush()  # 1: the socket took only part of it
        loop = asyncio.get_running_loop()
        if pending and not self._writing:
            loop.add_writer(self._fd, self._on_writable)
            self._writing = True
        elif not pending and self._writing:
            loop.remove_writer(self._fd)
            self._writing = False

    def _on_writable(self) -> None:
        if self._pgconn is None:
            return
        try:
            self._flush()
        except psycopg.Error as exc:
            self._fail(exc)

    def _on_readable(self) -> None:
        pgconn = self._pgconn
        if pgconn is None or self._closed is None or self._closed.done():
            return
        try:
            pgconn.consume_input()
        except psycopg.Error as exc:
            self._fail(exc)
            return
        self._drain()

    def _drain(self) -> None:
        """Apply the notifications libpq has read, in order; complete the round trip once
        its answer is in (every notification before it has been applied by then)."""
        pgconn = self._pgconn
        assert pgconn is not None
        try:
            while self._closed is not None and not self._closed.done():
                busy = pgconn.is_busy()  # parses what was read
                self._notifications(pgconn)
                if self._inflight is None or busy:
                    return
                result = pgconn.get_result()
                if result is not None:
                    if result.status not in (pq.ExecStatus.EMPTY_QUERY, pq.ExecStatus.COMMAND_OK):
                        message = result.error_message.decode(errors="replace").strip()
                        raise psycopg.OperationalError(f"round trip failed: {message}")
                    continue
                self._notifications(pgconn)  # parsed along with ReadyForQuery
                self._completed()
        except psycopg.Error as exc:
            self._fail(exc)

    def _notifications(self, pgconn: PGconn) -> None:
        while (n := pgconn.notifies()) is not None:
            if n.relname != _CHANNEL_BYTES:
                continue
            try:
                self.cache.changed(n.extra.decode("utf-8", errors="replace"))
            except Exception:  # a bug: forget everything rather than serve stale answers
                log.exception("bar cache: cannot apply a notification; emptying the cache")
                self.cache.listening_lost()
                self.cache.listening_started()

    def _completed(self) -> None:
        done, self._inflight = self._inflight, None
        self.syncs += 1
        self._last_sync = time.monotonic()
        if done is not None and not done.done():
            done.set_result(True)
        if self._next is not None:
            self._inflight, self._next = self._next, None
            self._send()


def install_bar_cache(app: Sanic) -> None:
    """``app.ctx.bar_cache`` (MB_API_BAR_CACHE_MB; 0 disables it) and its LISTEN task."""
    options: Any = app.ctx.options
    cache = BarCache(options.bar_cache_bytes, options.bar_cache_ttl, app.ctx.metrics)
    app.ctx.bar_cache = cache

    @app.before_server_start
    async def start_bar_cache(app: Sanic) -> None:
        if cache.enabled:
            cache.listener = BarChangeListener(app.ctx.dsn, cache)
            await cache.listener.start()

    @app.before_server_stop
    async def stop_bar_cache(app: Sanic) -> None:
        if cache.listener is not None:
            await cache.listener.stop()
