"""Reads of ``md.intraday_bars`` (queries in bars.sql).

Ranges are half-open ``[start, end)``; ``None`` means unbounded. Timestamps come back as
aware datetimes in IST.

Recent window first: ``latest_bar`` and ``bars_in_range`` look at the last few days before
they look at everything (``RECENT_WINDOW``, widened for a large ``limit`` or a long
timeframe). Those queries are sent unprepared, so PostgreSQL plans them with the actual
bound and TimescaleDB excludes the older chunks at plan time; a prepared statement's
generic plan would start up every chunk of the hypertable instead. Only when the window
holds too little (no bar, fewer than ``limit``) is the whole range read, which gives the
same answer as reading it at once. The other queries with a lower time bound
(``bar_starts``, ``vwap_series``, ``range_stats`` with a start) are sent unprepared for the
same reason; planning them costs a fraction of a millisecond.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg.abc import Loader
from psycopg.pq import Format
from psycopg.rows import class_row

from market_bridge.kite.models import IST
from market_bridge.market.timeframes import TIMEFRAMES
from market_bridge.queries import query

_FILE = "bars.sql"

# The newest bars are looked for in [now - RECENT_WINDOW, ...) first (module docstring).
RECENT_WINDOW = timedelta(days=7)
_TRADING_MINUTES_PER_DAY = 375  # 09:15-15:30 IST
_WINDOW_SAFETY = 3.0  # calendar days per trading day, with room for holidays

# timestamptz in PostgreSQL's binary format: int64 microseconds since 2000-01-01 00:00 UTC,
# whatever the session's TimeZone. Read with psycopg's C int8 loader (ist_timestamps).
_TIMESTAMPTZ_OID = psycopg.adapters.types["timestamptz"].oid
_int8_binary_loader = psycopg.adapters.get_loader(
    psycopg.adapters.types["int8"].oid, Format.BINARY
)
assert _int8_binary_loader is not None
_INT8_BINARY_LOADER: type[Loader] = _int8_binary_loader
_PG_EPOCH_IST = datetime(2000, 1, 1, tzinfo=UTC).astimezone(IST)
_LABEL_CACHE_SIZE = 100_000  # ~260 trading days of 1m labels; ~20 MB at most
_labels: dict[int, datetime] = {}


@dataclass
class BarRow:
    """One stored bar: the bar of every API answer, with the same keys in the same order
    (orjson serialises it as that JSON object). ``timestamp`` is the bar's start, in IST.

    Not frozen: a frozen dataclass's ``__init__`` costs ~7 times as much, which shows at
    thousands of rows per request. No ``__slots__`` either: orjson serialises a dataclass
    from its ``__dict__`` (in field order) about 3 times as fast as a slotted one, whose
    fields it looks up one by one (~2 ms per 1000 bars)."""

    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    trades_count: int | None
    vwap: float | None
    oi: int | None
    provenance: str
    revision: int

    @property
    def bar_timestamp(self) -> datetime:
        """The column's name for ``timestamp``."""
        return self.timestamp


_Bar = TypeVar("_Bar", bound=BarRow)


def ist_label(pg_micros: int) -> datetime:
    """A binary timestamptz (microseconds since 2000-01-01 UTC) as a datetime in IST, the
    fixed +05:30 offset (India's since 1945; older instants get it too, as every answer
    of the API does).

    Bar labels repeat (the same minutes for every symbol, request after request), so each
    distinct value is converted once and kept: a dict lookup instead of ~1-2 us of
    datetime arithmetic per bar. The cache is dropped when it reaches its size."""
    ts = _labels.get(pg_micros)
    if ts is None:
        if len(_labels) >= _LABEL_CACHE_SIZE:
            _labels.clear()
        try:
            ts = _PG_EPOCH_IST + timedelta(microseconds=pg_micros)
        except OverflowError:  # -infinity/infinity, or outside datetime's years 1-9999
            raise psycopg.DataError(f"timestamp out of range: {pg_micros} us") from None
        _labels[pg_micros] = ts
    return ts


def ist_timestamps(cursor: AsyncCursor[Any]) -> None:
    """Make a binary ``cursor`` return timestamptz columns as their raw microseconds
    (``ist_label`` converts them): psycopg would otherwise build each value in the
    session's time zone (a ZoneInfo: ~1.2 us a value) and orjson would ask that zone for
    its offset again. Call before ``execute``: loaders are chosen when results arrive."""
    cursor.adapters.register_loader(_TIMESTAMPTZ_OID, _INT8_BINARY_LOADER)


def ist_rows(
    cursor: AsyncCursor[Any], make: Callable[..., _Bar]
) -> Callable[[Sequence[Any]], _Bar]:
    """A row maker: ``make(*values)`` with ``timestamp`` (the first column, raw
    microseconds from a cursor set up by ``ist_timestamps``) as an IST datetime."""
    labels = _labels

    def row(values: Sequence[Any]) -> _Bar:
        bar = make(*values)
        bar.timestamp = labels.get(bar.timestamp) or ist_label(bar.timestamp)  # type: ignore[call-overload,arg-type]
        return bar

    return row


def bar_rows(cursor: AsyncCursor[Any]) -> Callable[[Sequence[Any]], BarRow]:
    """Row factory: the bar columns of bars.sql (BarRow's, in order) -> BarRow,
    positionally (no dict per row). For cursors set up by ``ist_timestamps``."""
    return ist_rows(cursor, BarRow)


@dataclass(frozen=True, slots=True)
class RangeStats:
    bar_count: int
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume: int
    vwap: float | None
    first_bar_at: datetime | None
    last_bar_at: datetime | None

    def __post_init__(self) -> None:
        for name in ("first_bar_at", "last_bar_at"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, value.astimezone(IST))


@dataclass(frozen=True, slots=True)
class VwapPoint:
    bar_timestamp: datetime
    close: float
    volume: int
    cumulative_volume: int
    vwap: float | None  # cumulative since IST midnight; None while no volume has traded

    def __post_init__(self) -> None:
        object.__setattr__(self, "bar_timestamp", self.bar_timestamp.astimezone(IST))


@dataclass(frozen=True, slots=True)
class LatestSnapshot:
    symbol: str
    bar_timestamp: datetime
    last_price: float
    previous_close: float | None
    volume: int


def _key(exchange: str, symbol: str, timeframe: str) -> dict[str, Any]:
    return {"exchange": exchange, "symbol": symbol, "timeframe": timeframe}


def recent_window(timeframe: str, limit: int) -> timedelta:
    """How far back ``limit`` bars of ``timeframe`` surely reach when stored without gaps:
    RECENT_WINDOW at least (1000 1m bars are under 3 trading days)."""
    tf = TIMEFRAMES.get(timeframe)
    per_day = 1.0 if tf is None or not tf.is_intraday else _TRADING_MINUTES_PER_DAY / tf.minutes
    days = math.ceil(limit / per_day * _WINDOW_SAFETY)
    return max(RECENT_WINDOW, timedelta(days=days))


async def _bars(
    conn: AsyncConnection[Any], name: str, params: dict[str, Any], *, prepare: bool | None
) -> list[BarRow]:
    # Binary: PostgreSQL sends doubles and timestamps as they are stored instead of
    # formatting them as text (float8out is most of the server's cost for 1000 bars), and
    # psycopg does not parse them.
    async with conn.cursor(row_factory=bar_rows, binary=True) as cur:
        ist_timestamps(cur)
        await cur.execute(query(_FILE, name), params, prepare=prepare)
        return await cur.fetchall()


async def bars_in_range(
    conn: AsyncConnection[Any],
    exchange: str,
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    *,
    now: datetime | None = None,
) -> list[BarRow]:
    """The most recent ``limit`` bars in ``[start, end)``, oldest first.

    Reads a recent window first (module docstring): ``recent_window`` back from ``end``,
    or from ``now`` (default: the wall clock) when ``end`` is None.
    """
    key = _key(exchange, symbol, timeframe) | {"limit": limit}
    anchor = end if end is not None else now or datetime.now(UTC)
    since = anchor - recent_window(timeframe, limit)
    if start is None or since > start:
        newest_first = await _bars(
            conn, "bars_newest_first", key | {"start": since, "end": end}, prepare=False
        )
        if len(newest_first) < limit:  # the window holds too few: read the whole range
            newest_first = await _bars(
                conn, "bars_newest_first", key | {"start": start, "end": end}, prepare=None
            )
    else:  # the range itself is recent
        newest_first = await _bars(
            conn, "bars_newest_first", key | {"start": start, "end": end}, prepare=False
        )
    newest_first.reverse()
    return newest_first


async def latest_bar(
    conn: AsyncConnection[Any],
    exchange: str,
    symbol: str,
    timeframe: str,
    *,
    now: datetime | None = None,
) -> BarRow | None:
    """The newest bar: looked for in the last RECENT_WINDOW before ``now`` (default: the
    wall clock), then in everything."""
    key = _key(exchange, symbol, timeframe)
    since = (now or datetime.now(UTC)) - RECENT_WINDOW
    rows = await _bars(conn, "latest_bar_since", key | {"since": since}, prepare=False)
    if not rows:
        rows = await _bars(conn, "latest_bar", key, prepare=None)
    return rows[0] if rows else None


async def close_before(
    conn: AsyncConnection[Any], exchange: str, symbol: str, timeframe: str, before: datetime
) -> float | None:
    """Close of the last bar strictly before ``before``."""
    params = _key(exchange, symbol, timeframe) | {"before": before}
    async with conn.cursor() as cur:
        await cur.execute(query(_FILE, "close_before"), params)
        row = await cur.fetchone()
    return None if row is None else float(row[0])


async def range_stats(
    conn: AsyncConnection[Any],
    exchange: str,
    symbol: str,
    timeframe: str,
    start: datetime | None,
    end: datetime | None,
) -> RangeStats:
    params = _key(exchange, symbol, timeframe) | {"start": start, "end": end}
    async with conn.cursor(row_factory=class_row(RangeStats)) as cur:
        # Unprepared when bounded below: planned with the bound, only its chunks are opened.
        await cur.execute(query(_FILE, "range_stats"), params, prepare=False if start else None)
        row = await cur.fetchone()
    assert row is not None  # an aggregate without GROUP BY always returns one row
    return row


async def vwap_series(
    conn: AsyncConnection[Any],
    exchange: str,
    symbol: str,
    timeframe: str,
    *,
    day_start: datetime,
    start: datetime,
    end: datetime | None,
    limit: int,
) -> list[VwapPoint]:
    """Cumulative intraday VWAP for the bars in ``[start, end)`` (the most recent ``limit``).

    ``day_start`` is IST midnight of ``start``'s day: the cumulation starts there.
    """
    params = _key(exchange, symbol, timeframe) | {
        "day_start": day_start,
        "start": start,
        "end": end,
        "limit": limit,
    }
    async with conn.cursor(row_factory=class_row(VwapPoint)) as cur:
        await cur.execute(query(_FILE, "vwap_series"), params, prepare=False)  # bounded
        return await cur.fetchall()


async def bar_starts(
    conn: AsyncConnection[Any],
    exchange: str,
    symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
) -> list[datetime]:
    """Labels of the stored bars in ``[start, end)``, in order (for gap detection)."""
    params = _key(exchange, symbol, timeframe) | {"start": start, "end": end}
    async with conn.cursor(binary=True) as cur:
        ist_timestamps(cur)
        await cur.execute(query(_FILE, "bar_starts"), params, prepare=False)  # bounded
        labels = _labels
        return [labels.get(us) or ist_label(us) for (us,) in await cur.fetchall()]


async def latest_snapshots(
    conn: AsyncConnection[Any], exchange: str, symbols: Sequence[str], timeframe: str
) -> list[LatestSnapshot]:
    """Latest close, previous IST day's close and day volume per symbol that has bars."""
    params = {"exchange": exchange, "symbols": list(symbols), "timeframe": timeframe}
    async with conn.cursor(row_factory=class_row(LatestSnapshot)) as cur:
        await cur.execute(query(_FILE, "latest_snapshots"), params)
        return await cur.fetchall()
