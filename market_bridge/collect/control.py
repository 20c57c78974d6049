"""Control-plane reads and writes of the streaming service (queries in control.sql).

Ownership is a session-level advisory lock per collector (``lock_key``), held on the
manager's session connection: it is released by ``unlock`` or, when the process dies, by
the end of its session, which is what lets another process take the collector over.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from market_bridge.collect.spec import CollectorSpec
from market_bridge.config.collectors import CollectorsConfig
from market_bridge.queries import parse_queries

CONTROL_CHANNEL = "mb_control"
_LOCK_NAMESPACE = b"market_bridge.collector:"


@cache
def _queries() -> dict[str, str]:
    text = resources.files(__package__).joinpath("control.sql").read_text(encoding="utf-8")
    return parse_queries(text, source="control.sql")


def q(name: str) -> str:
    return _queries()[name]


def lock_key(name: str) -> int:
    """Stable signed 64-bit advisory-lock key for a collector name (same in every process)."""
    digest = hashlib.blake2b(_LOCK_NAMESPACE + name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# -- desired state --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SyncResult:
    changed: tuple[str, ...]  # inserted or updated (announced on mb_control)
    skipped: tuple[str, ...]  # names the API created: the config does not override them


async def sync_config(conn: AsyncConnection[Any], config: CollectorsConfig) -> SyncResult:
    """Write collectors.yaml into md.collectors (origin 'config'), in one transaction."""
    changed: list[str] = []
    async with conn.transaction():
        for c in config.collectors:
            cur = await conn.execute(q("upsert_config_collector"), {
                "name": c.name, "api_key": c.api_key, "access_token": c.access_token,
                "mode": c.mode, "symbols": list(c.symbols), "watchlists": list(c.watchlists),
                "auto_start": c.auto_start,
            })  # fmt: skip
            if await cur.fetchone() is not None:
                changed.append(c.name)
                await conn.execute(q("notify_control"), {"name": c.name})
        cur = await conn.execute(q("api_owned_names"), {"names": config.names})
        skipped = tuple(str(r[0]) for r in await cur.fetchall())
    return SyncResult(tuple(changed), skipped)


async def desired_collectors(conn: AsyncConnection[Any]) -> list[CollectorSpec]:
    cur = await conn.execute(q("desired_collectors"))
    return [CollectorSpec.from_row(r) for r in await cur.fetchall()]


# -- ownership ------------------------------------------------------------------------------
async def try_lock(conn: AsyncConnection[Any], name: str) -> bool:
    cur = await conn.execute(q("try_lock"), {"key": lock_key(name)})
    row = await cur.fetchone()
    return bool(row and row[0])


async def unlock(conn: AsyncConnection[Any], name: str) -> None:
    await conn.execute(q("unlock"), {"key": lock_key(name)})


@dataclass(frozen=True, slots=True)
class PreviousStatus:
    owner: str | None
    state: str
    running: bool
    last_tick_at: datetime | None
    heartbeat_at: datetime
    db_now: datetime

    @property
    def heartbeat_age(self) -> float:
        return (self.db_now - self.heartbeat_at).total_seconds()


async def previous_status(conn: AsyncConnection[Any], name: str) -> PreviousStatus | None:
    cur = await conn.execute(q("previous_status"), {"name": name})
    row = await cur.fetchone()
    return None if row is None else PreviousStatus(*row)


# -- observed state -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StatusRow:
    name: str
    owner: str
    state: str
    running: bool
    subscribed_tokens: int
    ticks_received: int
    bars_created: int
    errors: int
    reconnects: int
    last_tick_at: datetime | None
    lag_ms: float | None
    last_error: str | None
    applied_generation: int
    metrics: dict[str, Any]

    def params(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in self.__slots__}
        d["metrics"] = Jsonb(self.metrics)
        return d


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    process_id: str
    host: str
    pid: int
    started_at: datetime


async def heartbeat(
    conn: AsyncConnection[Any],
    process: ProcessInfo,
    statuses: Sequence[StatusRow],
    metrics: dict[str, Any],
) -> None:
    """One transaction: every owned collector's status and the process row."""
    async with conn.transaction():
        if statuses:
            async with conn.cursor() as cur:
                await cur.executemany(q("upsert_status"), [s.params() for s in statuses])
        await conn.execute(q("upsert_process"), {
            "process_id": process.process_id, "host": process.host, "pid": process.pid,
            "started_at": process.started_at, "collectors": [s.name for s in statuses],
            "metrics": Jsonb(metrics),
        })  # fmt: skip


async def write_status(conn: AsyncConnection[Any], status: StatusRow) -> None:
    await conn.execute(q("upsert_status"), status.params())


async def delete_process(conn: AsyncConnection[Any], process_id: str) -> None:
    await conn.execute(q("delete_process"), {"process_id": process_id})


async def prune_processes(conn: AsyncConnection[Any], keep: str, older_than: float) -> None:
    await conn.execute(q("prune_processes"), {"process_id": keep, "older_than": older_than})


async def record_gap(
    conn: AsyncConnection[Any],
    collector: str,
    symbols: Sequence[str],
    start: datetime,
    end: datetime,
    reason: str,
) -> int:
    cur = await conn.execute(q("insert_gap"), {
        "collector": collector, "symbols": list(symbols), "gap_start": start, "gap_end": end,
        "reason": reason,
    })  # fmt: skip
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])
