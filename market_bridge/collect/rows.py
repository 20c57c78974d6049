"""Storage rows built on the collection hot path. Pure.

Same tables and column order as ``market_bridge.storage.rows`` (checked at import), with
one difference: the tick row's best bid/ask are read from the packet's depth bytes instead
of through ``Tick.depth_buy``, which builds all ten ``DepthLevel`` objects of a full-mode
packet, the largest single cost per tick (bench/streaming.py). Values are identical
(tests/test_streaming_publisher.py compares them).
"""

from __future__ import annotations

from struct import Struct
from typing import Any

from market_bridge.aggregation import Bar
from market_bridge.instruments import Instrument
from market_bridge.kite.codec import price_divisor
from market_bridge.kite.models import Tick
from market_bridge.storage.rows import BAR_COLUMNS, TICK_COLUMNS

_TICK_COLUMNS = (
    "exchange", "symbol", "instrument_token", "tick_timestamp", "price", "quantity",
    "volume_traded", "volume_delta", "average_price", "total_buy_quantity",
    "total_sell_quantity", "bid_price", "bid_quantity", "ask_price", "ask_quantity", "oi",
    "last_trade_time", "received_at", "mode",
)  # fmt: skip
_BAR_COLUMNS = (
    "exchange", "symbol", "instrument_token", "bar_timestamp", "timeframe", "open", "high",
    "low", "close", "volume", "trades_count", "vwap", "oi", "provenance", "revision",
)  # fmt: skip
if TICK_COLUMNS != _TICK_COLUMNS or BAR_COLUMNS != _BAR_COLUMNS:
    raise ImportError("storage.rows column order changed; update market_bridge/collect/rows.py")

_LEVEL = Struct(">II")  # one depth entry starts with quantity, price (Kite's wire order)
_ASK_AT = 60  # five 12-byte bid entries come first
_NONE4: tuple[None, None, None, None] = (None, None, None, None)


def top_of_book(tick: Tick) -> tuple[float | None, int | None, float | None, int | None]:
    """(bid price, bid quantity, ask price, ask quantity) of a full-mode tick."""
    if tick.mode != "full":
        return _NONE4
    # the codec keeps a full packet's 120 depth bytes until depth is first read
    raw = getattr(tick, "_raw", None)
    if isinstance(raw, bytes) and len(raw) == 120:
        div = price_divisor(tick.instrument_token)
        bq, bp = _LEVEL.unpack_from(raw, 0)
        aq, ap = _LEVEL.unpack_from(raw, _ASK_AT)
        return bp / div, bq, ap / div, aq
    bid = tick.depth_buy[0] if tick.depth_buy else None
    ask = tick.depth_sell[0] if tick.depth_sell else None
    return (
        bid.price if bid else None, bid.quantity if bid else None,
        ask.price if ask else None, ask.quantity if ask else None,
    )  # fmt: skip


def tick_row(tick: Tick, inst: Instrument, volume_delta: int | None) -> tuple[Any, ...]:
    bid_price, bid_qty, ask_price, ask_qty = top_of_book(tick)
    return (
        inst.exchange, inst.tradingsymbol, tick.instrument_token, tick.timestamp,
        tick.last_price, tick.last_traded_quantity or 0, tick.volume_traded, volume_delta,
        tick.average_traded_price, tick.total_buy_quantity, tick.total_sell_quantity,
        bid_price, bid_qty, ask_price, ask_qty,
        tick.oi, tick.last_trade_time, tick.received_at, tick.mode,
    )  # fmt: skip


def bar_row(bar: Bar, inst: Instrument) -> tuple[Any, ...]:
    """``md.intraday_bars`` row with 'live' provenance and the bar's revision."""
    return (
        inst.exchange, inst.tradingsymbol, bar.instrument_token, bar.start, bar.timeframe,
        bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades_count, bar.vwap,
        bar.oi, "live", bar.revision,
    )  # fmt: skip
