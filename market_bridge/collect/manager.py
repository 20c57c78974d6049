"""The collectors of one streaming process: ownership, reconciliation, heartbeats.

Desired state lives in ``md.collectors`` (the API and collectors.yaml write it). This
process reconciles towards it when ``mb_control`` is notified and, as a safety net, every
``reconcile_interval`` seconds:

- a collector desired running that nobody owns is taken if ``pg_try_advisory_lock`` on its
  key succeeds (session lock on this process's control connection), then started;
- an owned collector whose generation changed gets the new mode, subscriptions or
  credentials; one desired stopped (or deleted) is stopped and its lock released.

When a process dies its database session ends, its locks go with it, and another process
takes its collectors on its next reconcile. If the previous owner did not stop cleanly
(its status says running, or it shut down while the collector was desired running), the
period since its last tick is recorded in ``md.feed_gaps`` for the gap-fill flow.

Every ``heartbeat_interval`` seconds the status of each owned collector and of the process
is upserted, together with feed gaps the collectors noticed (disconnects, stalls). One
task does both reconcile and heartbeat, so the control connection is never shared by two
coroutines at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from market_bridge.collect import control
from market_bridge.collect.aio import cancel_requested
from market_bridge.collect.collector import (
    Collector,
    CollectorOptions,
    Credentials,
    LiveSink,
    RowSink,
)
from market_bridge.collect.spec import CollectorSpec, Resolution, resolve
from market_bridge.config.collectors import CollectorsConfig
from market_bridge.instruments import InstrumentIndex
from market_bridge.kite.models import IST

log = logging.getLogger(__name__)

PROCESS_EXPIRY = 60.0  # seconds without heartbeat before a process row is removed
_DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OSError)
NO_CREDENTIALS = (
    "no Kite credentials: set api_key and access_token for this collector (collectors.yaml "
    "or the API), or point KITE_WS_ROOT at the Kite simulator to use its default ones"
)


@dataclass(frozen=True)
class ManagerOptions:
    ws_root: str
    # used by collectors without credentials; only set when the feed is the simulator
    default_credentials: Credentials | None = None
    reconcile_interval: float = 1.0
    heartbeat_interval: float = 1.0
    index_refresh: float = 60.0  # reload md.instruments at most this often when symbols are unknown
    collector: CollectorOptions = field(default_factory=CollectorOptions)


def process_info() -> control.ProcessInfo:
    started = datetime.now(IST)
    host = socket.gethostname()
    pid = os.getpid()
    return control.ProcessInfo(
        f"{host}:{pid}:{int(started.timestamp() * 1000)}", host, pid, started
    )


class CollectorManager:
    def __init__(
        self,
        dsn: str,
        writer: RowSink,
        publisher: LiveSink,
        options: ManagerOptions,
        config: CollectorsConfig | None = None,
        process: control.ProcessInfo | None = None,
        process_metrics: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.dsn = dsn
        self.writer = writer
        self.publisher = publisher
        self.options = options
        self.config = config
        self.process = process or process_info()
        self.process_metrics = process_metrics or dict
        self.owned: dict[str, Collector] = {}
        self.ready = asyncio.Event()  # set after the first reconcile
        self._session: psycopg.AsyncConnection[Any] | None = None
        self._index = InstrumentIndex([])
        self._index_loaded = 0.0
        self._wake = asyncio.Event()
        self._listen_task: asyncio.Task[None] | None = None
        self._db_ok = True
        self._started_up = False

    def __repr__(self) -> str:
        return f"CollectorManager({self.process.process_id!r}, owned={sorted(self.owned)})"

    # -- main loop -----------------------------------------------------------------------
    async def run(self) -> None:
        """Reconcile and heartbeat until cancelled (then call ``close``)."""
        self._listen_task = asyncio.create_task(self._listen(), name="collectors-listen")
        next_reconcile = next_heartbeat = 0.0
        try:
            while not cancel_requested():
                now = time.monotonic()
                timeout = max(0.0, min(next_reconcile, next_heartbeat) - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                now = time.monotonic()
                if self._wake.is_set() or now >= next_reconcile:
                    self._wake.clear()
                    await self._step(self._reconcile)
                    next_reconcile = time.monotonic() + self.options.reconcile_interval
                    self.ready.set()
                if now >= next_heartbeat:
                    await self._step(self._heartbeat)
                    next_heartbeat = time.monotonic() + self.options.heartbeat_interval
            raise asyncio.CancelledError  # a cancellation that an await swallowed
        finally:
            task, self._listen_task = self._listen_task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Stop every owned collector, report it, release the locks, leave the registry."""
        statuses = []
        for name, collector in list(self.owned.items()):
            # "shutdown" tells the next owner that collection stopped while still wanted
            state = "shutdown" if collector.metrics.running else collector.state
            await collector.stop(state=state, reason="service shutdown")
            statuses.append(self._status_row(name, collector))
        conn = self._session
        if conn is not None and not conn.broken:
            try:
                await self._record_gaps(conn)
                for s in statuses:
                    await control.write_status(conn, s)
                for name in self.owned:
                    await control.unlock(conn, name)
                await control.delete_process(conn, self.process.process_id)
            except _DB_ERRORS as exc:
                log.warning(
                    "could not report the shutdown (%s); the locks end with the session", exc
                )
        self.owned.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
        self._session = None

    async def _step(self, fn: Callable[[psycopg.AsyncConnection[Any]], Any]) -> None:
        try:
            conn = await self._connection()
            await fn(conn)
            if not self._db_ok:
                log.warning("control plane: database reachable again")
            self._db_ok = True
        except Exception as exc:
            if not isinstance(exc, _DB_ERRORS):  # a bug: keep the loop (and collection) alive
                log.exception("control plane: %s failed", getattr(fn, "__name__", fn))
                return
            if self._db_ok:
                log.error(
                    "control plane: database unavailable (%s); collectors keep "
                    "collecting, storage buffers; retrying",
                    str(exc).splitlines()[0],
                )
            self._db_ok = False
            old, self._session = self._session, None
            if old is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(old.close(), 2.0)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self._session
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, connect_timeout=5)
        self._session = conn
        if self._started_up:
            await self._relock(conn)
        else:
            await self._start_up(conn)
            self._started_up = True
        return conn

    async def _start_up(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self.config is not None and self.config.collectors:
            result = await control.sync_config(conn, self.config)
            if result.changed:
                log.info("collectors.yaml: %s written to md.collectors", ", ".join(result.changed))
            for name in result.skipped:
                log.warning(
                    "collectors.yaml: collector %r exists and was created through the "
                    "API; the file's definition is ignored",
                    name,
                )
        await self._load_index()

    async def _relock(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """A new session after losing the old one (database restart): our locks died with it.
        Take them again; a collector another process took meanwhile is stopped here."""
        for name, collector in list(self.owned.items()):
            if not await control.try_lock(conn, name):
                log.warning(
                    "collector %s: taken over by another process while the database "
                    "was unreachable; stopping it here",
                    name,
                )
                await collector.stop(state="stopped", reason="taken over by another process")
                del self.owned[name]

    async def _load_index(self) -> None:
        self._index = await asyncio.to_thread(_load_index, self.dsn)
        self._index_loaded = time.monotonic()

    # -- reconcile -----------------------------------------------------------------------
    async def _reconcile(self, conn: psycopg.AsyncConnection[Any]) -> None:
        specs = await control.desired_collectors(conn)
        by_name = {s.name: s for s in specs}
        for name, collector in list(self.owned.items()):
            spec = by_name.get(name)
            if spec is None or not spec.running:
                if spec is not None:
                    collector.generation = spec.generation  # "stopped" is what it applied
                await self._release(conn, name, collector)
            elif spec.generation != collector.generation:
                await self._apply(conn, collector, spec)
        for spec in specs:
            if spec.running and spec.name not in self.owned:
                if await control.try_lock(conn, spec.name):
                    await self._take(conn, spec)
        await self._refresh_index(conn, by_name)

    def _resolve(self, spec: CollectorSpec) -> tuple[Resolution, Credentials | None, str | None]:
        resolution = resolve(spec, self._index)
        if spec.api_key and spec.access_token:
            return resolution, Credentials(spec.api_key, spec.access_token), None
        if self.options.default_credentials is not None:
            return resolution, self.options.default_credentials, None
        return resolution, None, NO_CREDENTIALS

    async def _take(self, conn: psycopg.AsyncConnection[Any], spec: CollectorSpec) -> None:
        prev = await control.previous_status(conn, spec.name)
        resolution, creds, problem = self._resolve(spec)
        collector = Collector(
            spec.name, self.writer, self.publisher, self.options.ws_root, self.options.collector
        )
        self.owned[spec.name] = collector
        await collector.start(resolution, spec.mode, creds, spec.generation, problem)
        log.info(
            "collector %s: taken by %s (%d instruments, mode %s, state %s)",
            spec.name,
            self.process.process_id,
            len(resolution.subscriptions),
            spec.mode,
            collector.state,
        )
        if (
            prev is not None
            and prev.owner not in (None, self.process.process_id)
            and (prev.running or prev.state == "shutdown")
        ):
            # the previous owner did not stop this collector: nothing was collected since
            restart = self.process.started_at > prev.heartbeat_at
            reason = "process restart" if restart else "takeover"
            start = prev.last_tick_at or prev.heartbeat_at
            await control.record_gap(
                conn, spec.name, resolution.symbols, start, max(start, prev.db_now), reason
            )
            if prev.owner is not None:  # its session is gone: so is the process
                await control.delete_process(conn, prev.owner)
            log.warning(
                "collector %s: previous owner %s stopped uncleanly; gap %s .. %s recorded (%s)",
                spec.name,
                prev.owner,
                start.isoformat(),
                prev.db_now.isoformat(),
                reason,
            )
        await control.write_status(conn, self._status_row(spec.name, collector))

    async def _apply(
        self, conn: psycopg.AsyncConnection[Any], collector: Collector, spec: CollectorSpec
    ) -> None:
        resolution, creds, problem = self._resolve(spec)
        await collector.update(resolution, spec.mode, creds, spec.generation, problem)
        log.info(
            "collector %s: generation %d applied (%d instruments, mode %s)",
            spec.name,
            spec.generation,
            len(resolution.subscriptions),
            spec.mode,
        )
        await control.write_status(conn, self._status_row(spec.name, collector))

    async def _release(
        self, conn: psycopg.AsyncConnection[Any], name: str, collector: Collector
    ) -> None:
        await collector.stop(state="stopped", reason="collector stopped")
        await self._record_gaps(conn)
        await control.write_status(conn, self._status_row(name, collector))
        await control.unlock(conn, name)
        del self.owned[name]
        log.info("collector %s: stopped and released", name)

    async def _refresh_index(
        self, conn: psycopg.AsyncConnection[Any], specs: dict[str, CollectorSpec]
    ) -> None:
        """Symbols unknown at start may appear after an instruments sync: look again, rarely."""
        waiting = [n for n, c in self.owned.items() if c.metrics.unknown_symbols]
        if not waiting or time.monotonic() - self._index_loaded < self.options.index_refresh:
            return
        before = len(self._index)
        await self._load_index()
        if len(self._index) == before:
            return
        for name in waiting:
            spec = specs.get(name)
            collector = self.owned.get(name)
            if spec is not None and collector is not None and spec.running:
                await self._apply(conn, collector, spec)

    # -- heartbeat -----------------------------------------------------------------------
    async def _heartbeat(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await self._record_gaps(conn)
        statuses = [self._status_row(n, c) for n, c in self.owned.items()]
        await control.heartbeat(conn, self.process, statuses, self.process_metrics())
        await control.prune_processes(conn, self.process.process_id, PROCESS_EXPIRY)

    async def _record_gaps(self, conn: psycopg.AsyncConnection[Any]) -> None:
        for name, collector in self.owned.items():
            for gap in collector.take_gaps():
                await control.record_gap(conn, name, gap.symbols, gap.start, gap.end, gap.reason)

    def _status_row(self, name: str, c: Collector) -> control.StatusRow:
        m = c.metrics
        last_error = m.last_error
        ticker = c.ticker_metrics()
        if last_error is None and m.state == "feed_lost":
            last_error = ticker.get("last_error")
        return control.StatusRow(
            name=name,
            owner=self.process.process_id,
            state=m.state,
            running=m.running,
            subscribed_tokens=m.subscribed_tokens,
            ticks_received=m.ticks_received,
            bars_created=m.bars_created,
            errors=m.errors + int(ticker["errors"]),
            reconnects=int(ticker["reconnects"]),
            last_tick_at=m.last_tick_at,
            lag_ms=c.lag_ms(datetime.now(IST)),
            last_error=last_error,
            applied_generation=c.generation,
            metrics=c.metrics_dict(),
        )

    # -- notifications -------------------------------------------------------------------
    async def _listen(self) -> None:
        """LISTEN mb_control on a connection of its own; any notification wakes the loop."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, connect_timeout=5
                )
                async with conn:
                    await conn.execute(
                        sql.SQL("LISTEN {}").format(sql.Identifier(control.CONTROL_CHANNEL))
                    )
                    self._wake.set()  # notifications sent while we were not listening
                    async for _ in conn.notifies():
                        self._wake.set()
            except _DB_ERRORS:
                await asyncio.sleep(self.options.reconcile_interval)


def _load_index(dsn: str) -> InstrumentIndex:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        return InstrumentIndex.load(conn)
