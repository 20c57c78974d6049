"""Queries of the backfill: bars it compares and writes, its bookkeeping tables, feed gaps.

One module for the SQL (parameterised, never formatted). Bars are written with the
streaming writer's upsert (``_BAR_UPSERT``), whose provenance rule lets historical bars
replace live ones, never the reverse. Functions take a connection and leave transaction
control to the caller unless they say otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from market_bridge.backfill.ranges import Interval
from market_bridge.instruments import Instrument
from market_bridge.kite.rest import Candle
from market_bridge.market.timeframes import Timeframe
from market_bridge.storage.rows import BAR_COLUMNS
from market_bridge.storage.writer import _BAR_UPSERT

HISTORICAL = "historical"
BAR_UPSERT = _BAR_UPSERT
assert BAR_COLUMNS[-2:] == ("provenance", "revision")  # bar_row below follows this order

_EXISTING_BARS = """
SELECT bar_timestamp, open, high, low, close, volume, oi, provenance
  FROM md.intraday_bars
 WHERE exchange = %s AND symbol = %s AND timeframe = %s
   AND bar_timestamp >= %s AND bar_timestamp < %s
"""
_BAR_TIMESTAMPS = """
SELECT bar_timestamp FROM md.intraday_bars
 WHERE exchange = %s AND symbol = %s AND timeframe = %s
   AND bar_timestamp >= %s AND bar_timestamp < %s
 ORDER BY bar_timestamp
"""
_SYMBOLS_WITH_BARS = """
SELECT DISTINCT exchange, symbol FROM md.intraday_bars
 WHERE timeframe = %s AND bar_timestamp >= %s AND bar_timestamp < %s
 ORDER BY exchange, symbol
"""
_DONE_STRETCHES = """
SELECT w.exchange, w.symbol, w.covered_start, w.covered_end
  FROM md.backfill_windows w
  JOIN unnest(%s::text[], %s::text[]) AS k(exchange, symbol)
       ON k.exchange = w.exchange AND k.symbol = w.symbol
 WHERE w.timeframe = %s AND w.covered_end > %s AND w.covered_start < %s
"""
_INSERT_RUN = """
INSERT INTO md.backfill_runs (run_id, kind, timeframe, range_start, range_end, symbols, forced)
VALUES (%s, %s, %s, %s, %s, %s, %s)
"""
_FINISH_RUN = """
UPDATE md.backfill_runs
   SET status = %s, requests = %s, bars_written = %s, bars_unchanged = %s, errors = %s,
       message = %s, stats = %s, finished_at = now()
 WHERE run_id = %s
"""
_INSERT_STRETCH = """
INSERT INTO md.backfill_windows (run_id, exchange, symbol, timeframe, request_start,
    request_end, covered_start, covered_end, bars_received, bars_written)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
_OPEN_FEED_GAPS = """
SELECT id, collector, symbols, gap_start, gap_end FROM md.feed_gaps
 WHERE filled_at IS NULL AND gap_end IS NOT NULL AND gap_start < %s AND gap_end > %s
 ORDER BY gap_start
"""
_CLOSE_FEED_GAPS = """
UPDATE md.feed_gaps SET filled_at = now() WHERE id = ANY(%s) AND filled_at IS NULL
"""
_COLLECTOR_MEMBERS = "SELECT symbols, watchlists FROM md.collectors WHERE name = %s"
_ACTIVE_COLLECTOR_MEMBERS = """
SELECT symbols, watchlists FROM md.collectors
 WHERE desired_state = 'running' OR auto_start ORDER BY name
"""
_BACKFILL_TABLE = "SELECT to_regclass('md.backfill_windows') IS NOT NULL"


class SchemaMissing(RuntimeError):
    pass


def require_schema(conn: psycopg.Connection) -> None:
    row = conn.execute(_BACKFILL_TABLE).fetchone()
    if not row or not row[0]:
        raise SchemaMissing(
            "the database has no backfill tables (migration 0005): run `market-bridge migrate`"
        )


# ---- bars ---------------------------------------------------------------------------------


def bar_row(inst: Instrument, timeframe: Timeframe, candle: Candle) -> tuple[Any, ...]:
    return (
        inst.exchange, inst.tradingsymbol, inst.instrument_token, candle.start, timeframe.name,
        candle.open, candle.high, candle.low, candle.close, candle.volume, None, None,
        candle.oi, HISTORICAL, 0,
    )


@dataclass(frozen=True, slots=True)
class WriteCounts:
    new: int = 0
    updated: int = 0  # a different historical bar, or a live bar replaced
    unchanged: int = 0  # identical historical bar already stored: not written

    @property
    def written(self) -> int:
        return self.new + self.updated


def write_candles(
    conn: psycopg.Connection,
    inst: Instrument,
    timeframe: Timeframe,
    candles: Sequence[Candle],
    span: Interval,
) -> WriteCounts:
    """Upsert ``candles`` (all inside ``span``) as historical bars, skipping identical ones.

    Comparing first (rather than upserting everything) keeps a repeated backfill from
    rewriting, and bloating, months of unchanged rows, and lets it report "nothing new".
    """
    if not candles:
        return WriteCounts()
    existing = {
        r[0]: r[1:]
        for r in conn.execute(
            _EXISTING_BARS, (inst.exchange, inst.tradingsymbol, timeframe.name, *span)
        ).fetchall()
    }
    rows: list[tuple[Any, ...]] = []
    new = updated = 0
    for c in candles:
        old = existing.get(c.start)
        if old is None:
            new += 1
        elif old == (c.open, c.high, c.low, c.close, c.volume, c.oi, HISTORICAL):
            continue
        else:
            updated += 1
        rows.append(bar_row(inst, timeframe, c))
    if rows:
        with conn.cursor() as cur:
            cur.executemany(BAR_UPSERT, rows)
    return WriteCounts(new, updated, len(candles) - len(rows))


def bar_timestamps(
    conn: psycopg.Connection, inst: Instrument, timeframe: Timeframe, span: Interval
) -> list[datetime]:
    rows = conn.execute(
        _BAR_TIMESTAMPS, (inst.exchange, inst.tradingsymbol, timeframe.name, *span)
    ).fetchall()
    return [r[0] for r in rows]


def symbols_with_bars(
    conn: psycopg.Connection, timeframe: Timeframe, span: Interval
) -> list[str]:
    """``EXCHANGE:SYMBOL`` of every instrument with bars of ``timeframe`` in ``span``."""
    rows = conn.execute(_SYMBOLS_WITH_BARS, (timeframe.name, *span)).fetchall()
    return [f"{r[0]}:{r[1]}" for r in rows]


# ---- runs and done stretches --------------------------------------------------------------


def done_stretches(
    conn: psycopg.Connection, instruments: Iterable[Instrument], timeframe: Timeframe,
    span: Interval,
) -> dict[str, list[Interval]]:
    """Recorded stretches overlapping ``span``, keyed by ``Instrument.key``."""
    insts = list(instruments)
    if not insts:
        return {}
    rows = conn.execute(
        _DONE_STRETCHES,
        ([i.exchange for i in insts], [i.tradingsymbol for i in insts], timeframe.name,
         span[0], span[1]),
    ).fetchall()
    out: dict[str, list[Interval]] = {}
    for exchange, symbol, start, end in rows:
        out.setdefault(f"{exchange}:{symbol}", []).append((start, end))
    return out


def start_run(
    conn: psycopg.Connection, kind: str, timeframe: Timeframe, span: Interval,
    symbols: Sequence[str], forced: bool,
) -> uuid.UUID:
    run_id = uuid.uuid4()
    conn.execute(_INSERT_RUN, (run_id, kind, timeframe.name, span[0], span[1], list(symbols),
                               forced))
    conn.commit()
    return run_id


def finish_run(
    conn: psycopg.Connection, run_id: uuid.UUID, status: str, requests: int,
    bars_written: int, bars_unchanged: int, errors: int, message: str | None,
    stats: dict[str, Any],
) -> None:
    conn.execute(_FINISH_RUN, (status, requests, bars_written, bars_unchanged, errors, message,
                               Jsonb(stats), run_id))
    conn.commit()


def record_stretch(
    conn: psycopg.Connection, run_id: uuid.UUID, inst: Instrument, timeframe: Timeframe,
    request: Interval, covered: Interval, received: int, written: int,
) -> None:
    conn.execute(_INSERT_STRETCH, (run_id, inst.exchange, inst.tradingsymbol, timeframe.name,
                                   request[0], request[1], covered[0], covered[1], received,
                                   written))


# ---- feed gaps ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedGap:
    id: int
    collector: str
    symbols: tuple[str, ...]  # empty: every symbol of the collector
    start: datetime
    end: datetime


def open_feed_gaps(conn: psycopg.Connection, span: Interval) -> list[FeedGap]:
    rows = conn.execute(_OPEN_FEED_GAPS, (span[1], span[0])).fetchall()
    return [FeedGap(r[0], r[1], tuple(r[2] or ()), r[3], r[4]) for r in rows]


def collector_members(conn: psycopg.Connection, collector: str) -> tuple[list[str], list[str]]:
    """(symbols, watchlists) configured for ``collector``; empty when it is unknown."""
    row = conn.execute(_COLLECTOR_MEMBERS, (collector,)).fetchone()
    if row is None:
        return [], []
    return list(row[0] or ()), list(row[1] or ())


def active_collector_members(conn: psycopg.Connection) -> tuple[list[str], list[str]]:
    """Symbols and watchlists of collectors that run (or start automatically)."""
    symbols: dict[str, None] = {}
    watchlists: dict[str, None] = {}
    for syms, wls in conn.execute(_ACTIVE_COLLECTOR_MEMBERS).fetchall():
        symbols.update(dict.fromkeys(syms or ()))
        watchlists.update(dict.fromkeys(wls or ()))
    return list(symbols), list(watchlists)


def close_feed_gaps(conn: psycopg.Connection, ids: Sequence[int]) -> int:
    if not ids:
        return 0
    cur = conn.execute(_CLOSE_FEED_GAPS, (list(ids),))
    return cur.rowcount
