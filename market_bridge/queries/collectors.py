"""The collectors control plane: ``md.collectors`` + ``md.collector_status`` (collectors.sql).

Writers change desired state inside one transaction that also sends
``NOTIFY mb_control, '<name>'``; streaming processes reconcile and report back through
``md.collector_status`` heartbeats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

from market_bridge.queries import query

CONTROL_CHANNEL = "mb_control"
_FILE = "collectors.sql"


@dataclass(frozen=True, slots=True)
class CollectorRow:
    name: str
    api_key: str | None = field(repr=False)
    access_token: str | None = field(repr=False)
    mode: str
    symbols: list[str]
    watchlists: list[str]
    desired_state: str
    auto_start: bool
    origin: str
    generation: int
    created_at: datetime
    updated_at: datetime
    # md.collector_status, all None when has_status is False
    has_status: bool
    owner: str | None
    state: str | None
    running: bool | None
    subscribed_tokens: int | None
    ticks_received: int | None
    bars_created: int | None
    errors: int | None
    reconnects: int | None
    last_tick_at: datetime | None
    lag_ms: float | None
    last_error: str | None
    applied_generation: int | None
    metrics: dict[str, Any] | None
    heartbeat_at: datetime | None
    heartbeat_age_seconds: float | None  # measured by the database clock


@dataclass(frozen=True, slots=True)
class NewCollector:
    name: str
    api_key: str | None = field(repr=False)
    access_token: str | None = field(repr=False)
    mode: str = "quote"
    symbols: tuple[str, ...] = ()
    watchlists: tuple[str, ...] = ()
    auto_start: bool = False


@dataclass(frozen=True, slots=True)
class DesiredState:
    mode: str
    symbols: tuple[str, ...]
    watchlists: tuple[str, ...]
    desired_state: str  # running | stopped


@dataclass(frozen=True, slots=True)
class StateChange:
    before: DesiredState
    after: DesiredState
    generation: int | None  # new generation when changed, None when nothing changed

    @property
    def changed(self) -> bool:
        return self.before != self.after


async def list_collectors(conn: AsyncConnection[Any]) -> list[CollectorRow]:
    async with conn.cursor(row_factory=class_row(CollectorRow)) as cur:
        await cur.execute(query(_FILE, "list_collectors"))
        return await cur.fetchall()


async def get_collector(conn: AsyncConnection[Any], name: str) -> CollectorRow | None:
    async with conn.cursor(row_factory=class_row(CollectorRow)) as cur:
        await cur.execute(query(_FILE, "get_collector"), {"name": name})
        return await cur.fetchone()


async def create_collector(conn: AsyncConnection[Any], new: NewCollector) -> bool:
    """Insert and announce ``new``; False when a collector of that name exists."""
    params = {
        "name": new.name,
        "api_key": new.api_key,
        "access_token": new.access_token,
        "mode": new.mode,
        "symbols": list(new.symbols),
        "watchlists": list(new.watchlists),
        "desired_state": "running" if new.auto_start else "stopped",
        "auto_start": new.auto_start,
    }
    async with conn.transaction():
        cur = await conn.execute(query(_FILE, "insert_collector"), params)
        if await cur.fetchone() is None:
            return False
        await conn.execute(query(_FILE, "notify_control"), {"name": new.name})
    return True


async def change_desired_state(
    conn: AsyncConnection[Any], name: str, change: Callable[[DesiredState], DesiredState]
) -> StateChange | None:
    """Apply ``change`` to the collector's desired state under a row lock.

    Writes, bumps ``generation`` and notifies only when something changed; returns None
    when there is no such collector.
    """
    async with conn.transaction():
        cur = await conn.execute(query(_FILE, "lock_desired_state"), {"name": name})
        row = await cur.fetchone()
        if row is None:
            return None
        mode, symbols, watchlists, desired_state = row
        before = DesiredState(mode, tuple(symbols), tuple(watchlists), desired_state)
        after = change(before)
        if after == before:
            return StateChange(before, after, None)
        cur = await conn.execute(
            query(_FILE, "update_desired_state"),
            {
                "name": name,
                "mode": after.mode,
                "symbols": list(after.symbols),
                "watchlists": list(after.watchlists),
                "desired_state": after.desired_state,
            },
        )
        updated = await cur.fetchone()
        assert updated is not None  # the row is locked by this transaction
        await conn.execute(query(_FILE, "notify_control"), {"name": name})
        return StateChange(before, after, int(updated[0]))


async def update_credentials(
    conn: AsyncConnection[Any], name: str, api_key: str | None, access_token: str | None
) -> int | None:
    """Replace the given credentials (None keeps the stored one); new generation or None."""
    async with conn.transaction():
        cur = await conn.execute(
            query(_FILE, "update_credentials"),
            {"name": name, "api_key": api_key, "access_token": access_token},
        )
        row = await cur.fetchone()
        if row is None:
            return None
        await conn.execute(query(_FILE, "notify_control"), {"name": name})
        return int(row[0])


async def delete_collector(conn: AsyncConnection[Any], name: str) -> bool:
    async with conn.transaction():
        cur = await conn.execute(query(_FILE, "delete_collector"), {"name": name})
        if await cur.fetchone() is None:
            return False
        await conn.execute(query(_FILE, "notify_control"), {"name": name})
    return True
