"""Shared pieces of the streaming tests (no tests here): the simulator's instruments in the
test database, a LISTEN client for live messages, a service runner and polling helpers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import psycopg
from psycopg import sql

from market_bridge.collect import CollectorOptions, Credentials, ManagerOptions
from market_bridge.instruments import parse_instruments_csv, upsert_instruments
from market_bridge.kite.simulator import DEFAULT_ACCESS_TOKEN, DEFAULT_API_KEY, Simulator
from streaming.service import StreamingConfig, StreamingService

T = TypeVar("T")
SIM_CREDENTIALS = Credentials(DEFAULT_API_KEY, DEFAULT_ACCESS_TOKEN)
AUTH = {"X-Kite-Version": "3", "Authorization": f"token {DEFAULT_API_KEY}:{DEFAULT_ACCESS_TOKEN}"}

# Fast everything: tests wait for effects, never for timeouts.
FAST_COLLECTOR = CollectorOptions(
    stall_timeout=1.0, backoff_initial=0.1, backoff_max=0.5, timer_interval=0.1,
    stats_interval=0.5, garbage_after=0.3, garbage_reconnect_after=0.6,
)  # fmt: skip


async def load_sim_instruments(dsn: str, sim: Simulator) -> int:
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"{sim.url}/instruments", headers=AUTH)
        resp.raise_for_status()
    instruments = parse_instruments_csv(resp.text)

    def write() -> int:
        with psycopg.connect(dsn) as conn:
            return upsert_instruments(conn, instruments)

    return await asyncio.to_thread(write)


async def sim_fault(sim: Simulator, fault: str, seconds: float | None = None) -> None:
    """Inject a fault the way an operator does: POST /sim/faults."""
    async with httpx.AsyncClient() as client:
        resp = await client.post(f"{sim.url}/sim/faults", json={"fault": fault, "seconds": seconds})
        resp.raise_for_status()


def service_config(dsn: str, sim: Simulator | None, spool: Path, *, ws_root: str | None = None,
                   credentials: Credentials | None = SIM_CREDENTIALS,
                   **collector: Any) -> StreamingConfig:  # fmt: skip
    root = ws_root or (sim.ws_url if sim is not None else "ws://127.0.0.1:9")
    options = replace(FAST_COLLECTOR, **collector)
    return StreamingConfig(
        dsn=dsn, spool_dir=spool, ws_root=root, default_credentials=credentials,
        publish_interval=0.05,
        manager=ManagerOptions(ws_root=root, reconcile_interval=1.0, heartbeat_interval=0.5,
                               collector=options),
    )  # fmt: skip


@contextlib.asynccontextmanager
async def running_service(config: StreamingConfig) -> AsyncIterator[StreamingService]:
    service = StreamingService(config)
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.manager.ready.wait(), 10)
        yield service
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class LiveListener:
    """Every message NOTIFYed on mb_live, plus the raw payload sizes."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    payload_sizes: list[int] = field(default_factory=list)

    def of(self, kind: str, symbol: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.messages
                if m["type"] == kind and (symbol is None or m["symbol"] == symbol)]  # fmt: skip


@contextlib.asynccontextmanager
async def listening(dsn: str, channel: str = "mb_live") -> AsyncIterator[LiveListener]:
    live = LiveListener()
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await conn.execute(f"LISTEN {channel}")

    async def pump() -> None:
        async for n in conn.notifies():
            live.payload_sizes.append(len(n.payload.encode()))
            live.messages.extend(orjson.loads(n.payload))

    task = asyncio.create_task(pump())
    try:
        yield live
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
            await task
        await conn.close()


async def wait_for(fn: Callable[[], Awaitable[T]], timeout: float = 10.0,
                   interval: float = 0.05, what: str = "condition") -> T:  # fmt: skip
    """Poll ``fn`` until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = await fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        await asyncio.sleep(interval)


async def fetch(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(sql, params)
        return await cur.fetchall()


async def create_collector(dsn: str, name: str, *, symbols: list[str] | None = None,
                           watchlists: list[str] | None = None, mode: str = "quote",
                           running: bool = True, api_key: str | None = None,
                           access_token: str | None = None) -> None:  # fmt: skip
    """What the API does: insert desired state and NOTIFY in one transaction."""
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await conn.execute(
            """INSERT INTO md.collectors (name, api_key, access_token, mode, symbols,
                                          watchlists, desired_state)
               VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            (name, api_key, access_token, mode, symbols or [], watchlists or [],
             "running" if running else "stopped"),
        )  # fmt: skip
        await conn.execute("SELECT pg_notify('mb_control', %s)", (name,))
        await conn.commit()


async def change_collector(dsn: str, name: str, **changes: Any) -> None:
    """An API-style change of desired state: bump generation and NOTIFY, one transaction."""
    allowed = {"mode", "symbols", "watchlists", "desired_state", "api_key", "access_token"}
    assert set(changes) <= allowed
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        for column, value in changes.items():
            # column names come from the fixed set above
            await conn.execute(
                sql.SQL("UPDATE md.collectors SET {} = %s WHERE name = %s").format(
                    sql.Identifier(column)
                ),
                (value, name),
            )
        await conn.execute(
            "UPDATE md.collectors SET generation = generation + 1, updated_at = now() "
            "WHERE name = %s",
            (name,),
        )
        await conn.execute("SELECT pg_notify('mb_control', %s)", (name,))
        await conn.commit()


async def status_of(dsn: str, name: str) -> dict[str, Any] | None:
    rows = await fetch(
        dsn,
        """SELECT owner, state, running, subscribed_tokens, ticks_received, bars_created,
                  errors, reconnects, last_tick_at, lag_ms, last_error, applied_generation,
                  metrics, heartbeat_at
           FROM md.collector_status WHERE name = %s""",
        (name,),
    )
    if not rows:
        return None
    keys = ("owner", "state", "running", "subscribed_tokens", "ticks_received", "bars_created",
            "errors", "reconnects", "last_tick_at", "lag_ms", "last_error",
            "applied_generation", "metrics", "heartbeat_at")  # fmt: skip
    return dict(zip(keys, rows[0], strict=True))
