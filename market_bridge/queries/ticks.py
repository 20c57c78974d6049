"""Reads of ``md.tick_data`` (queries in ticks.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

from market_bridge.kite.models import IST
from market_bridge.queries import query


@dataclass(frozen=True, slots=True)
class TickRow:
    tick_timestamp: datetime
    price: float
    quantity: int
    trade_type: str | None
    volume_traded: int | None
    volume_delta: int | None
    average_price: float | None
    total_buy_quantity: int | None
    total_sell_quantity: int | None
    bid_price: float | None
    bid_quantity: int | None
    ask_price: float | None
    ask_quantity: int | None
    oi: int | None
    last_trade_time: datetime | None
    received_at: datetime | None
    mode: str | None

    def __post_init__(self) -> None:
        for name in ("tick_timestamp", "last_trade_time", "received_at"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, value.astimezone(IST))


async def ticks_in_range(
    conn: AsyncConnection[Any],
    exchange: str,
    symbol: str,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> list[TickRow]:
    """The most recent ``limit`` ticks in ``[start, end)``, oldest first."""
    params = {"exchange": exchange, "symbol": symbol, "start": start, "end": end, "limit": limit}
    async with conn.cursor(row_factory=class_row(TickRow)) as cur:
        await cur.execute(query("ticks.sql", "ticks_in_range"), params)
        return await cur.fetchall()
