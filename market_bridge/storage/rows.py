"""Records -> table rows. Pure; the column lists match sql/migrations."""

from __future__ import annotations

from typing import Any

from market_bridge.instruments import Instrument
from market_bridge.kite.models import Tick

TICK_COLUMNS = (
    "exchange", "symbol", "instrument_token", "tick_timestamp", "price", "quantity",
    "volume_traded", "volume_delta", "average_price", "total_buy_quantity",
    "total_sell_quantity", "bid_price", "bid_quantity", "ask_price", "ask_quantity", "oi",
    "last_trade_time", "received_at", "mode",
)  # fmt: skip
TICK_TYPES = (
    "text", "text", "int8", "timestamptz", "float8", "int8", "int8", "int8", "float8",
    "int8", "int8", "float8", "int8", "float8", "int8", "int8", "timestamptz",
    "timestamptz", "text",
)  # fmt: skip

BAR_COLUMNS = (
    "exchange", "symbol", "instrument_token", "bar_timestamp", "timeframe", "open", "high",
    "low", "close", "volume", "trades_count", "vwap", "oi", "provenance", "revision",
)  # fmt: skip

DEPTH_COLUMNS = (
    "exchange", "symbol", "instrument_token", "snapshot_timestamp", "bid_prices",
    "bid_quantities", "bid_orders", "ask_prices", "ask_quantities", "ask_orders",
    "total_buy_quantity", "total_sell_quantity",
)  # fmt: skip


def tick_row(tick: Tick, inst: Instrument, volume_delta: int | None = None) -> tuple[Any, ...]:
    bid = tick.depth_buy[0] if tick.depth_buy else None
    ask = tick.depth_sell[0] if tick.depth_sell else None
    return (
        inst.exchange, inst.tradingsymbol, tick.instrument_token, tick.timestamp,
        tick.last_price, tick.last_traded_quantity or 0, tick.volume_traded, volume_delta,
        tick.average_traded_price, tick.total_buy_quantity, tick.total_sell_quantity,
        bid.price if bid else None, bid.quantity if bid else None,
        ask.price if ask else None, ask.quantity if ask else None,
        tick.oi, tick.last_trade_time, tick.received_at, tick.mode,
    )


def depth_row(tick: Tick, inst: Instrument) -> tuple[Any, ...] | None:
    if not tick.depth_buy and not tick.depth_sell:
        return None
    b, s = tick.depth_buy, tick.depth_sell
    return (
        inst.exchange, inst.tradingsymbol, tick.instrument_token, tick.timestamp,
        [d.price for d in b], [d.quantity for d in b], [d.orders for d in b],
        [d.price for d in s], [d.quantity for d in s], [d.orders for d in s],
        tick.total_buy_quantity, tick.total_sell_quantity,
    )
