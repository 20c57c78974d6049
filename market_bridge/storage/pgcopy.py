"""PostgreSQL binary COPY payloads for ``md.tick_data`` and ``md.order_book``. Pure.

The writer sends one ``COPY ... FROM STDIN (FORMAT BINARY)`` per batch: the header, the
encoded tuples of every chunk in the batch, the trailer. Tuples are encoded where the rows
are produced, in bulk:

- ``encode_tick_rows`` / ``encode_depth_rows``: row tuples (``storage.rows`` column order)
  -> tuples, with ``struct`` (any producer, tests, the per-tick path);
- ``TupleEncoder``: numpy columns -> tuples for many rows at once (the columnar hot path,
  ``collect/frames.py``). Fixed-width fields are laid out as one structured array;
  per-row NULLs and the variable-length text columns at the end of each tuple are cut out
  with one boolean mask over the bytes.

The COPY column order (``COPY_TICK_COLUMNS``, ``COPY_DEPTH_COLUMNS``) puts the
fixed-width columns first and the text columns last, which is what makes the bulk layout
possible; both encoders use it. Binary format: 16-bit field count, then per field a 32-bit
length (-1 = NULL) and the value in network order; ``timestamptz`` is microseconds since
2000-01-01 UTC; arrays carry (ndim, has-null, element OID, size, lower bound) before
their length-prefixed elements.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from struct import Struct
from typing import Any

import numpy as np
import numpy.typing as npt

from market_bridge.storage.rows import BAR_COLUMNS, DEPTH_COLUMNS, TICK_COLUMNS

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
PG_EPOCH_S = 946_684_800  # 2000-01-01 UTC in Unix seconds
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

# fixed-width columns first, text last (see the module docstring)
COPY_TICK_COLUMNS = (
    "instrument_token", "tick_timestamp", "price", "quantity", "volume_traded",
    "volume_delta", "average_price", "total_buy_quantity", "total_sell_quantity",
    "bid_price", "bid_quantity", "ask_price", "ask_quantity", "oi", "last_trade_time",
    "received_at", "exchange", "symbol", "mode",
)  # fmt: skip
TICK_FIXED_TYPES = (
    "int8", "timestamptz", "float8", "int8", "int8", "int8", "float8", "int8", "int8",
    "float8", "int8", "float8", "int8", "int8", "timestamptz", "timestamptz",
)  # fmt: skip
COPY_DEPTH_COLUMNS = (
    "instrument_token", "snapshot_timestamp", "total_buy_quantity", "total_sell_quantity",
    "bid_prices", "bid_quantities", "bid_orders", "ask_prices", "ask_quantities",
    "ask_orders", "exchange", "symbol",
)  # fmt: skip
# bars: ``seq`` (position in the write, for the upsert's order) then storage.rows order
COPY_BAR_COLUMNS = ("seq", *BAR_COLUMNS)
assert sorted(COPY_TICK_COLUMNS) == sorted(TICK_COLUMNS)
assert sorted(COPY_DEPTH_COLUMNS) == sorted(DEPTH_COLUMNS)
_TICK_ORDER = tuple(TICK_COLUMNS.index(c) for c in COPY_TICK_COLUMNS)
_DEPTH_ORDER = tuple(DEPTH_COLUMNS.index(c) for c in COPY_DEPTH_COLUMNS)

_OID = {"float8": 701, "int8": 20, "int4": 23}
_NULL = b"\xff\xff\xff\xff"
_I16 = Struct(">h")
_I32 = Struct(">i")
_INT8 = Struct(">iq")
_INT4 = Struct(">ii")
_FLOAT8 = Struct(">id")
_ARRAY_HEAD = Struct(">iiiiii")  # byte length, ndim, has-null, element OID, size, lbound
_ELEM = {"float8": Struct(">id"), "int8": Struct(">iq"), "int4": Struct(">ii")}
_ELEM_SIZE = {"float8": 12, "int8": 12, "int4": 8}


def timestamp_us(value: datetime) -> int:
    """``timestamptz`` on the wire: microseconds since 2000-01-01 UTC (aware datetimes)."""
    if value.tzinfo is None:
        raise TypeError(f"naive datetime for a timestamptz column: {value!r}")
    return (value - _PG_EPOCH) // _US


def _text(value: str) -> bytes:
    raw = value.encode()
    return _I32.pack(len(raw)) + raw


def _array(kind: str, values: Sequence[Any]) -> bytes:
    elem = _ELEM[kind]
    size = _ELEM_SIZE[kind]
    cast = float if kind == "float8" else int
    body = b"".join([elem.pack(size - 4, cast(v)) for v in values])
    if any(v is None for v in values):
        raise ValueError("NULL array elements are not supported")
    return _ARRAY_HEAD.pack(20 + len(body), 1, 0, _OID[kind], len(values), 1) + body


def _field(kind: str, value: Any) -> bytes:
    if value is None:
        return _NULL
    if kind == "int8":
        return _INT8.pack(8, int(value))
    if kind == "float8":
        return _FLOAT8.pack(8, float(value))
    if kind == "int4":
        return _INT4.pack(4, int(value))
    if kind == "timestamptz":
        return _INT8.pack(8, timestamp_us(value))
    if kind == "text":
        return _text(value)
    return _array(kind.removesuffix("[]"), value)


_TICK_KINDS = (*TICK_FIXED_TYPES, "text", "text", "text")
_DEPTH_KINDS = (
    "int8", "timestamptz", "int8", "int8", "float8[]", "int8[]", "int4[]", "float8[]",
    "int8[]", "int4[]", "text", "text",
)  # fmt: skip


def _encode_rows(rows: Sequence[Sequence[Any]], order: tuple[int, ...],
                 kinds: tuple[str, ...]) -> bytes:  # fmt: skip
    count = _I16.pack(len(order))
    pairs = list(zip(order, kinds, strict=True))
    out: list[bytes] = []
    for row in rows:
        if len(row) != len(order):
            raise ValueError(f"row has {len(row)} values, expected {len(order)}")
        out.append(count)
        out.extend([_field(kind, row[i]) for i, kind in pairs])
    return b"".join(out)


def encode_tick_rows(rows: Sequence[Sequence[Any]]) -> bytes:
    """COPY tuples for ``md.tick_data`` rows in ``storage.rows.TICK_COLUMNS`` order."""
    return _encode_rows(rows, _TICK_ORDER, _TICK_KINDS)


_BAR_KINDS = (
    "int4", "text", "text", "int8", "timestamptz", "text", "float8", "float8", "float8",
    "float8", "int8", "int4", "float8", "int8", "text", "int4",
)  # fmt: skip


def encode_bar_rows(rows: Sequence[Sequence[Any]]) -> bytes:
    """COPY tuples (``COPY_BAR_COLUMNS``) for ``md.intraday_bars`` rows in
    ``storage.rows.BAR_COLUMNS`` order, ``seq`` = their position."""
    return _encode_rows([(i, *row) for i, row in enumerate(rows)],
                        tuple(range(len(_BAR_KINDS))), _BAR_KINDS)  # fmt: skip


def interleave(parts: Sequence[tuple[bytes, npt.NDArray[np.int64], npt.NDArray[np.intp]]],
               total: int) -> bytes:  # fmt: skip
    """Tuples encoded in several runs -> one payload in a given order: each part is
    (tuples, their byte lengths, the position of each in the result); ``total`` tuples."""
    if len(parts) == 1:
        return parts[0][0]
    data = b"".join(p[0] for p in parts)
    lengths = np.concatenate([p[1] for p in parts])
    where = np.concatenate([p[2] for p in parts])
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))  # in ``data``
    order = np.empty(total, np.intp)
    order[where] = np.arange(total)  # result position -> tuple
    run_len = lengths[order]
    # byte i of the result comes from starts[tuple] + (i - start of that tuple in the result)
    out_starts = np.cumsum(run_len) - run_len
    index = np.repeat(starts[order] - out_starts, run_len) + np.arange(int(run_len.sum()))
    return np.frombuffer(data, np.uint8)[index].tobytes()


def encode_depth_rows(rows: Sequence[Sequence[Any]]) -> bytes:
    """COPY tuples for ``md.order_book`` rows in ``storage.rows.DEPTH_COLUMNS`` order."""
    return _encode_rows(rows, _DEPTH_ORDER, _DEPTH_KINDS)


def text_suffix(*values: str) -> bytes:
    """The length-prefixed text fields that end a tuple (e.g. exchange, symbol, mode)."""
    return b"".join(_text(v) for v in values)


# -- bulk encoding from columns -----------------------------------------------------------
class TupleEncoder:
    """Encode many tuples of one layout at once: ``fixed`` fields, then a text suffix.

    ``fixed``: (name, kind) with kind ``int8``, ``float8`` (also used for timestamptz
    values already in microseconds: pass them as int8), or an array kind ``float8[N]``,
    ``int8[N]``, ``int4[N]`` (N elements, never NULL).
    """

    def __init__(self, fixed: Sequence[tuple[str, str]]) -> None:
        fields: list[Any] = [("nfields", ">i2")]
        self._scalars: list[str] = []
        self._arrays: list[tuple[str, str, int]] = []
        for name, kind in fixed:
            if "[" in kind:
                elem, n = kind[:-1].split("[")
                size = int(n)
                width = 4 if elem == "int4" else 8
                fields += [(f"{name}_len", ">i4"), (f"{name}_head", ">i4", (5,)),
                           (f"{name}_el", [("l", ">i4"), ("v", f">{'i' if elem != 'float8' else 'f'}{width}")], (size,))]  # fmt: skip
                self._arrays.append((name, elem, size))
            else:
                code = ">f8" if kind == "float8" else ">i8"
                fields += [(f"{name}_len", ">i4"), (name, code)]
                self._scalars.append(name)
        self.nfields = len(fixed)
        self.dtype = np.dtype(fields)
        # byte offset of each scalar's value (its length word is 4 bytes before)
        self._value_at = {name: self.dtype.fields[name][1] for name in self._scalars}  # type: ignore[index]

    def encode_sized(
        self,
        n: int,
        values: dict[str, Any],
        nulls: dict[str, npt.NDArray[np.bool_]],
        suffixes: npt.NDArray[np.bytes_],
        suffix_len: npt.NDArray[np.int64],
        extra_fields: int,
    ) -> tuple[bytes, npt.NDArray[np.int64]]:
        """The tuples (one bytes object) and the byte length of each. ``values[name]``:
        array (or scalar) per fixed field; ``nulls[name]``: rows where that scalar is NULL;
        ``suffixes``: per-row text suffix (fixed-width ``S`` array, the real length in
        ``suffix_len``); ``extra_fields``: fields in the suffix."""
        if n == 0:
            return b"", np.zeros(0, np.int64)
        rec = np.empty(n, self.dtype)
        rec["nfields"] = self.nfields + extra_fields
        for name in self._scalars:
            rec[f"{name}_len"] = 8
            rec[name] = values[name]
        for name, elem, size in self._arrays:
            width = 4 if elem == "int4" else 8
            rec[f"{name}_len"] = 20 + size * (4 + width)
            rec[f"{name}_head"] = (1, 0, _OID[elem], size, 1)
            el = rec[f"{name}_el"]
            el["l"] = width
            el["v"] = values[name]
        width = self.dtype.itemsize
        swidth = suffixes.dtype.itemsize
        mat = np.empty((n, width + swidth), np.uint8)
        mat[:, :width] = rec.view(np.uint8).reshape(n, width)
        mat[:, width:] = suffixes.view(np.uint8).reshape(n, swidth)
        keep = np.empty((n, width + swidth), np.bool_)
        keep[:, :width] = True
        keep[:, width:] = np.arange(swidth) < suffix_len[:, None]
        for name, null in nulls.items():
            if not null.any():
                continue
            at = self._value_at[name]
            mat[null, at - 4 : at] = 0xFF  # length -1
            keep[null, at : at + 8] = False
        return mat[keep].tobytes(), keep.sum(axis=1, dtype=np.int64)


TICK_ENCODER = TupleEncoder(list(zip(COPY_TICK_COLUMNS[:16], TICK_FIXED_TYPES, strict=True)))
DEPTH_ENCODER = TupleEncoder([
    ("instrument_token", "int8"), ("snapshot_timestamp", "int8"),
    ("total_buy_quantity", "int8"), ("total_sell_quantity", "int8"),
    ("bid_prices", "float8[5]"), ("bid_quantities", "int8[5]"), ("bid_orders", "int4[5]"),
    ("ask_prices", "float8[5]"), ("ask_quantities", "int8[5]"), ("ask_orders", "int4[5]"),
])  # fmt: skip
