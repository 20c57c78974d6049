"""The per-worker streaming hub: LISTEN for live data, fan it out to subscribed clients.

Every Sanic worker is its own process with its own hub and its own ``LISTEN mb_live``
connection (autocommit, outside the request pool): the streaming service NOTIFYs once and
PostgreSQL delivers to every worker. The broadcaster runs inside the LISTEN loop: it
appends each message to its subscribers' outboxes (or, for a client that is backed up,
``ClientSession.offer`` queues it), and ``flush``, scheduled once per round, writes each
outbox with one ``transport.write``. It never waits on a client.

If the LISTEN connection fails, the hub reconnects with exponential backoff and jitter,
and tells every client with a ``status`` message (``symbol`` null): ``stream_lost``, then
``stream_restored``. Messages published in between are not replayed (NOTIFY is not
durable); clients resync with ``get_latest`` or by subscribing again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from api.listen import keep_listening
from api.metrics import Registry
from api.stream import protocol
from api.stream.options import StreamOptions
from api.stream.registry import SubscriptionRegistry
from api.stream.session import ClientSession
from market_bridge.kite.models import IST

log = logging.getLogger("market_bridge.api.stream")

CLOSE_TOO_SLOW = 4000  # application code: the client did not read fast enough
CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
DISPATCH_SLICE_S = 0.005
# Label values we expect; anything else a producer sends is counted as "other".
_TYPES = frozenset({"tick", "bar", "orderbook", "stats", "status", "subscribed",
                    "unsubscribed", "latest", "pong", "error", "snapshot"})  # fmt: skip


@dataclass
class HubStats:
    """Hot-path counters as plain ints; ``StreamHub.flush_metrics`` moves them into the
    registry once per sweep (a labelled counter takes a lock per increment)."""

    sent: collections.Counter[str] = field(default_factory=collections.Counter)
    conflated: int = 0
    queued: int = 0  # messages that went through a client's queue (backed up)
    direct_writes: int = 0  # transport writes by the fan-out (one per client per round)
    dropped: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    slow: collections.Counter[str] = field(default_factory=collections.Counter)
    payloads: int = 0
    live_messages: int = 0
    bad_messages: int = 0
    listen_reconnects: int = 0

    def count_error(self, error: str) -> None:
        self.errors[error] += 1


class StreamHub:
    def __init__(
        self,
        dsn: str,
        options: StreamOptions,
        metrics: Registry,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dsn = dsn
        self.options = options
        self.now = clock
        self.registry: SubscriptionRegistry[ClientSession] = SubscriptionRegistry()
        self.clients: set[ClientSession] = set()
        self.stats = HubStats()
        self.listening = False
        self.listen_backend_pid: int | None = None  # the LISTEN session, for diagnostics
        self._lost_at: datetime | None = None
        self._first_attempt = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.db_slots = asyncio.Semaphore(options.max_db_requests)
        self._dirty: list[ClientSession] = []  # clients with frames for the next flush
        self._flush_scheduled = False
        self._metrics(metrics)

    # ---- metrics ----------------------------------------------------------------------

    def _metrics(self, registry: Registry) -> None:
        self._m_clients = registry.gauge("mb_ws_clients", "Connected WebSocket clients")
        self._m_subscriptions = registry.gauge(
            "mb_ws_subscriptions", "Symbol subscriptions across WebSocket clients"
        )
        self._m_listening = registry.gauge(
            "mb_ws_listen_connected", "1 while this worker LISTENs for live data"
        )
        self._m_sent = registry.counter(
            "mb_ws_messages_sent_total", "Messages written to WebSocket clients", ("type",)
        )
        self._m_conflated = registry.counter(
            "mb_ws_messages_conflated_total",
            "Pending messages replaced by a newer one for a slow client (latest wins)",
        )
        self._m_queued = registry.counter(
            "mb_ws_messages_queued_total",
            "Messages that waited in a client's queue for its writer task because the "
            "connection was backed up",
        )
        self._m_direct = registry.counter(
            "mb_ws_direct_writes_total",
            "Writes of a fan-out round's frames straight to a client's transport",
        )
        self._m_dropped = registry.counter(
            "mb_ws_messages_dropped_total", "Messages still queued when their client was closed"
        )
        self._m_slow = registry.counter(
            "mb_ws_slow_client_disconnects_total",
            "Clients closed for not reading fast enough",
            ("reason",),
        )
        self._m_errors = registry.counter(
            "mb_ws_client_errors_total", "Error replies to client messages", ("error",)
        )
        self._m_payloads = registry.counter(
            "mb_ws_notify_payloads_total", "NOTIFY payloads received from the live feed"
        )
        self._m_live = registry.counter(
            "mb_ws_live_messages_total", "Live messages received from the feed"
        )
        self._m_bad = registry.counter(
            "mb_ws_bad_live_messages_total", "Live messages that could not be routed"
        )
        self._m_reconnects = registry.counter(
            "mb_ws_listen_reconnects_total", "LISTEN connections lost and re-established"
        )
        self._m_clients.set(0)
        self._m_listening.set(0)
        registry.add_callback(self._queue_depth)

    def _queue_depth(self) -> list[tuple[str, dict[str, str], float]]:
        deepest = max((len(c.queue) for c in self.clients), default=0)
        return [("mb_ws_queue_depth_max", {}, float(deepest))]

    def flush_metrics(self) -> None:
        if self._dirty:  # counted as sent when queued for this round: write them first
            self.flush()
        s, self.stats = self.stats, HubStats()
        for kind, n in s.sent.items():
            self._m_sent.inc(n, type=kind if kind in _TYPES else "other")
        for error, n in s.errors.items():
            self._m_errors.inc(n, error=error)
        for reason, n in s.slow.items():
            self._m_slow.inc(n, reason=reason)
        for counter, n in ((self._m_conflated, s.conflated), (self._m_dropped, s.dropped),
                           (self._m_queued, s.queued), (self._m_direct, s.direct_writes),
                           (self._m_payloads, s.payloads), (self._m_live, s.live_messages),
                           (self._m_bad, s.bad_messages),
                           (self._m_reconnects, s.listen_reconnects)):  # fmt: skip
            if n:
                counter.inc(n)
        self._m_subscriptions.set(self.registry.total)

    # ---- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="ws-hub-listen"),
            asyncio.create_task(self._sweep(), name="ws-hub-sweep"),
        ]
        # Wait for the first LISTEN (a client connecting right after start-up should not
        # miss messages), but do not hold start-up hostage to a database that is down.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), self.options.startup_wait)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for session in list(self.clients):
            session.close(CLOSE_GOING_AWAY, "server shutting down")
        self.flush_metrics()

    # ---- clients ----------------------------------------------------------------------

    def attach(self, session: ClientSession) -> bool:
        if len(self.clients) >= self.options.max_clients:
            return False
        self.clients.add(session)
        self._m_clients.set(len(self.clients))
        if not self.listening and self._lost_at is not None:
            session.reply(self._lost_message("the live feed into this server is down"), "status")
        return True

    def detach(self, session: ClientSession) -> None:
        """Idempotent; never call it while iterating subscribers (``slow`` defers it)."""
        if session in self.clients:
            self.clients.discard(session)
            self.registry.drop(session)
            self._m_clients.set(len(self.clients))

    def subscribe(self, session: ClientSession, symbols: list[str]) -> list[str]:
        return self.registry.add(session, symbols, self.options.max_subscriptions)

    def unsubscribe(self, session: ClientSession, symbols: list[str]) -> list[str]:
        return self.registry.remove(session, symbols)

    def slow(self, session: ClientSession, reason: str, detail: str) -> None:
        """Close a client that cannot keep up. Called from inside the broadcast loop: the
        registry is only changed on the next loop iteration."""
        if session.closed:
            return
        log.info("stream: closing client %s: %s", session.id, detail)
        self.stats.slow[reason] += 1
        session.close(CLOSE_TOO_SLOW, detail)
        asyncio.get_running_loop().call_soon(self.detach, session)

    # ---- live data --------------------------------------------------------------------

    def dispatch(self, payload: str) -> int:
        """Fan one NOTIFY payload out; returns how many client deliveries were queued."""
        messages, bad = protocol.parse_payload(payload)
        self.stats.payloads += 1
        self.stats.live_messages += len(messages) + bad
        self.stats.bad_messages += bad
        now = self.now()
        queued = 0
        dirty = self._dirty
        sent = self.stats.sent
        for message in messages:
            subscribers = self.registry.subscribers(message.symbol)
            direct = 0
            # The hot path: a client that keeps up gets the message appended to this
            # round's frames (written by ``flush``); anything else goes through offer().
            for session in subscribers:
                if session.fast:
                    batch = session.outbox
                    if not batch:
                        dirty.append(session)
                    batch.append(message)
                    direct += 1
                else:
                    session.offer(message, now)
            sent[message.type] += direct  # taken back by flush if it cannot write
            queued += len(subscribers)
        if dirty and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)
        return queued

    def flush_soon(self, session: ClientSession) -> None:
        """``session`` has frames for this round: written by ``flush``, which runs once the
        current task yields (after the NOTIFY payloads read together are dispatched)."""
        self._dirty.append(session)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """One write per client with frames from this round (or its queue, if backed up)."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        now = self.now()
        for session in dirty:
            try:
                session.flush(now)
            except Exception:  # one client's failure must not cost the others theirs
                log.exception("stream: writing to client %s failed", session.id)
                session.close(CLOSE_INTERNAL_ERROR, "internal error")

    def broadcast(self, data: bytes, kind: str) -> None:
        for session in list(self.clients):
            session.reply(data, kind)

    async def _listen(self) -> None:
        await keep_listening(
            self.dsn, self.options.channel,
            application_name=f"market-bridge-api-ws:{os.getpid()}",
            serve=self._serve, failed=self._failed, attempted=self._first_attempt,
            backoff_initial=self.options.listen_backoff_initial,
            backoff_max=self.options.listen_backoff_max,
        )  # fmt: skip

    async def _serve(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.listen_backend_pid = conn.info.backend_pid
        self._listening()
        await self._pump(conn)

    def _failed(self, exc: BaseException, bug: bool) -> None:
        if bug:  # log it, but keep the live feed coming
            log.error("stream: LISTEN loop failed", exc_info=exc)
        self._lost(exc)

    async def _pump(self, conn: psycopg.AsyncConnection[Any]) -> None:
        probe = self.options.listen_probe_interval
        while True:
            yielded = time.monotonic()
            async for notify in conn.notifies(timeout=probe):
                try:
                    self.dispatch(notify.payload)
                except Exception:  # a bug in one payload must not stop the feed
                    log.exception("stream: cannot dispatch a live payload")
                    self.stats.bad_messages += 1
                # A backlog of notifications is dispatched without waiting on the
                # socket: let the writers run every few ms. Not after every payload:
                # with a backlog, several messages per client make one write.
                if time.monotonic() - yielded > DISPATCH_SLICE_S:
                    await asyncio.sleep(0)
                    yielded = time.monotonic()
            # Quiet for a while: make sure the connection is alive (a silently dropped
            # TCP connection would otherwise leave us listening to nothing).
            await asyncio.wait_for(conn.execute("SELECT 1"), probe)

    def _listening(self) -> None:
        self.listening = True
        self._m_listening.set(1)
        self._first_attempt.set()
        if self._lost_at is not None:
            lost_at, self._lost_at = self._lost_at, None
            log.warning("stream: LISTEN %s restored", self.options.channel)
            self.stats.listen_reconnects += 1
            self.broadcast(protocol.stream_status(
                "stream_restored", datetime.now(IST).isoformat(),
                "the live feed into this server is back; messages published while it was "
                "down were not received: get_latest or subscribe again to resync",
                lost_at=lost_at.isoformat(),
            ), "status")  # fmt: skip
        else:
            log.info("stream: LISTEN %s", self.options.channel)

    def _lost(self, exc: BaseException) -> None:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        self.listen_backend_pid = None
        if self.listening:
            log.warning("stream: LISTEN connection lost (%s); reconnecting", reason)
            self.listening = False
            self._m_listening.set(0)
            self._lost_at = datetime.now(IST)
            self.broadcast(self._lost_message(f"lost the database connection ({reason})"),
                           "status")  # fmt: skip
        elif self._lost_at is None:
            log.warning("stream: cannot LISTEN (%s); retrying", reason)
            self._lost_at = datetime.now(IST)

    def _lost_message(self, reason: str) -> bytes:
        at = self._lost_at or datetime.now(IST)
        return protocol.stream_status("stream_lost", at.isoformat(), reason)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.options.sweep_interval)
            now = self.now()
            for session in list(self.clients):
                lag = session.queue.lag(now)
                if lag > self.options.max_lag:
                    self.slow(session, "lag", f"client too slow: behind for {lag:.0f} s")
            self.flush_metrics()
