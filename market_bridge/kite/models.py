"""The one normalized record every Kite packet decodes to.

Kite sends snapshots, not trades: a packet carries the last trade and the day's cumulative
volume. ``Tick`` keeps what the packet says (prices already divided by the segment's
divisor) and nothing derived, apart from ``change`` which Kite's own client also derives.
Timestamps are timezone-aware, in IST (exchange time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal

IST = timezone(timedelta(hours=5, minutes=30), "IST")

Mode = Literal["ltp", "quote", "full"]
MODES: tuple[Mode, ...] = ("ltp", "quote", "full")


@dataclass(slots=True, frozen=True)
class DepthLevel:
    price: float
    quantity: int
    orders: int


@dataclass(slots=True)
class Tick:
    instrument_token: int
    mode: Mode
    tradable: bool
    last_price: float
    # quote and full (not ltp; indices carry only ohlc and change)
    last_traded_quantity: int | None = None
    average_traded_price: float | None = None
    volume_traded: int | None = None
    total_buy_quantity: int | None = None
    total_sell_quantity: int | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None  # previous day's close, as Kite sends it
    change: float | None = None  # percent vs previous close, as kiteconnect computes it
    # full only
    last_trade_time: datetime | None = None
    oi: int | None = None
    oi_day_high: int | None = None
    oi_day_low: int | None = None
    exchange_timestamp: datetime | None = None
    depth_buy: tuple[DepthLevel, ...] = field(default_factory=tuple)
    depth_sell: tuple[DepthLevel, ...] = field(default_factory=tuple)
    # set by the receiver (ticker client), not part of the wire format
    received_at: datetime | None = None

    @property
    def segment(self) -> int:
        return self.instrument_token & 0xFF

    @property
    def timestamp(self) -> datetime | None:
        """Exchange time when Kite sent it (full mode), else the receive time."""
        return self.exchange_timestamp or self.received_at
