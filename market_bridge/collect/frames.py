"""The columnar hot path's pieces: a Kite frame as numpy columns -> binary COPY tuples for
``md.tick_data`` and ``md.order_book``, subscriptions as arrays, ``Tick``s on demand.

Pure. ``Collector.handle_frame`` uses these for frames whose packets all have one length
(Kite's usual frame; ``decode_frame_columns`` keeps frame order for them); the values
written are exactly those of the per-tick path (``collect/rows.py``,
``storage/rows.py``), which tests/test_streaming_frames.py checks byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import numpy.typing as npt

from market_bridge.collect.spec import Subscription
from market_bridge.kite.codec import FULL_PACKET, QUOTE_PACKET, TickColumns, decode_frame
from market_bridge.kite.models import Mode, Tick
from market_bridge.storage.pgcopy import (
    DEPTH_ENCODER,
    PG_EPOCH_S,
    TICK_ENCODER,
    text_suffix,
)

_US = 1_000_000
Suffixes = tuple[npt.NDArray[np.bytes_], npt.NDArray[np.int64]]


class SubscriptionTable:
    """Subscribed instruments as a sorted token array: one vectorised lookup per frame,
    and the text columns (exchange, symbol, mode) of their COPY tuples, pre-encoded."""

    def __init__(self, subs: dict[int, Subscription]) -> None:
        order = sorted(subs)
        self.tokens = np.array(order, dtype=np.int64)
        self.subs = [subs[t] for t in order]
        self._suffixes: dict[str, Suffixes] = {}

    def __len__(self) -> int:
        return len(self.subs)

    def lookup(self, tokens: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.bool_],
                                                            npt.NDArray[np.intp]]:  # fmt: skip
        """(subscribed?, slot) per token."""
        if not len(self.subs):
            return np.zeros(len(tokens), np.bool_), np.zeros(len(tokens), np.intp)
        slot = np.searchsorted(self.tokens, tokens)
        np.minimum(slot, len(self.tokens) - 1, out=slot)
        return self.tokens[slot] == tokens, slot

    def suffixes(self, mode: Mode | None) -> Suffixes:
        """Per slot: text fields ending a tick tuple (mode given) or a depth tuple (None)."""
        key = mode or ""
        found = self._suffixes.get(key)
        if found is None:
            raw = [
                text_suffix(s.instrument.exchange, s.instrument.tradingsymbol, *([mode] if mode else []))
                for s in self.subs
            ]  # fmt: skip
            width = max((len(r) for r in raw), default=1)
            # ``S`` arrays drop trailing NULs when read back, never when viewed as bytes
            arr = np.array(raw, dtype=f"S{width}") if raw else np.zeros(0, f"S{width}")
            found = self._suffixes[key] = (arr, np.array([len(r) for r in raw], np.int64))
        return found


def tick_tuples(
    cols: TickColumns,
    rows: npt.NDArray[np.intp],
    slots: npt.NDArray[np.intp],
    t_us: npt.NDArray[np.int64],
    received_us: int,
    deltas: Sequence[int | None],
    table: SubscriptionTable,
    mode: Mode,
) -> bytes:
    """COPY tuples for the ticks ``rows`` of a one-packet-kind frame, as ``tick_row``
    would write them (``t_us``: tick timestamps in PostgreSQL microseconds)."""
    n = len(rows)
    length = int(cols.packet_length[0]) if len(cols) else 0
    full = length == FULL_PACKET
    quote = full or length == QUOTE_PACKET  # packets with volume and quantities
    ltt = cols.last_trade_time[rows]
    all_null = np.ones(n, np.bool_)
    values = {
        "instrument_token": cols.instrument_token[rows],
        "tick_timestamp": t_us,
        "price": cols.last_price[rows],
        "quantity": cols.last_traded_quantity[rows],
        "volume_traded": cols.volume_traded[rows],
        "volume_delta": np.array([0 if d is None else d for d in deltas], np.int64) if quote else 0,
        "average_price": cols.average_traded_price[rows],
        "total_buy_quantity": cols.total_buy_quantity[rows],
        "total_sell_quantity": cols.total_sell_quantity[rows],
        "bid_price": cols.depth_price[rows, 0],
        "bid_quantity": cols.depth_quantity[rows, 0],
        "ask_price": cols.depth_price[rows, 5],
        "ask_quantity": cols.depth_quantity[rows, 5],
        "oi": cols.oi[rows],
        "last_trade_time": (ltt - PG_EPOCH_S) * _US,
        "received_at": received_us,
    }
    nulls: dict[str, npt.NDArray[np.bool_]] = {}
    if not quote:
        for name in ("volume_traded", "volume_delta", "average_price", "total_buy_quantity",
                     "total_sell_quantity"):  # fmt: skip
            nulls[name] = all_null
    if not full:
        for name in ("bid_price", "bid_quantity", "ask_price", "ask_quantity", "oi"):
            nulls[name] = all_null
        nulls["last_trade_time"] = all_null
    else:
        nulls["last_trade_time"] = ltt == 0
    suffix, suffix_len = table.suffixes(mode)
    return TICK_ENCODER.encode(n, values, nulls, suffix[slots], suffix_len[slots], 3)


def depth_tuples(
    cols: TickColumns,
    rows: npt.NDArray[np.intp],
    slots: npt.NDArray[np.intp],
    t_us: npt.NDArray[np.int64],
    table: SubscriptionTable,
) -> bytes:
    """COPY tuples for the order books of full-mode ticks ``rows`` (``depth_row``)."""
    price = cols.depth_price[rows]
    qty = cols.depth_quantity[rows]
    orders = cols.depth_orders[rows]
    values = {
        "instrument_token": cols.instrument_token[rows],
        "snapshot_timestamp": t_us,
        "total_buy_quantity": cols.total_buy_quantity[rows],
        "total_sell_quantity": cols.total_sell_quantity[rows],
        "bid_prices": price[:, :5], "bid_quantities": qty[:, :5], "bid_orders": orders[:, :5],
        "ask_prices": price[:, 5:], "ask_quantities": qty[:, 5:], "ask_orders": orders[:, 5:],
    }  # fmt: skip
    suffix, suffix_len = table.suffixes(None)
    return DEPTH_ENCODER.encode(len(rows), values, {}, suffix[slots], suffix_len[slots], 2)


class PacketRef:
    """Packet ``index`` of a one-packet-kind frame: decoded into a ``Tick`` only when asked
    (live messages and stats want a few ticks per flush, not every one)."""

    __slots__ = ("data", "index", "length", "received_at")

    def __init__(self, data: bytes, index: int, length: int, received_at: datetime) -> None:
        self.data = data
        self.index = index
        self.length = length
        self.received_at = received_at

    def tick(self) -> Tick:
        start = 2 + self.index * (self.length + 2)  # after the count: (u16 length, packet)*
        packet = self.data[start : start + 2 + self.length]
        return decode_frame(b"\x00\x01" + packet, self.received_at)[0]
