"""The columnar hot path's pieces: a Kite frame as numpy columns -> binary COPY tuples for
``md.tick_data`` and ``md.order_book``, subscriptions as arrays, ``Tick``s on demand.

Pure. ``Collector.handle_frame`` uses these for every frame (with several packet kinds,
e.g. a full-mode collector's stocks and indices, rows are put back into frame order with
``column_offsets`` and the tuples of each kind with ``pgcopy.interleave``); the values
written are exactly those of the per-tick path (``collect/rows.py``,
``storage/rows.py``), which tests/test_streaming_frames.py checks byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import numpy.typing as npt

from market_bridge.collect.spec import Subscription
from market_bridge.kite.codec import (
    FULL_PACKET,
    PACKET_MODES,
    QUOTE_PACKET,
    TickColumns,
    decode_frame,
    frame_layout,
)
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


def tick_tuples_sized(
    cols: TickColumns,
    rows: npt.NDArray[np.intp],
    slots: npt.NDArray[np.intp],
    t_us: npt.NDArray[np.int64],
    received_us: int,
    deltas: Sequence[int | None],
    table: SubscriptionTable,
    mode: Mode,
) -> tuple[bytes, npt.NDArray[np.int64]]:
    """COPY tuples for the ticks ``rows`` (all of one packet kind), as ``tick_row`` would
    write them (``t_us``: tick timestamps in PostgreSQL microseconds), and the byte length
    of each tuple (to interleave the tuples of several kinds)."""
    n = len(rows)
    length = int(cols.packet_length[rows[0]]) if n else 0
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
    return TICK_ENCODER.encode_sized(n, values, nulls, suffix[slots], suffix_len[slots], 3)


def column_offsets(data: bytes, cols: TickColumns) -> tuple[npt.NDArray[np.int64],
                                                             npt.NDArray[np.intp]]:  # fmt: skip
    """For a frame with several packet kinds (``decode_frame_columns`` groups its rows by
    kind): per column row, the offset of its packet body in ``data`` and its position
    among the frame's packets of known kinds (frame order)."""
    offsets, lengths = frame_layout(data)
    known = [(o, n) for o, n in zip(offsets, lengths, strict=True) if n in PACKET_MODES]
    off = np.array([o for o, _ in known], np.int64)
    kind = np.array([n for _, n in known], np.int64)
    first: dict[int, int] = {}
    for n in kind.tolist():
        first.setdefault(n, len(first))  # kinds in order of first appearance
    rank = np.array([first[n] for n in kind.tolist()], np.int64)
    pos = np.argsort(rank, kind="stable")
    if not np.array_equal(kind[pos], cols.packet_length):
        raise AssertionError("decode_frame_columns row order changed")
    return off[pos], pos.astype(np.intp)


def uniform_offset(index: int, length: int) -> int:
    """Offset of packet ``index``'s body in a frame whose packets all have ``length``."""
    return 4 + index * (length + 2)  # count, then (u16 length, packet)*


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
    return DEPTH_ENCODER.encode_sized(
        len(rows), values, {}, suffix[slots], suffix_len[slots], 2
    )[0]


# The newest packet of an instrument, decoded into a ``Tick`` only when asked (live
# messages and stats want a few ticks per flush, not every one): (frame, offset of the
# packet's body in it, packet length, arrival time). A plain tuple: the columnar path
# makes one per tick with ``zip``, without running Python code per tick.
PacketRef = tuple[bytes, int, int, datetime]


def packet_of(ref: PacketRef) -> bytes:
    """The packet with its length prefix."""
    data, offset, length, _ = ref
    return data[offset - 2 : offset + length]


def ref_tick(ref: PacketRef) -> Tick:
    return decode_frame(b"\x00\x01" + packet_of(ref), ref[3])[0]


def decode_refs(refs: Sequence[PacketRef]) -> list[Tick]:
    """``[ref_tick(r) for r in refs]``, decoding the packets of one arrival together."""
    out: list[Tick | None] = [None] * len(refs)
    groups: dict[datetime, list[int]] = {}
    for i, ref in enumerate(refs):
        groups.setdefault(ref[3], []).append(i)
    for received_at, idx in groups.items():
        frame = len(idx).to_bytes(2, "big") + b"".join([packet_of(refs[i]) for i in idx])
        for i, tick in zip(idx, decode_frame(frame, received_at), strict=True):
            out[i] = tick
    return out  # type: ignore[return-value]
