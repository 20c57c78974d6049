"""Bars as JSON (default), CSV, Parquet or Arrow IPC stream, chosen by ``format=`` or Accept.

Tables are built and encoded by pyarrow. Parquet and Arrow keep typed columns (timestamps
as ``timestamp[us, tz=Asia/Kolkata]``) and carry symbol/exchange/timeframe as schema
metadata; CSV writes timestamps as RFC 3339 strings with ``+05:30``, like the JSON.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from sanic import Request
from sanic.response import HTTPResponse

from api.errors import ApiError
from api.params import arg
from api.responses import Rendered
from market_bridge.queries.bars import BarRow

MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.stream",
}
_BY_MEDIA_TYPE = {media: fmt for fmt, media in MEDIA_TYPES.items()} | {
    "application/x-parquet": "parquet",
    "application/vnd.apache.arrow.file": "arrow",  # we send the stream format; close enough
}
_EXTENSIONS = {"csv": "csv", "parquet": "parquet", "arrow": "arrows"}

BAR_SCHEMA = pa.schema(
    [
        ("timestamp", pa.timestamp("us", tz="Asia/Kolkata")),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.int64()),
        ("trades_count", pa.int64()),
        ("vwap", pa.float64()),
        ("oi", pa.int64()),
        ("provenance", pa.string()),
        ("revision", pa.int64()),
    ]
)


def negotiate(request: Request) -> str:
    """``format=`` wins; else the first supported type of Accept by q; else JSON."""
    fmt = arg(request, "format")
    if fmt is not None:
        key = fmt.lower()
        if key not in MEDIA_TYPES:
            raise ApiError(
                400, "invalid format", f"format={fmt!r}; valid formats: {', '.join(MEDIA_TYPES)}"
            )
        return key
    accept = request.headers.get("accept", "")
    candidates: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media.lower() in _BY_MEDIA_TYPE and quality > 0:
            candidates.append((-quality, position, _BY_MEDIA_TYPE[media.lower()]))
    return min(candidates)[2] if candidates else "json"


def bars_table(bars: Sequence[BarRow], metadata: Mapping[str, str]) -> pa.Table:
    columns = {
        "timestamp": [b.timestamp for b in bars],
        "open": [b.open for b in bars],
        "high": [b.high for b in bars],
        "low": [b.low for b in bars],
        "close": [b.close for b in bars],
        "volume": [b.volume for b in bars],
        "trades_count": [b.trades_count for b in bars],
        "vwap": [b.vwap for b in bars],
        "oi": [b.oi for b in bars],
        "provenance": [b.provenance for b in bars],
        "revision": [b.revision for b in bars],
    }
    schema = BAR_SCHEMA.with_metadata({k: v for k, v in metadata.items()})
    return pa.Table.from_pydict(columns, schema=schema)


def encode(table: pa.Table, fmt: str) -> bytes:
    sink = io.BytesIO()
    if fmt == "csv":
        # RFC 3339 strings, so CSV shows the same "+05:30" timestamps as JSON.
        stamps = [ts.isoformat() if ts else None for ts in table.column("timestamp").to_pylist()]
        index = table.schema.get_field_index("timestamp")
        as_text = table.set_column(index, "timestamp", pa.array(stamps, pa.string()))
        pa_csv.write_csv(as_text, sink)
    elif fmt == "parquet":
        pq.write_table(table, sink)
    elif fmt == "arrow":
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    else:
        raise ValueError(f"not a binary format: {fmt}")
    return sink.getvalue()


def table_rendered(table: pa.Table, fmt: str, filename_stem: str) -> Rendered:
    body = encode(table, fmt)
    safe_stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in filename_stem)
    return Rendered(
        body,
        MEDIA_TYPES[fmt] + ("; charset=utf-8" if fmt == "csv" else ""),
        (
            ("Content-Disposition", f'attachment; filename="{safe_stem}.{_EXTENSIONS[fmt]}"'),
            ("Vary", "Accept"),
        ),
    )


def table_response(table: pa.Table, fmt: str, filename_stem: str) -> HTTPResponse:
    return table_rendered(table, fmt, filename_stem).response()
