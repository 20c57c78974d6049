"""Liveness reads: database ping and streaming-process heartbeats (streaming.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

from market_bridge.queries import query


@dataclass(frozen=True, slots=True)
class StreamingProcess:
    process_id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    collectors: list[str]  # collectors the process owns
    heartbeat_age_seconds: float  # measured by the database clock


async def ping(conn: AsyncConnection[Any]) -> None:
    await conn.execute(query("streaming.sql", "ping"))


async def streaming_processes(conn: AsyncConnection[Any]) -> list[StreamingProcess]:
    async with conn.cursor(row_factory=class_row(StreamingProcess)) as cur:
        await cur.execute(query("streaming.sql", "streaming_processes"))
        return await cur.fetchall()
