"""Kite Ticker wire codec: binary tick frames and JSON text messages, both directions.

Sans-I/O: functions take and return bytes/str and records; no sockets, clocks or logging.

Binary frame (all integers big-endian)::

    u16 packet count N, then N x (u16 packet length L, L bytes of packet)

The packet kind is implied by L alone (8 ltp, 28/32 index quote/full, 44 quote, 184 full).

Error model
-----------
* Anything structurally wrong with a frame (count promises more packets than there are bytes,
  a length runs past the end, bytes left over) raises :class:`FrameError` (a ``ValueError``)
  naming the problem and the byte offset. Arbitrary input never raises anything else.
* A packet of a length we do not know, inside a well-formed frame, is skipped like kiteconnect
  does, but reported: :func:`decode_frame_result` and the columnar decoders return it as a
  :class:`SkippedPacket`; the :func:`decode_frame` shortcut drops that report.
* A timestamp of 0 decodes to ``None`` ("not set"); kiteconnect returns 1970-01-01 instead.
* Encoders raise ``ValueError`` for anything that cannot go on the wire (negative, too big,
  non-integer quantity, NaN price, naive datetime, unknown mode).

Decode paths, same validation and values:

* :func:`decode_frame` / :func:`decode_frame_result` -> ``Tick`` objects in frame order.
  Market depth of full packets is parsed lazily, on first access of ``depth_buy`` /
  ``depth_sell``, because building ten ``DepthLevel`` objects costs more than the rest.
* :func:`decode_frame_columns` / :func:`decode_frames_columns` (a batch of frames) ->
  :class:`TickColumns`, numpy arrays for bulk writers. Large frames whose packets all have one
  length (the usual case) are decoded without any per-packet Python work; numpy's fixed cost
  per call makes batching pay off for small frames.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from struct import Struct
from struct import error as StructError
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import orjson

from market_bridge.kite.models import IST, DepthLevel, Mode, Tick

__all__ = [
    "FULL_PACKET",
    "INDEX_FULL_PACKET",
    "INDEX_QUOTE_PACKET",
    "INDEX_SEGMENT",
    "LTP_PACKET",
    "PACKET_MODES",
    "QUOTE_PACKET",
    "BytesLike",
    "DecodeResult",
    "FrameError",
    "SkippedPacket",
    "TextMessage",
    "TextType",
    "TickColumns",
    "decode_frame",
    "decode_frame_columns",
    "decode_frame_result",
    "decode_frames_columns",
    "decode_text",
    "encode_frame",
    "encode_heartbeat",
    "encode_packet",
    "encode_text",
    "encode_ticks",
    "price_divisor",
]

BytesLike = bytes | bytearray | memoryview

LTP_PACKET = 8
INDEX_QUOTE_PACKET = 28
INDEX_FULL_PACKET = 32
QUOTE_PACKET = 44
FULL_PACKET = 184
PACKET_MODES: dict[int, Mode] = {
    LTP_PACKET: "ltp",
    INDEX_QUOTE_PACKET: "quote",
    INDEX_FULL_PACKET: "full",
    QUOTE_PACKET: "quote",
    FULL_PACKET: "full",
}

INDEX_SEGMENT = 9  # indices: not tradable, 28/32-byte packets
_CDS, _BCD, _NCO = 3, 6, 12
_DEPTH_LEVELS = 5


def _divisor(segment: int) -> float:
    # Currency derivatives quote to 4 (BSE, NCO) or 7 (NSE CDS) decimals; the rest in paise.
    if segment == _CDS:
        return 10_000_000.0
    if segment in (_BCD, _NCO):
        return 10_000.0
    return 100.0


# Indexed by token & 0xff: one tuple/array lookup instead of branches per packet.
_DIVISORS: tuple[float, ...] = tuple(_divisor(s) for s in range(256))
_DIVISORS_NP: npt.NDArray[np.float64] = np.array(_DIVISORS, dtype=np.float64)


def price_divisor(instrument_token: int) -> float:
    """What raw wire prices of this instrument are divided by."""
    return _DIVISORS[instrument_token & 0xFF]


class FrameError(ValueError):
    """A frame or text message that does not follow the Kite Ticker protocol."""

    def __init__(self, reason: str, offset: int | None = None) -> None:
        self.reason = reason
        self.offset = offset
        super().__init__(reason if offset is None else f"{reason} (at byte {offset})")


@dataclass(slots=True, frozen=True)
class SkippedPacket:
    """A packet of unknown length inside a well-formed frame (kiteconnect drops these too)."""

    offset: int  # of the packet body, after its length prefix
    length: int
    frame: int = 0  # index of the frame in a batch (decode_frames_columns)


@dataclass(slots=True, frozen=True)
class DecodeResult:
    ticks: list[Tick]
    skipped: tuple[SkippedPacket, ...] = ()


# --- layouts -------------------------------------------------------------------------------

_U16 = Struct(">H")
_U32 = Struct(">I")
_LTP = Struct(">II")
_INDEX_QUOTE = Struct(">IIIIIIi")  # token ltp high low open close price-change(signed)
_INDEX_FULL = Struct(">IIIIIIiI")  # ... exchange_timestamp
_QUOTE = Struct(">11I")  # token ltp ltq atp volume tbq tsq open high low close
_FULL_HEAD = Struct(">16I")  # quote + ltt oi oi_high oi_low exchange_timestamp
_DEPTH = Struct(">" + "IIH2x" * (2 * _DEPTH_LEVELS))  # qty price orders pad, 5 bids then 5 asks
_FULL = Struct(_FULL_HEAD.format + _DEPTH.format[1:])
_DEPTH_AT = _FULL_HEAD.size
assert _LTP.size == LTP_PACKET and _INDEX_QUOTE.size == INDEX_QUOTE_PACKET
assert _INDEX_FULL.size == INDEX_FULL_PACKET and _QUOTE.size == QUOTE_PACKET
assert _FULL.size == FULL_PACKET

# Ticks are built positionally (3x faster than keywords); fail loudly at import if the
# record's field order ever changes under us.
_TICK_FIELDS = (
    "instrument_token", "mode", "tradable", "last_price", "last_traded_quantity",
    "average_traded_price", "volume_traded", "total_buy_quantity", "total_sell_quantity",
    "open", "high", "low", "close", "change", "last_trade_time", "oi", "oi_day_high",
    "oi_day_low", "exchange_timestamp", "depth_buy", "depth_sell", "received_at",
)  # fmt: skip
_ALL_TICK_FIELDS = tuple(f.name for f in fields(Tick))
if _ALL_TICK_FIELDS[: len(_TICK_FIELDS)] != _TICK_FIELDS or tuple(
    f.name for f in fields(DepthLevel)
) != ("price", "quantity", "orders"):
    raise ImportError("market_bridge.kite.models records changed shape; update codec.py")


# --- lazy depth ----------------------------------------------------------------------------


# Frozen-dataclass __init__ goes through object.__setattr__ per field; setting the slots
# directly builds the same objects about twice as fast, and depth is ten of them per packet.
_new = object.__new__
_set_price = vars(DepthLevel)["price"].__set__
_set_quantity = vars(DepthLevel)["quantity"].__set__
_set_orders = vars(DepthLevel)["orders"].__set__


def _parse_depth(raw: bytes, div: float) -> tuple[tuple[DepthLevel, ...], tuple[DepthLevel, ...]]:
    v = _DEPTH.unpack(raw)
    levels = []
    for i in range(0, len(v), 3):  # quantity, price, orders per level
        level = _new(DepthLevel)
        _set_price(level, v[i + 1] / div)
        _set_quantity(level, v[i])
        _set_orders(level, v[i + 2])
        levels.append(level)
    return tuple(levels[:_DEPTH_LEVELS]), tuple(levels[_DEPTH_LEVELS:])


class _LazyDepthTick(Tick):
    """A full-mode ``Tick`` whose depth is parsed from the packet bytes on first access.

    Behaves as a ``Tick`` (isinstance, equality with plain ticks, repr, replace, pickle).
    Keeps only the 120 depth bytes of its packet, not the frame.
    """

    __slots__ = ("_buy", "_sell", "_raw", "_div")
    _buy: tuple[DepthLevel, ...] | None
    _sell: tuple[DepthLevel, ...] | None
    _raw: bytes | None
    _div: float

    def _materialize(self) -> None:
        raw = getattr(self, "_raw", None)
        buy, sell = _parse_depth(raw, self._div) if raw is not None else ((), ())
        if self._buy is None:
            self._buy = buy
        if self._sell is None:
            self._sell = sell
        self._raw = None

    @property
    def depth_buy(self) -> tuple[DepthLevel, ...]:
        if self._buy is None:
            self._materialize()
        return self._buy  # type: ignore[return-value]

    @depth_buy.setter
    def depth_buy(self, value: tuple[DepthLevel, ...] | None) -> None:
        self._buy = value  # None (from the decoder): not parsed yet

    @property
    def depth_sell(self) -> tuple[DepthLevel, ...]:
        if self._sell is None:
            self._materialize()
        return self._sell  # type: ignore[return-value]

    @depth_sell.setter
    def depth_sell(self, value: tuple[DepthLevel, ...] | None) -> None:
        self._sell = value

    def __eq__(self, other: object) -> bool:
        # The dataclass __eq__ only compares same-class objects; compare field values instead.
        if not isinstance(other, Tick):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in _ALL_TICK_FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, like Tick

    def __repr__(self) -> str:
        return "Tick" + Tick.__repr__(self)[len(type(self).__qualname__) :]


# --- binary decoding -----------------------------------------------------------------------


def _split(data: bytes) -> tuple[list[int], list[int]]:
    """Validate frame structure; return body offsets and lengths of its packets."""
    n = len(data)
    (count,) = _U16.unpack_from(data, 0)
    offsets: list[int] = []
    lengths: list[int] = []
    off = 2
    unpack = _U16.unpack_from
    for i in range(count):
        if off + 2 > n:
            raise FrameError(f"frame declares {count} packets but ends after {i}", off)
        (length,) = unpack(data, off)
        off += 2
        if off + length > n:
            raise FrameError(
                f"packet {i} of length {length} runs past the end of the {n}-byte frame", off - 2
            )
        offsets.append(off)
        lengths.append(length)
        off += length
    if off != n:
        raise FrameError(f"{n - off} trailing bytes after {count} packets", off)
    return offsets, lengths


def frame_layout(data: bytes) -> tuple[list[int], list[int]]:
    """Offsets (of the packet bodies) and lengths of a frame's packets, in frame order;
    raises ``FrameError`` like :func:`decode_frame`."""
    return _split(data)


def decode_frame(data: BytesLike, received_at: datetime | None = None) -> list[Tick]:
    """Decode one binary frame into ticks; heartbeats (fewer than 2 bytes) give ``[]``.

    Packets of unknown length are skipped silently; use :func:`decode_frame_result` to see them.
    """
    return decode_frame_result(data, received_at).ticks


def decode_frame_result(data: BytesLike, received_at: datetime | None = None) -> DecodeResult:
    """Decode one binary frame; also report packets of unknown length that were skipped.

    ``received_at`` is stamped on every tick (the caller owns the clock).
    """
    if not isinstance(data, bytes):
        data = bytes(data)  # lazy depth keeps slices: they must not change under us
    if len(data) < 2:
        return DecodeResult([])
    offsets, lengths = _split(data)

    ticks: list[Tick] = []
    append = ticks.append
    skipped: list[SkippedPacket] = []
    divisors = _DIVISORS
    # Packets of one frame mostly share a few timestamps: convert each second once.
    times: dict[int, datetime] = {}
    fromtimestamp = datetime.fromtimestamp
    full = _FULL_HEAD.unpack_from
    quote = _QUOTE.unpack_from
    lazy = _LazyDepthTick
    unparsed: Any = None  # depth slots of a lazy tick until first access

    for off, length in zip(offsets, lengths, strict=True):
        if length == FULL_PACKET:
            tok, lp, ltq, atp, vol, tbq, tsq, o, h, lo, c, ltt, oi, oih, oil, ets = full(data, off)
            div = divisors[tok & 0xFF]
            last = lp / div
            close = c / div
            t_ltt = times.get(ltt)
            if t_ltt is None and ltt:
                t_ltt = times[ltt] = fromtimestamp(ltt, IST)
            t_ets = times.get(ets)
            if t_ets is None and ets:
                t_ets = times[ets] = fromtimestamp(ets, IST)
            tick = lazy(
                tok, "full", tok & 0xFF != INDEX_SEGMENT, last, ltq, atp / div, vol, tbq, tsq,
                o / div, h / div, lo / div, close, (last - close) * 100 / close if c else 0.0,
                t_ltt, oi, oih, oil, t_ets, unparsed, unparsed, received_at,
            )  # fmt: skip
            tick._raw = data[off + _DEPTH_AT : off + FULL_PACKET]
            tick._div = div
            append(tick)
        elif length == QUOTE_PACKET:
            tok, lp, ltq, atp, vol, tbq, tsq, o, h, lo, c = quote(data, off)
            div = divisors[tok & 0xFF]
            last = lp / div
            close = c / div
            append(Tick(
                tok, "quote", tok & 0xFF != INDEX_SEGMENT, last, ltq, atp / div, vol, tbq, tsq,
                o / div, h / div, lo / div, close, (last - close) * 100 / close if c else 0.0,
                None, None, None, None, None, (), (), received_at,
            ))  # fmt: skip
        elif length == LTP_PACKET:
            tok, lp = _LTP.unpack_from(data, off)
            append(Tick(
                tok, "ltp", tok & 0xFF != INDEX_SEGMENT, lp / divisors[tok & 0xFF],
                None, None, None, None, None, None, None, None, None, None,
                None, None, None, None, None, (), (), received_at,
            ))  # fmt: skip
        elif length == INDEX_QUOTE_PACKET or length == INDEX_FULL_PACKET:
            # Index order is high, low, open, close; the signed price change is not used.
            tok, lp, h, lo, o, c, _chg = _INDEX_QUOTE.unpack_from(data, off)
            div = divisors[tok & 0xFF]
            last = lp / div
            close = c / div
            ts = None
            if length == INDEX_FULL_PACKET:
                (ets,) = _U32.unpack_from(data, off + INDEX_QUOTE_PACKET)
                ts = times.get(ets)
                if ts is None and ets:
                    ts = times[ets] = fromtimestamp(ets, IST)
            append(Tick(
                tok, PACKET_MODES[length], tok & 0xFF != INDEX_SEGMENT, last,
                None, None, None, None, None, o / div, h / div, lo / div, close,
                (last - close) * 100 / close if c else 0.0,
                None, None, None, None, ts, (), (), received_at,
            ))  # fmt: skip
        else:
            skipped.append(SkippedPacket(off, length))
    return DecodeResult(ticks, tuple(skipped))


# --- columnar decoding ---------------------------------------------------------------------

_DEPTH_DTYPE = np.dtype([("quantity", ">u4"), ("price", ">u4"), ("orders", ">u2"), ("_pad", "V2")])
_HEAD = [("token", ">u4"), ("last_price", ">u4")]
_QUOTE_FIELDS = [
    ("last_traded_quantity", ">u4"),
    ("average_traded_price", ">u4"),
    ("volume_traded", ">u4"),
    ("total_buy_quantity", ">u4"),
    ("total_sell_quantity", ">u4"),
    ("open", ">u4"),
    ("high", ">u4"),
    ("low", ">u4"),
    ("close", ">u4"),
]
_INDEX_FIELDS = [
    ("high", ">u4"),
    ("low", ">u4"),
    ("open", ">u4"),
    ("close", ">u4"),
    ("_change", ">i4"),
]
_FULL_FIELDS = [
    ("last_trade_time", ">u4"),
    ("oi", ">u4"),
    ("oi_day_high", ">u4"),
    ("oi_day_low", ">u4"),
    ("exchange_timestamp", ">u4"),
]
_PACKET_DTYPES: dict[int, np.dtype[Any]] = {
    LTP_PACKET: np.dtype(_HEAD),
    INDEX_QUOTE_PACKET: np.dtype(_HEAD + _INDEX_FIELDS),
    INDEX_FULL_PACKET: np.dtype(_HEAD + _INDEX_FIELDS + [("exchange_timestamp", ">u4")]),
    QUOTE_PACKET: np.dtype(_HEAD + _QUOTE_FIELDS),
    FULL_PACKET: np.dtype(_HEAD + _QUOTE_FIELDS + _FULL_FIELDS + [("depth", _DEPTH_DTYPE, (10,))]),
}
# A uniform frame after its count is an array of (length prefix, packet) records.
_FRAMED_DTYPES = {
    length: np.dtype([("length", ">u2"), ("packet", dt)]) for length, dt in _PACKET_DTYPES.items()
}
assert all(dt.itemsize == length for length, dt in _PACKET_DTYPES.items())
# Below this many packets, walking the frame in Python beats numpy's per-call overhead.
_UNIFORM_MIN_PACKETS = 16

_INT_COLUMNS = (
    "last_traded_quantity", "volume_traded", "total_buy_quantity", "total_sell_quantity",
    "last_trade_time", "oi", "oi_day_high", "oi_day_low", "exchange_timestamp",
)  # fmt: skip
_PRICE_COLUMNS = ("average_traded_price", "open", "high", "low", "close")


@dataclass(slots=True, frozen=True)
class TickColumns:
    """Packets as columns, one row per packet of a known kind.

    Rows are grouped by packet kind (kinds in order of first appearance) and keep frame order
    within a kind, so a frame (or batch) of a single packet kind is in frame order.
    Which columns mean something depends on ``packet_length`` (8/28/32/44/184, see
    ``PACKET_MODES``): absent float columns are NaN, absent integer columns 0. Timestamps
    are epoch seconds, 0 = absent or not set. Depth columns have shape (n, 10): levels
    0-4 are bids (best first), 5-9 asks. Prices are divided by the segment divisor and
    ``change`` is computed exactly as kiteconnect (and ``decode_frame``) does.
    """

    instrument_token: npt.NDArray[np.int64]
    packet_length: npt.NDArray[np.int64]
    tradable: npt.NDArray[np.bool_]
    last_price: npt.NDArray[np.float64]
    last_traded_quantity: npt.NDArray[np.int64]
    average_traded_price: npt.NDArray[np.float64]
    volume_traded: npt.NDArray[np.int64]
    total_buy_quantity: npt.NDArray[np.int64]
    total_sell_quantity: npt.NDArray[np.int64]
    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]
    change: npt.NDArray[np.float64]
    last_trade_time: npt.NDArray[np.int64]
    oi: npt.NDArray[np.int64]
    oi_day_high: npt.NDArray[np.int64]
    oi_day_low: npt.NDArray[np.int64]
    exchange_timestamp: npt.NDArray[np.int64]
    depth_quantity: npt.NDArray[np.int64]
    depth_price: npt.NDArray[np.float64]
    depth_orders: npt.NDArray[np.int64]
    skipped: tuple[SkippedPacket, ...] = ()

    def __len__(self) -> int:
        return len(self.instrument_token)

    def as_dict(self) -> dict[str, npt.NDArray[Any]]:
        """The columns by name (without ``skipped``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "skipped"}


_COLUMN_NAMES = tuple(f.name for f in fields(TickColumns) if f.name != "skipped")


def _kind_columns(length: int, rec: npt.NDArray[Any]) -> dict[str, Any]:
    """Columns for packets ``rec``, all of one ``length``."""
    k = len(rec)
    names = rec.dtype.names or ()
    token = rec["token"].astype(np.int64)
    segment = token & 0xFF
    div = _DIVISORS_NP[segment]
    last = rec["last_price"] / div
    cols: dict[str, Any] = {
        "instrument_token": token,
        "packet_length": np.full(k, length, np.int64),
        "tradable": segment != INDEX_SEGMENT,
        "last_price": last,
    }
    for name in _PRICE_COLUMNS:
        cols[name] = rec[name] / div if name in names else np.full(k, np.nan)
    for name in _INT_COLUMNS:
        cols[name] = rec[name].astype(np.int64) if name in names else np.zeros(k, np.int64)
    if "close" in names:
        close = cols["close"]
        change = np.zeros(k)
        # Same expression and operation order as kiteconnect, so results are bit-identical.
        np.divide((last - close) * 100, close, out=change, where=close != 0)
        cols["change"] = change
    else:
        cols["change"] = np.full(k, np.nan)
    if length == FULL_PACKET:
        depth = rec["depth"]
        cols["depth_quantity"] = depth["quantity"].astype(np.int64)
        cols["depth_price"] = depth["price"] / div[:, None]
        cols["depth_orders"] = depth["orders"].astype(np.int64)
    else:
        cols["depth_quantity"] = np.zeros((k, 10), np.int64)
        cols["depth_price"] = np.full((k, 10), np.nan)
        cols["depth_orders"] = np.zeros((k, 10), np.int64)
    return cols


def _uniform(data: bytes, count: int) -> npt.NDArray[Any] | None:
    """The packets of a frame whose packets all have one known length, else None."""
    if len(data) < 4:
        return None
    (first,) = _U16.unpack_from(data, 2)
    framed = _FRAMED_DTYPES.get(first)
    if framed is None or len(data) != 2 + count * framed.itemsize:
        return None
    recs = np.frombuffer(data, dtype=framed, count=count, offset=2)
    return recs["packet"] if bool((recs["length"] == first).all()) else None


def decode_frame_columns(data: BytesLike) -> TickColumns:
    """Decode one binary frame into numpy columns (see :class:`TickColumns`).

    Same validation as :func:`decode_frame`; heartbeats give zero rows. numpy costs tens of
    microseconds per call whatever the size: for small frames use :func:`decode_frames_columns`.
    """
    return _decode_columns((data,), batch=False)


def decode_frames_columns(frames: Iterable[BytesLike]) -> TickColumns:
    """Decode a batch of frames into one set of columns (heartbeats contribute nothing).

    A malformed frame raises ``FrameError`` for the whole batch, naming the frame's index.
    ``SkippedPacket.frame`` tells which frame a skipped packet came from.
    """
    return _decode_columns(frames, batch=True)


def _decode_columns(frames: Iterable[BytesLike], batch: bool) -> TickColumns:
    # Per kind: record arrays in frame order, plus packet bytes not yet made into one.
    pieces: dict[int, list[npt.NDArray[Any]]] = {}
    pending: dict[int, list[bytes]] = {}
    skipped: list[SkippedPacket] = []

    def flush(length: int) -> None:
        chunk = pending.pop(length, None)
        if chunk:
            joined = np.frombuffer(b"".join(chunk), dtype=_PACKET_DTYPES[length])
            pieces.setdefault(length, []).append(joined)

    for index, data in enumerate(frames):
        if not isinstance(data, bytes):
            data = bytes(data)
        if len(data) < 2:
            continue  # heartbeat
        (count,) = _U16.unpack_from(data, 0)
        if count >= _UNIFORM_MIN_PACKETS:
            rec = _uniform(data, count)
            if rec is not None:
                length = rec.dtype.itemsize
                flush(length)
                pieces.setdefault(length, []).append(rec)
                continue
        try:
            offsets, lengths = _split(data)
        except FrameError as exc:
            if not batch:
                raise
            raise FrameError(f"frame {index}: {exc.reason}", exc.offset) from None
        for off, length in zip(offsets, lengths, strict=True):
            if length in _PACKET_DTYPES:
                chunk = pending.get(length)
                if chunk is None:
                    chunk = pending[length] = []
                    pieces.setdefault(length, [])  # kinds keep their order of first appearance
                chunk.append(data[off : off + length])
            else:
                skipped.append(SkippedPacket(off, length, index))

    parts = []
    for length in list(pieces):
        flush(length)
        recs = pieces[length]
        rec = recs[0] if len(recs) == 1 else np.concatenate(recs)
        parts.append(_kind_columns(length, rec))
    if not parts:
        return TickColumns(**_kind_columns(LTP_PACKET, np.empty(0, _PACKET_DTYPES[LTP_PACKET])))
    if len(parts) == 1:
        return TickColumns(**parts[0], skipped=tuple(skipped))
    merged = {name: np.concatenate([p[name] for p in parts]) for name in _COLUMN_NAMES}
    return TickColumns(**merged, skipped=tuple(skipped))


# --- binary encoding -----------------------------------------------------------------------

_MAX_U32 = 0xFFFF_FFFF
_MAX_U16 = 0xFFFF


def _raw_price(value: float | None, div: float, name: str) -> int:
    if value is None:
        return 0
    if not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    raw = round(value * div)  # nearest wire unit; exact for anything we decoded
    if not 0 <= raw <= _MAX_U32:
        raise ValueError(f"{name}={value!r} is outside the wire range (0..{_MAX_U32 / div})")
    return raw


def _raw_int(value: int | None, name: str, limit: int = _MAX_U32) -> int:
    if value is None:
        return 0
    try:
        value = operator.index(value)  # ints and numpy integers, not floats
    except TypeError:
        raise ValueError(f"{name} must be an int, got {value!r}") from None
    if not 0 <= value <= limit:
        raise ValueError(f"{name}={value} is outside 0..{limit}")
    return value


_EPOCH_IST = datetime(1970, 1, 1, 5, 30, tzinfo=IST)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def _raw_time(value: datetime | None, name: str) -> int:
    if value is None:
        return 0
    if value.tzinfo is IST:
        # Same-zone subtraction skips utcoffset() calls: 3x faster than .timestamp().
        secs = (value - _EPOCH_IST) // _SECOND
    elif value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
    else:
        secs = (value - _EPOCH_UTC) // _SECOND  # whole seconds on the wire: floor
    if not 0 <= secs <= _MAX_U32:
        raise ValueError(f"{name}={value!r} is outside the u32 epoch-seconds range")
    return secs


def _raw_depth(levels: Sequence[DepthLevel], div: float, side: str) -> list[int]:
    if len(levels) > _DEPTH_LEVELS:
        raise ValueError(f"depth_{side} has {len(levels)} levels, the wire carries 5")
    out: list[int] = []
    for i, lvl in enumerate(levels):
        where = f"depth_{side}[{i}]"
        out += (
            _raw_int(lvl.quantity, f"{where}.quantity"),
            _raw_price(lvl.price, div, f"{where}.price"),
            _raw_int(lvl.orders, f"{where}.orders", _MAX_U16),
        )
    return out + [0] * (3 * (_DEPTH_LEVELS - len(levels)))


def encode_packet(tick: Tick) -> bytes:
    """One packet for ``tick``: its kind follows ``tick.mode`` and the token's segment.

    Index tokens (segment 9) get the 28/32-byte index packets. Missing values are sent as 0
    (which decodes back to 0, or ``None`` for timestamps); depth is zero-padded to 5 levels.
    Prices are rounded to the segment's wire unit. Raises ``ValueError`` for values the wire
    cannot carry (negative, beyond u32, non-integer quantities, NaN, naive datetimes).
    """
    if tick.mode != "ltp":
        # Full packets have 46 values: let struct range-check them, and only on failure
        # go through the field-by-field checks that say which value was wrong.
        try:
            packet = _pack_unchecked(tick)
        except (StructError, TypeError, ValueError, OverflowError, AttributeError):
            packet = None
        if packet is not None:
            return packet
    return _pack_checked(tick)


def _price_or_0(value: float | None, div: float) -> int:
    return 0 if value is None else round(value * div)


def _pack_unchecked(tick: Tick) -> bytes | None:
    """Quote/full packet of a non-index instrument (else None); bad values raise imprecisely."""
    tok = tick.instrument_token
    if tok & 0xFF == INDEX_SEGMENT:
        return None
    div = _DIVISORS[tok & 0xFF]
    head = (
        tok,
        _price_or_0(tick.last_price, div),
        0 if tick.last_traded_quantity is None else tick.last_traded_quantity,
        _price_or_0(tick.average_traded_price, div),
        0 if tick.volume_traded is None else tick.volume_traded,
        0 if tick.total_buy_quantity is None else tick.total_buy_quantity,
        0 if tick.total_sell_quantity is None else tick.total_sell_quantity,
        _price_or_0(tick.open, div),
        _price_or_0(tick.high, div),
        _price_or_0(tick.low, div),
        _price_or_0(tick.close, div),
    )
    if tick.mode == "quote":
        return _QUOTE.pack(*head)
    if tick.mode != "full":
        raise ValueError(tick.mode)
    depth: list[int] = []
    for levels in (tick.depth_buy, tick.depth_sell):
        for lvl in levels:
            depth += (lvl.quantity, round(lvl.price * div), lvl.orders)
        # more than 5 levels leaves too many values: struct.pack refuses them
        depth += _ZERO_LEVELS[: 3 * max(0, _DEPTH_LEVELS - len(levels))]
    return _FULL.pack(
        *head,
        _raw_time(tick.last_trade_time, "last_trade_time"),
        0 if tick.oi is None else tick.oi,
        0 if tick.oi_day_high is None else tick.oi_day_high,
        0 if tick.oi_day_low is None else tick.oi_day_low,
        _raw_time(tick.exchange_timestamp, "exchange_timestamp"),
        *depth,
    )


_ZERO_LEVELS = (0,) * (3 * _DEPTH_LEVELS)


def _pack_checked(tick: Tick) -> bytes:
    tok = _raw_int(tick.instrument_token, "instrument_token")
    segment = tok & 0xFF
    div = _DIVISORS[segment]
    last = _raw_price(tick.last_price, div, "last_price")
    mode = tick.mode
    if mode == "ltp":
        return _LTP.pack(tok, last)
    if mode not in ("quote", "full"):
        raise ValueError(f"unknown mode {mode!r}")
    o = _raw_price(tick.open, div, "open")
    h = _raw_price(tick.high, div, "high")
    lo = _raw_price(tick.low, div, "low")
    c = _raw_price(tick.close, div, "close")
    if segment == INDEX_SEGMENT:
        # Kite's own field at offset 24 is a signed net change; clients ignore it.
        chg = max(-(2**31), min(2**31 - 1, last - c))
        if mode == "quote":
            return _INDEX_QUOTE.pack(tok, last, h, lo, o, c, chg)
        ets = _raw_time(tick.exchange_timestamp, "exchange_timestamp")
        return _INDEX_FULL.pack(tok, last, h, lo, o, c, chg, ets)
    head = (
        tok,
        last,
        _raw_int(tick.last_traded_quantity, "last_traded_quantity"),
        _raw_price(tick.average_traded_price, div, "average_traded_price"),
        _raw_int(tick.volume_traded, "volume_traded"),
        _raw_int(tick.total_buy_quantity, "total_buy_quantity"),
        _raw_int(tick.total_sell_quantity, "total_sell_quantity"),
        o,
        h,
        lo,
        c,
    )
    if mode == "quote":
        return _QUOTE.pack(*head)
    return _FULL.pack(
        *head,
        _raw_time(tick.last_trade_time, "last_trade_time"),
        _raw_int(tick.oi, "oi"),
        _raw_int(tick.oi_day_high, "oi_day_high"),
        _raw_int(tick.oi_day_low, "oi_day_low"),
        _raw_time(tick.exchange_timestamp, "exchange_timestamp"),
        *_raw_depth(tick.depth_buy, div, "buy"),
        *_raw_depth(tick.depth_sell, div, "sell"),
    )


def encode_frame(packets: Sequence[bytes]) -> bytes:
    """Frame already-encoded packets (at most 65535, each at most 65535 bytes)."""
    if len(packets) > _MAX_U16:
        raise ValueError(f"{len(packets)} packets do not fit one frame (max {_MAX_U16})")
    parts = [_U16.pack(len(packets))]
    for i, packet in enumerate(packets):
        if len(packet) > _MAX_U16:
            raise ValueError(f"packet {i} is {len(packet)} bytes (max {_MAX_U16})")
        parts.append(_U16.pack(len(packet)))
        parts.append(bytes(packet))
    return b"".join(parts)


def encode_ticks(ticks: Iterable[Tick]) -> bytes:
    """One frame carrying a packet per tick."""
    return encode_frame([encode_packet(t) for t in ticks])


def encode_heartbeat() -> bytes:
    """The 1-byte frame Kite sends when there is nothing to stream."""
    return b"\x00"


# --- text messages -------------------------------------------------------------------------

TextType = Literal["order", "error", "message"]
_TEXT_TYPES: frozenset[str] = frozenset(get_args(TextType))


@dataclass(slots=True, frozen=True)
class TextMessage:
    """A server text frame: an order update (``data`` is the order dict), an error or a notice."""

    type: TextType
    data: Any = None


def decode_text(text: str | BytesLike) -> TextMessage:
    """Parse a ``{"type": ..., "data": ...}`` text frame; anything else raises ``FrameError``."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"text message is not JSON: {exc}", exc.pos) from None
    except TypeError as exc:  # not str/bytes-like at all
        raise FrameError(f"text message must be str or bytes: {exc}") from None
    if not isinstance(obj, dict):
        raise FrameError(f"text message must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind not in _TEXT_TYPES:
        raise FrameError(f"unknown text message type {kind!r}")
    data = obj.get("data")
    if kind == "order" and not isinstance(data, dict):
        raise FrameError(f"order update data must be an object, got {type(data).__name__}")
    return TextMessage(kind, data)


def encode_text(message_type: TextType, data: Any) -> str:
    """The JSON text frame for a message; ``data`` must be JSON-serializable."""
    if message_type not in _TEXT_TYPES:
        raise ValueError(f"unknown text message type {message_type!r}")
    if message_type == "order" and not isinstance(data, dict):
        raise ValueError("order update data must be a dict")
    return orjson.dumps({"type": message_type, "data": data}).decode()
