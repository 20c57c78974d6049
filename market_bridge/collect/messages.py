"""The live message contract (``pg_notify('mb_live', ...)``) and how messages are packed.

Pure: records in, JSON-ready dicts and payload strings out. Every message is
``{"type": ..., "symbol": ..., "data": {...}}`` where ``type`` is one of ``tick``, ``bar``,
``orderbook``, ``stats`` or ``status`` and ``symbol`` is the display form (``RELIANCE`` for
NSE, ``EXCHANGE:SYMBOL`` otherwise). A NOTIFY payload is a JSON array of messages and
stays under ``MAX_PAYLOAD`` bytes (PostgreSQL refuses 8000 and more). The full contract,
with examples, is in docs/streaming.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from market_bridge.aggregation import Bar
from market_bridge.collect.rows import top_of_book
from market_bridge.instruments import Instrument
from market_bridge.kite.models import DepthLevel, Tick

MessageType = Literal["tick", "bar", "orderbook", "stats", "status"]
FeedState = Literal["feed_lost", "feed_restored"]
LIVE_CHANNEL = "mb_live"
MAX_PAYLOAD = 7900  # bytes; PostgreSQL's NOTIFY limit is 8000 with the default block size


def display_symbol(inst: Instrument) -> str:
    """``RELIANCE`` for NSE, ``BSE:SENSEX`` elsewhere (the API's symbol form)."""
    if inst.exchange == "NSE":
        return inst.tradingsymbol
    return f"{inst.exchange}:{inst.tradingsymbol}"


# timestamps repeat (a frame's ticks, every instrument's bars of a minute): format once.
# Keyed with tzinfo and fold, as equal instants in other zones are equal datetimes.
_ISO: dict[tuple[datetime, Any, int], str] = {}


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    key = (ts, ts.tzinfo, ts.fold)
    text = _ISO.get(key)
    if text is None:
        if len(_ISO) > 8192:
            _ISO.clear()
        text = _ISO[key] = ts.isoformat()
    return text


def message(kind: MessageType, symbol: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "symbol": symbol, "data": data}


def tick_data(tick: Tick) -> dict[str, Any]:
    """A tick as clients see it. ``price`` is the seed's name for the last price."""
    bid, _, ask, _ = top_of_book(tick)  # without parsing the whole book
    return {
        "instrument_token": tick.instrument_token,
        "timestamp": _iso(tick.timestamp),
        "price": tick.last_price,
        "quantity": tick.last_traded_quantity,
        "volume": tick.volume_traded,  # cumulative for the day, as Kite sends it
        "average_price": tick.average_traded_price,
        "buy_quantity": tick.total_buy_quantity,
        "sell_quantity": tick.total_sell_quantity,
        "bid": bid,
        "ask": ask,
        "oi": tick.oi,
        "change_percent": tick.change,
        "mode": tick.mode,
    }


def bar_data(bar: Bar) -> dict[str, Any]:
    """``Bar.to_dict()`` plus ``timestamp`` (= start, the REST API's name for it)."""
    start = _iso(bar.start)
    return {
        "instrument_token": bar.instrument_token,
        "timeframe": bar.timeframe,
        "start": start,
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
        "trades_count": bar.trades_count,
        "vwap": bar.vwap,
        "oi": bar.oi,
        "final": bar.final,
        "revision": bar.revision,
        "source": bar.source,
        "timestamp": start,
    }


def _levels(levels: Sequence[DepthLevel]) -> list[dict[str, Any]]:
    return [{"price": lv.price, "quantity": lv.quantity, "orders": lv.orders} for lv in levels]


def orderbook_data(tick: Tick) -> dict[str, Any]:
    return {
        "instrument_token": tick.instrument_token,
        "timestamp": _iso(tick.timestamp),
        "bids": _levels(tick.depth_buy),
        "asks": _levels(tick.depth_sell),
        "total_buy_quantity": tick.total_buy_quantity,
        "total_sell_quantity": tick.total_sell_quantity,
    }


def stats_data(tick: Tick, day_bar: Bar | None) -> dict[str, Any]:
    """Day statistics from the latest tick (quote/full carry the day's OHLC and volume);
    ltp ticks carry none of it, so the aggregator's day bar fills in."""
    prev_close = tick.close if tick.close else None
    price = tick.last_price
    change = price - prev_close if prev_close else None
    return {
        "instrument_token": tick.instrument_token,
        "timestamp": _iso(tick.timestamp),
        "last_price": price,
        "open": tick.open if tick.open else (day_bar.open if day_bar else None),
        "high": tick.high if tick.high else (day_bar.high if day_bar else None),
        "low": tick.low if tick.low else (day_bar.low if day_bar else None),
        "prev_close": prev_close,
        "change": round(change, 6) if change is not None else None,
        "change_percent": (
            round(change * 100 / prev_close, 4) if change is not None and prev_close else None
        ),
        "volume": tick.volume_traded
        if tick.volume_traded is not None
        else (day_bar.volume if day_bar else None),
        "average_price": tick.average_traded_price or (day_bar.vwap if day_bar else None),
        "oi": tick.oi,
    }


def status_data(
    state: FeedState, collector: str, at: datetime, reason: str, **extra: Any
) -> dict[str, Any]:
    return {"state": state, "collector": collector, "at": at.isoformat(), "reason": reason, **extra}


@dataclass(frozen=True, slots=True)
class Packed:
    payloads: list[str]
    messages: int  # how many went into payloads
    oversized: int  # single messages too big for any payload (dropped)


def pack(messages: Iterable[dict[str, Any]], limit: int = MAX_PAYLOAD) -> Packed:
    """Greedy, order-preserving packing of messages into JSON arrays of < ``limit`` bytes."""
    payloads: list[str] = []
    current: list[bytes] = []
    size = 2  # "[" and "]"
    packed = oversized = 0
    for msg in messages:
        raw = orjson.dumps(msg)
        if len(raw) + 2 >= limit:
            oversized += 1
            continue
        extra = len(raw) + (1 if current else 0)  # the comma
        if size + extra >= limit:
            payloads.append(_join(current))
            current, size, extra = [], 2, len(raw)
        current.append(raw)
        size += extra
        packed += 1
    if current:
        payloads.append(_join(current))
    return Packed(payloads, packed, oversized)


def _join(parts: list[bytes]) -> str:
    return (b"[" + b",".join(parts) + b"]").decode()
