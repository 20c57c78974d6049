"""Reads of ``md.order_book`` (queries in order_book.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

from market_bridge.kite.models import IST
from market_bridge.queries import query


@dataclass(frozen=True, slots=True)
class OrderBookRow:
    """One L2 snapshot: parallel arrays per side, best level first (as Kite sends depth)."""

    snapshot_timestamp: datetime
    bid_prices: list[float]
    bid_quantities: list[int]
    bid_orders: list[int]
    ask_prices: list[float]
    ask_quantities: list[int]
    ask_orders: list[int]
    total_buy_quantity: int | None
    total_sell_quantity: int | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "snapshot_timestamp", self.snapshot_timestamp.astimezone(IST))


async def latest_snapshot(
    conn: AsyncConnection[Any], exchange: str, symbol: str
) -> OrderBookRow | None:
    async with conn.cursor(row_factory=class_row(OrderBookRow)) as cur:
        await cur.execute(
            query("order_book.sql", "latest_snapshot"), {"exchange": exchange, "symbol": symbol}
        )
        return await cur.fetchone()
