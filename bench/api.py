"""REST API latency and throughput on a year of 1m bars, against the same SQL run directly.

    .venv/bin/python bench/api.py [--symbols 50] [--days 365] [--duration 10]
                                  [--concurrency 1,4,16] [--workers 1,2] [--client raw|httpx]
                                  [--bar-cache on|off|on,off]
                                  [--load-connections 2] [--chunk-interval INTERVAL]
                                  [--database-url URL [--reuse-data]]
    .venv/bin/python bench/api.py --symbols 5 --days 30 --duration 3 --workers 1   # quick

Set-up: unless ``--database-url`` (default: ``DATABASE_URL``) is given, a throwaway
TimescaleDB cluster in a temp dir (fsync off, as the tests' cluster), migrated. With a
URL, the bench symbols' 1m bars in the loaded window are DELETED and replaced: point it at
a scratch database. Bars: every NSE trading minute (``market.calendar``: 375 a normal day)
of the trading days in the last ``--days`` calendar days before today, for ``--symbols``
symbols (NIFTY50 members first): 50 x ~250 x 375 = ~4.7 million rows. Generated with numpy
(a random walk per symbol) straight into PostgreSQL's binary COPY format, loaded over
``--load-connections`` connections; the load rate is printed (rows/s and MiB/s of COPY
data; it includes both indexes and chunk routing), then ``VACUUM (ANALYZE)``: what
autovacuum would otherwise do to the fresh rows during the first measurements. The bars
go into chunks of the migrated interval (30 days, migration 0007), or of
``--chunk-interval`` (e.g. ``'1 day'``: an install whose bars were stored before 0007).
``--reuse-data`` (with a URL) skips the load when the window already holds every row.

Measured, for each ``--workers`` count: the API (``api.server.serve(workers=W)``, the
production entry point, in a subprocess), driven from a SECOND process (asyncio, one
keep-alive connection per request in flight: a minimal HTTP/1.1 client by default, which
takes a fraction of httpx's CPU per request, or ``--client httpx`` for ``httpx.AsyncClient``;
``--concurrency`` requests in flight, symbols round robin; each concurrency level in turn:
1 gives the latency of a request alone, 4 a few clients at once (a dashboard and a
strategy or two), 16 a loaded server, where queueing adds to it) for ``--duration``
seconds per endpoint, after a warm-up (see below):

    bars          GET /intraday/bars/SYM?limit=1000       the latest 1000 bars, JSON
    bars-ranges   GET /intraday/bars/SYM?limit=1000&to=T  T: a minute earlier for every
                  request (15:29 of D, then back), so no two requests of a run ask the same
    latest        GET /intraday/latest/SYM
    completeness  GET /intraday/completeness/SYM?from=D&to=D   (D: the last loaded day)

The bar cache (api.bar_cache, docs/api.md): ``--bar-cache on`` (the default) runs the API
as installed, with the cache; ``off`` with MB_API_BAR_CACHE_MB=0; ``on,off`` both, one
after the other. With the cache, ``bars`` and ``latest`` repeat the same 50 requests, so
after the warm-up every one of them is a HIT: those rows measure serving a cached answer
(a round trip on the worker's LISTEN connection, then the stored bytes), not the query.
``bars-ranges`` asks something new each time: every request is a MISS, which measures
the query and rendering plus what the cache adds to a miss (the generation check and
keeping the answer; older answers are evicted at MB_API_BAR_CACHE_MB). ``completeness``
is not cached (it depends on the clock). The "hits" column gives the share of each run's
requests (warm-up included) answered from the cache, read from the worker's /metrics
(1 worker only). Nothing writes bars during the runs, so nothing is invalidated.

Baseline, in the same run and also from a second process: the database work of each
endpoint (the same ``market_bridge.queries`` functions, so the same SQL and row decoding:
the symbol check, then the bars (up to T for bars-ranges) / latest bar / bar labels of
day D; never cached) on the pool one API worker has (``api.db.make_pool`` with the
default ``ApiOptions``: 1..10 connections), same concurrency, duration and warm-up. API /
baseline = what HTTP, Sanic, validation, the calendar and JSON encoding add to the
database work (or, for cache hits, what serving the stored answer costs instead).

Warm-up: at least 1 s and ``WARM_CALLS`` (20) requests per client task, so that every
pooled connection has run each statement more than ~11 times: psycopg prepares a
statement after 5 executions, and PostgreSQL may use a generic plan for a prepared
statement after 5 custom plans. (The bar queries with a recent time bound are sent
unprepared on purpose: planned with the bound's value, they open only the recent chunks;
``market_bridge.queries.bars``.) The steady state of a long-running server is measured,
not the first requests of its connections.

EXPLAIN: for one symbol, planning and execution time, chunks in the plan and shared
buffers of each query the three endpoints run, as the API sends it (unprepared with its
recent bound, or prepared), and of the unbounded fallbacks that run only when the recent
window holds too little.

Latency is per request (send to last body byte) in the client process, counted for the
requests that start and end inside the measured window; requests/s = those / duration.
CPU columns: seconds used during the window by the API processes, PostgreSQL (local
cluster only) and the client process, as % of one core; on a small machine all three
share the cores, so a busy client inflates the latencies it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing as mp
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

# This file is bench/api.py: the repository root goes first, so that "import api" finds
# the package and not this script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import numpy as np
import psycopg
from psycopg import sql as pgsql
from psycopg_pool import AsyncConnectionPool
from support import Database, api_process, cpu_seconds, database, percentile

from api.db import make_pool
from api.options import ApiOptions
from market_bridge.kite.models import IST
from market_bridge.market.calendar import TradingCalendar, expected_bar_starts
from market_bridge.market.timeframes import TIMEFRAMES
from market_bridge.queries.bars import RECENT_WINDOW, recent_window

ROOT = Path(__file__).resolve().parents[1]
ENDPOINTS = ("bars", "bars-ranges", "latest", "completeness")
RANGE_STEP = timedelta(minutes=1)  # bars-ranges: each request's ``to`` is this much earlier
RANGE_RUN = 20_000  # request numbers per bars-ranges run: its ``to``s (~14 days) are its own
WARM_CALLS = 20
TARGET_P95_MS = 20.0
BASELINE = "baseline SQL"
PG_EPOCH_US = 946_684_800 * 1_000_000
IST_OFFSET_US = 19_800 * 1_000_000  # 2000-01-01T00:00:00Z in Unix microseconds
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
COLUMNS = ("exchange", "symbol", "instrument_token", "bar_timestamp", "timeframe", "open",
           "high", "low", "close", "volume", "trades_count", "vwap", "provenance",
           "revision")  # fmt: skip


# ---- data --------------------------------------------------------------------------


def bench_symbols(n: int) -> list[str]:
    from market_bridge.watchlists import get_watchlist

    names: list[str] = []
    for wl in ("NIFTY50", "NIFTYNEXT50"):
        names += [s for s in get_watchlist(wl).symbols if s not in names and ":" not in s]
    names += [f"BENCH{i:04d}" for i in range(max(0, n - len(names)))]
    return names[:n]


def trading_minutes(calendar: TradingCalendar, days: int) -> tuple[np.ndarray, date]:
    """Unix microseconds of every 1m bar label of the trading days in the last ``days``
    calendar days before today, and the last of those days."""
    last = calendar.previous_trading_day(datetime.now(IST).date())
    first = last - timedelta(days=days - 1)
    start = datetime.combine(first, datetime.min.time(), IST)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), IST)
    stamps = expected_bar_starts(calendar, TIMEFRAMES["1m"], start, end)
    unix_us = np.array([int(ts.timestamp()) * 1_000_000 for ts in stamps], dtype=np.int64)
    return unix_us, last


def copy_rows(symbol: str, token: int, unix_us: np.ndarray, rng: np.random.Generator) -> bytes:
    """One symbol's bars as PostgreSQL binary COPY tuples (no header or trailer).

    Every tuple of a symbol has the same layout (fixed-width fields; the text fields have
    the same length), so the tuples are one numpy structured array, big-endian.
    """
    n = len(unix_us)
    sym = symbol.encode()
    layout: list[tuple[str, str]] = [("nfields", ">i2")]
    text = {"exchange": 3, "symbol": len(sym), "timeframe": 2, "provenance": 10}
    kinds = {"instrument_token": ">i8", "bar_timestamp": ">i8", "open": ">f8", "high": ">f8",
             "low": ">f8", "close": ">f8", "volume": ">i8", "trades_count": ">i4",
             "vwap": ">f8", "revision": ">i4"}  # fmt: skip
    for col in COLUMNS:
        layout += [(f"{col}_len", ">i4"), (col, f"S{text[col]}" if col in text else kinds[col])]
    rows = np.empty(n, dtype=np.dtype(layout))
    rows["nfields"] = len(COLUMNS)
    for col in COLUMNS:
        rows[f"{col}_len"] = text[col] if col in text else np.dtype(kinds[col]).itemsize
    rows["exchange"], rows["symbol"], rows["timeframe"] = b"NSE", sym, b"1m"
    rows["provenance"], rows["revision"] = b"historical", 0
    rows["instrument_token"] = token
    rows["bar_timestamp"] = unix_us - PG_EPOCH_US

    # A random walk: ~0.05 % per minute, 2 decimals.
    close = rng.uniform(100, 5000) * np.exp(np.cumsum(rng.normal(0, 5e-4, n)))
    open_ = np.concatenate(([close[0]], close[:-1]))
    spread = np.abs(rng.normal(0, 3e-4, (2, n)))
    high = np.maximum(open_, close) * (1 + spread[0])
    low = np.minimum(open_, close) * (1 - spread[1])
    volume = rng.integers(100, 50_000, n)
    rows["open"], rows["close"] = np.round(open_, 2), np.round(close, 2)
    rows["high"], rows["low"] = np.round(high, 2), np.round(low, 2)
    rows["volume"] = volume
    rows["trades_count"] = np.maximum(1, volume // rng.integers(20, 200, n))
    rows["vwap"] = np.round((high + low + close) / 3, 2)
    return rows.tobytes()


@dataclass
class LoadStats:
    rows: int
    nbytes: int
    seconds: float
    vacuum_seconds: float
    table_mib: float


def loaded_rows(dsn: str, symbols: list[str], unix_us: np.ndarray) -> int:
    bounds = [datetime.fromtimestamp(int(x) / 1e6, IST) for x in (unix_us[0], unix_us[-1])]
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            """SELECT count(*) FROM md.intraday_bars WHERE exchange = 'NSE' AND timeframe = '1m'
               AND symbol = ANY(%s) AND bar_timestamp BETWEEN %s AND %s""",
            (symbols, *bounds),
        ).fetchone()
    return int(row[0]) if row else 0


def load_bars(
    dsn: str,
    symbols: list[str],
    unix_us: np.ndarray,
    connections: int,
    chunk_interval: str | None = None,
) -> LoadStats:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if chunk_interval:  # for the chunks created from now on
            conn.execute(
                "SELECT set_chunk_time_interval('md.intraday_bars', %s::interval)",
                (chunk_interval,),
            )
        conn.execute(
            """INSERT INTO md.instruments (exchange, tradingsymbol, instrument_token, name,
                   instrument_type, segment)
               SELECT 'NSE', s, 900000 + i, s, 'EQ', 'NSE'
               FROM unnest(%s::text[]) WITH ORDINALITY AS u (s, i)
               ON CONFLICT DO NOTHING""",
            (symbols,),
        )
        bounds = [datetime.fromtimestamp(int(x) / 1e6, IST) for x in (unix_us[0], unix_us[-1])]
        conn.execute(
            """DELETE FROM md.intraday_bars WHERE exchange = 'NSE' AND timeframe = '1m'
               AND symbol = ANY(%s) AND bar_timestamp BETWEEN %s AND %s""",
            (symbols, *bounds),
        )
    statement = f"COPY md.intraday_bars ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    sent = [0]
    lock = threading.Lock()

    def one_connection(part: list[tuple[int, str]]) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for i, sym in part:
                data = copy_rows(sym, 900_000 + i, unix_us, np.random.default_rng(i))
                with conn.cursor() as cur, cur.copy(statement) as copy:
                    copy.write(COPY_SIGNATURE)
                    for k in range(0, len(data), 1 << 20):
                        copy.write(data[k : k + (1 << 20)])
                    copy.write(COPY_TRAILER)
                with lock:
                    sent[0] += len(data)

    indexed = list(enumerate(symbols, start=1))
    parts = [indexed[k::connections] for k in range(connections)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        for future in [pool.submit(one_connection, p) for p in parts if p]:
            future.result()
    seconds = time.perf_counter() - t0
    with psycopg.connect(dsn, autocommit=True) as conn:
        t1 = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) md.intraday_bars")
        vacuum = time.perf_counter() - t1
        row = conn.execute("SELECT hypertable_size('md.intraday_bars')").fetchone()
    size = float(row[0]) / 2**20 if row and row[0] is not None else float("nan")
    return LoadStats(len(unix_us) * len(symbols), sent[0], seconds, vacuum, size)


def explain(dsn: str, symbol: str, day: date) -> list[str]:
    """Per query the endpoints run (one symbol): planning and execution time, the chunks
    the plan opens and the shared buffers it touches (EXPLAIN (ANALYZE, BUFFERS)), sent
    the way the API sends it: unprepared (so planned with its values) for the queries with
    a recent bound, prepared (generic plan after 5 executions) for the rest."""
    from market_bridge.queries import query

    now = datetime.now(IST)
    start = datetime.combine(day, datetime.min.time(), IST)
    key = {"exchange": "NSE", "symbol": symbol, "timeframe": "1m"}
    one = {"exchanges": ["NSE"], "symbols": [symbol]}
    bars_since = now - recent_window("1m", 1000)
    queries: list[tuple[str, str, str, dict[str, Any], bool]] = [
        ("every endpoint", "symbols.sql", "listed_symbols", one, True),
        ("bars", "bars.sql", "bars_newest_first",
         key | {"start": bars_since, "end": None, "limit": 1000}, False),
        ("latest", "bars.sql", "latest_bar_since", key | {"since": now - RECENT_WINDOW}, False),
        ("completeness", "bars.sql", "bar_starts",
         key | {"start": start, "end": start + timedelta(days=1)}, False),
        ("fallback: unlisted symbol", "symbols.sql", "stored_symbols", one, True),
        ("fallback: no recent bar", "bars.sql", "latest_bar", key, True),
        ("fallback: too few recent bars", "bars.sql", "bars_newest_first",
         key | {"start": None, "end": None, "limit": 1000}, True),
    ]  # fmt: skip
    out = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'Asia/Kolkata'")
        chunks = conn.execute(
            "SELECT count(*), min(range_end - range_start)"
            " FROM timescaledb_information.chunks"
            " WHERE hypertable_schema = 'md' AND hypertable_name = 'intraday_bars'"
        ).fetchone()
        if chunks:
            out.append(f"md.intraday_bars: {chunks[0]} chunks (interval {chunks[1]})")
        for k, (used_by, filename, name, params, prepared) in enumerate(queries):
            text = query(filename, name).rstrip(";")
            if prepared:  # a server-side prepared statement and its generic plan
                names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", text)))
                for i, param in enumerate(names, start=1):
                    text = text.replace(f"%({param})s", f"${i}")
                stmt = f"mb_explain_{k}"
                conn.execute(f"PREPARE {stmt} AS {text}")
                conn.execute("SET plan_cache_mode = force_generic_plan")
                args = pgsql.SQL(", ").join(pgsql.Literal(params[n]) for n in names)
                run = pgsql.SQL("EXECUTE {} ({})").format(pgsql.Identifier(stmt), args)
                conn.execute(run).fetchall()  # builds the generic plan
                plan = [r[0] for r in conn.execute(
                    pgsql.SQL("EXPLAIN (ANALYZE, BUFFERS, SUMMARY) ") + run)]  # fmt: skip
                conn.execute("RESET plan_cache_mode")
                conn.execute(f"DEALLOCATE {stmt}")
            else:  # planned with its values, as every execution is
                conn.execute(text, params, prepare=False).fetchall()  # warm the cache
                plan = [r[0] for r in conn.execute(
                    f"EXPLAIN (ANALYZE, BUFFERS, SUMMARY) {text}", params, prepare=False)]  # fmt: skip
            times = {ln.split(":")[0].strip(): ln.split(":")[1].strip() for ln in plan
                     if ln.startswith(("Planning Time", "Execution Time"))}  # fmt: skip
            opened = len({w for ln in plan for w in ln.replace("(", " ").split()
                          if w.startswith("_hyper_")})  # fmt: skip
            hits = [ln.split("shared hit=")[1].split()[0] for ln in plan
                    if ln.strip().startswith("Buffers: shared hit=")]  # fmt: skip
            how = "prepared" if prepared else "unprepared"
            out.append(f"{name} ({used_by}; {how}): planning {times.get('Planning Time')}, "
                       f"execution {times.get('Execution Time')}, {opened} chunks in the plan, "
                       f"{hits[0] if hits else '?'} shared buffers")  # fmt: skip
    return out


# ---- the triggers behind the bar cache (--trigger-cost) ------------------------------

TRIGGERS_0010 = ("mb_bars_changed_insert", "mb_bars_changed_update", "mb_bars_changed_delete")
PLPGSQL_NOTIFY = """
CREATE OR REPLACE FUNCTION public.mb_bench_notify_bar() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('mb_bars_changed', OLD.exchange || ':' || OLD.symbol);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('mb_bars_changed', NEW.exchange || ':' || NEW.symbol);
    RETURN NEW;
END $$"""


def _backend_cpu(conn: psycopg.Connection[Any]) -> float:
    """CPU seconds of ``conn``'s backend (/proc: a local server), else wall-clock time."""
    try:
        stat = Path(f"/proc/{conn.info.backend_pid}/stat").read_text()
    except OSError:
        return time.perf_counter()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def trigger_cost(dsn: str, reps: int = 3) -> list[str]:
    """Server CPU per bar written, without migration 0010's triggers, with them, and with
    the same NOTIFY from a PL/pgSQL row trigger (the obvious form, for reference), for the
    three ways bars are written: the streaming writer's merge (binary COPY into its
    staging table, one INSERT ... SELECT ... ON CONFLICT DO UPDATE; 3,000 bars a
    transaction, new bars then revised ones), the backfill's upsert (``executemany`` of
    one INSERT ... ON CONFLICT per bar, a transaction per symbol; 15,000 bars, new then
    changed) and a COPY into the hypertable (150,000 bars). Median of ``reps``."""
    from market_bridge.storage import pgcopy
    from market_bridge.storage.writer import _BAR_MERGE, _BAR_STAGE, _BAR_UPSERT, _COPY_BARS

    base = datetime(2025, 3, 3, 9, 15, tzinfo=IST)

    def bar(sym: str, i: int, price: float, provenance: str = "historical",
            revision: int = 0) -> tuple[Any, ...]:  # fmt: skip
        return ("NSE", sym, 1000, base + timedelta(minutes=i), "1m", price, price + 1,
                price - 1, price, 100, None, None, None, provenance, revision)  # fmt: skip

    def merge(conn: psycopg.Connection[Any], revision: int) -> float:
        conn.execute(_BAR_STAGE)
        cpu = 0.0
        for minute in range(10):
            rows = [bar(f"W{s:04d}", minute, 100.0 + revision, "live", revision)
                    for s in range(3000)]  # fmt: skip
            data = b"".join([pgcopy.HEADER, pgcopy.encode_bar_rows(rows), pgcopy.TRAILER])
            c0 = _backend_cpu(conn)
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(_COPY_BARS) as copy:
                    copy.write(data)
                cur.execute(_BAR_MERGE)
            cpu += _backend_cpu(conn) - c0
        return cpu / 30_000

    def backfill(conn: psycopg.Connection[Any], price: float) -> float:
        c0 = _backend_cpu(conn)
        for s in range(20):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(_BAR_UPSERT, [bar(f"B{s:04d}", i, price) for i in range(750)])
        return (_backend_cpu(conn) - c0) / 15_000

    def copy_in(conn: psycopg.Connection[Any]) -> float:
        statement = f"COPY md.intraday_bars ({', '.join(COLUMNS[:-2])}, oi, provenance, " \
                    "revision) FROM STDIN"  # fmt: skip
        c0 = _backend_cpu(conn)
        with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
            for s in range(20):
                for i in range(7500):
                    copy.write_row(bar(f"C{s:04d}", 20_000 + i, 10.0))
        return (_backend_cpu(conn) - c0) / 150_000

    workloads = ("writer merge, new bars", "writer merge, revised bars",
                 "backfill upsert, new bars", "backfill upsert, changed bars",
                 "COPY into md.intraday_bars")  # fmt: skip
    variants = ("no trigger", "migration 0010", "PL/pgSQL trigger")
    cost: dict[tuple[str, str], list[float]] = {}
    with psycopg.connect(dsn, autocommit=True) as admin:
        definitions = [row[0] for row in admin.execute(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgname = ANY(%s) "
            "AND tgrelid = 'md.intraday_bars'::regclass", (list(TRIGGERS_0010),))]  # fmt: skip
        if len(definitions) != len(TRIGGERS_0010):
            return ["migration 0010's triggers are not there: nothing to compare"]
        try:
            for _ in range(reps):
                for variant in variants:
                    admin.execute("TRUNCATE md.intraday_bars")
                    admin.execute("VACUUM md.intraday_bars")
                    for name in TRIGGERS_0010:
                        admin.execute(pgsql.SQL("DROP TRIGGER IF EXISTS {} ON md.intraday_bars")
                                      .format(pgsql.Identifier(name)))  # fmt: skip
                    admin.execute("DROP TRIGGER IF EXISTS bench_notify ON md.intraday_bars")
                    if variant == "migration 0010":
                        for definition in definitions:
                            admin.execute(definition)
                    elif variant == "PL/pgSQL trigger":
                        admin.execute(PLPGSQL_NOTIFY)
                        admin.execute("CREATE TRIGGER bench_notify AFTER INSERT OR UPDATE OR "
                                      "DELETE ON md.intraday_bars FOR EACH ROW "
                                      "EXECUTE FUNCTION public.mb_bench_notify_bar()")  # fmt: skip
                    with psycopg.connect(dsn, autocommit=True) as conn:
                        results = [merge(conn, 0), merge(conn, 1), backfill(conn, 10.0),
                                   backfill(conn, 11.0), copy_in(conn)]  # fmt: skip
                    for workload, value in zip(workloads, results, strict=True):
                        cost.setdefault((workload, variant), []).append(value)
        finally:  # the triggers as migrated (the database is a throwaway one anyway)
            admin.execute("DROP TRIGGER IF EXISTS bench_notify ON md.intraday_bars")
            admin.execute("DROP FUNCTION IF EXISTS public.mb_bench_notify_bar()")
            for name in TRIGGERS_0010:
                admin.execute(pgsql.SQL("DROP TRIGGER IF EXISTS {} ON md.intraday_bars")
                              .format(pgsql.Identifier(name)))  # fmt: skip
            for definition in definitions:
                admin.execute(definition)
    out = [f"{'server CPU per bar written (us)':<34}" + "".join(f"{v:>20}" for v in variants)]
    for workload in workloads:
        med = [sorted(cost[(workload, v)])[reps // 2] * 1e6 for v in variants]
        out.append(f"{workload:<34}" + "".join(
            f"{m:>12.1f} ({m / med[0] - 1:+4.0%})" if i else f"{m:>20.1f}"
            for i, m in enumerate(med)))  # fmt: skip
    return out


# ---- the API -----------------------------------------------------------------------


@contextmanager
def api_server(
    dsn: str, workers: int, log: Path, bar_cache_mb: str | None = None
) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of ``serve(workers=...)`` in a subprocess, once it answers.
    ``bar_cache_mb``: MB_API_BAR_CACHE_MB ("0": no cache; None: the default)."""
    os.environ.pop("MB_API_BAR_CACHE_MB", None)  # None means the default, not an inherited value
    env = {} if bar_cache_mb is None else {"MB_API_BAR_CACHE_MB": bar_cache_mb}

    def healthy(port: int) -> bool:
        try:
            reply = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2, trust_env=False)
        except httpx.HTTPError:
            return False
        return reply.status_code == 200

    code = f"from api.server import serve; serve(workers={workers})"
    with api_process(dsn, log, code, healthy, env=env) as (port, pid):
        # Every worker must be serving before the first measurement (the warm-up of each
        # run spreads connections over them): give the slower ones time to start.
        time.sleep(1.0 if workers > 1 else 0)
        yield f"http://127.0.0.1:{port}", pid


# ---- load (its own process) --------------------------------------------------------


@dataclass
class LoadSpec:
    endpoint: str
    symbols: list[str]
    day: date
    concurrency: int
    duration: float
    target: str = "api"  # or "sql" (the baseline)
    client: str = "raw"  # api: "raw" (RawHttp) or "httpx"
    warmup: float = 1.0  # seconds, and at least WARM_CALLS requests by every client task
    first_request: int = 0  # numbers requests (bars-ranges: each its own ``to``)
    base: str = ""  # api
    dsn: str = ""  # sql


@dataclass
class LoadResult:
    latencies_us: bytes = b""  # array("q")
    requests: int = 0
    errors: int = 0
    error_sample: list[str] = field(default_factory=list)
    body_bytes: int = 0
    elapsed: float = 0.0
    client_cpu: float = 0.0


def range_end(day: date, n: int) -> datetime:
    """bars-ranges: the ``to`` of request ``n`` (every request of a run has its own: 15:29
    IST of the last loaded day, then a minute earlier for each request)."""
    return datetime.combine(day, datetime.min.time(), IST) + timedelta(hours=15, minutes=29) \
        - n * RANGE_STEP  # fmt: skip


def api_path(endpoint: str, symbol: str, day: date, n: int = 0) -> str:
    sym = quote(symbol, safe="")
    if endpoint == "bars":
        return f"/intraday/bars/{sym}?limit=1000"
    if endpoint == "bars-ranges":
        to = quote(range_end(day, n).isoformat(), safe="")
        return f"/intraday/bars/{sym}?limit=1000&to={to}"
    if endpoint == "latest":
        return f"/intraday/latest/{sym}"
    return f"/intraday/completeness/{sym}?from={day}&to={day}"


class RawHttp:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads Content-Length bodies:
    a fraction of httpx's CPU per request, so that the client takes less of the cores it
    shares with the server (``--client httpx`` to compare)."""

    def __init__(self, base: str) -> None:
        hostport = base.removeprefix("http://").rstrip("/")
        host, _, port = hostport.rpartition(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        request = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n"
        self.writer.write(request.encode())
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                key = name.strip().lower()
                if key == b"content-length":
                    length = int(value)
                elif key == b"transfer-encoding":
                    raise RuntimeError("chunked answers are not supported: use --client httpx")
                elif key == b"connection" and value.strip().lower() == b"close":
                    close = True
            body = await self.reader.readexactly(length)
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def load_process(spec: LoadSpec, measuring: Any, done: Any, results: Any) -> None:
    results.put(asyncio.run(_load(spec, measuring, done)))


async def _load(spec: LoadSpec, measuring: Any, done: Any) -> LoadResult:
    if spec.target == "api" and spec.client == "httpx":
        limits = httpx.Limits(max_connections=spec.concurrency,
                              max_keepalive_connections=spec.concurrency)  # fmt: skip
        async with httpx.AsyncClient(base_url=spec.base, timeout=30, limits=limits,
                                     trust_env=False) as client:  # fmt: skip

            async def call(i: int, n: int, symbol: str) -> tuple[bool, int, str]:
                r = await client.get(api_path(spec.endpoint, symbol, spec.day, n))
                return r.status_code == 200, len(r.content), f"{r.status_code} {r.text[:200]}"

            return await _drive(spec, call, measuring, done)
    if spec.target == "api":
        conns = [RawHttp(spec.base) for _ in range(spec.concurrency)]

        async def raw_call(i: int, n: int, symbol: str) -> tuple[bool, int, str]:
            status, body = await conns[i].get(api_path(spec.endpoint, symbol, spec.day, n))
            return status == 200, len(body), f"{status} {body[:200]!r}"

        try:
            return await _drive(spec, raw_call, measuring, done)
        finally:
            for c in conns:
                c.close()
    # The pool one API worker has (api.db.make_pool, the default ApiOptions): same sizes,
    # same per-connection set-up.
    options = ApiOptions()
    pool = make_pool(spec.dsn, min_size=options.pool_min_size, max_size=options.pool_max_size,
                     timeout=options.pool_timeout)  # fmt: skip
    await pool.open(wait=True)
    try:
        return await _drive(spec, _sql_call(spec, pool), measuring, done)
    finally:
        await pool.close()


def _sql_call(
    spec: LoadSpec, pool: AsyncConnectionPool
) -> Callable[[int, int, str], Awaitable[tuple[bool, int, str]]]:
    """What each endpoint asks the database (same query functions as the API)."""
    from market_bridge.market.symbols import Symbol
    from market_bridge.queries import bars, symbols

    start = datetime.combine(spec.day, datetime.min.time(), IST)
    end = start + timedelta(days=1)

    async def call(i: int, n: int, symbol: str) -> tuple[bool, int, str]:
        async with pool.connection() as conn:
            known = await symbols.is_known(conn, Symbol("NSE", symbol))
            if spec.endpoint in ("bars", "bars-ranges"):
                to = None if spec.endpoint == "bars" else range_end(spec.day, n) + timedelta(
                    microseconds=1)  # the API's exclusive end for an inclusive ``to``
                rows = await bars.bars_in_range(conn, "NSE", symbol, "1m", None, to, 1000)
                return known and len(rows) == 1000, 0, f"{len(rows)} bars"
            if spec.endpoint == "latest":
                row = await bars.latest_bar(conn, "NSE", symbol, "1m")
                return known and row is not None, 0, "no bar"
            starts = await bars.bar_starts(conn, "NSE", symbol, "1m", start, end)
            return known and len(starts) > 0, 0, "no bars"

    return call


async def _drive(
    spec: LoadSpec,
    call: Callable[[int, int, str], Awaitable[tuple[bool, int, str]]],
    measuring: Any,
    done: Any,
) -> LoadResult:
    result = LoadResult()
    latencies = array("q")
    counter = itertools.count(spec.first_request)
    window = [float("inf"), float("inf")]  # perf_counter bounds of the measured window
    calls = [0] * spec.concurrency
    warmed = asyncio.Event()
    stop = False

    async def worker(i: int) -> None:
        while not stop:
            n = next(counter)
            symbol = spec.symbols[n % len(spec.symbols)]
            t0 = time.perf_counter()
            try:
                ok, nbytes, detail = await call(i, n, symbol)
            except Exception as exc:  # counted, and the run goes on
                ok, nbytes, detail = False, 0, f"{type(exc).__name__}: {exc}"
            t1 = time.perf_counter()
            calls[i] += 1
            if calls[i] == WARM_CALLS and min(calls) >= WARM_CALLS:
                warmed.set()
            if window[0] <= t0 and t1 <= window[1]:
                latencies.append(int((t1 - t0) * 1e6))
                result.body_bytes += nbytes
                if not ok:
                    result.errors += 1
                    if len(result.error_sample) < 3:
                        result.error_sample.append(f"{symbol}: {detail}")

    tasks = [asyncio.create_task(worker(i)) for i in range(spec.concurrency)]
    # Warm-up (module docstring): every pooled connection past its statements' first,
    # freshly planned executions.
    await asyncio.sleep(spec.warmup)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(warmed.wait(), 120)
    measuring.set()
    cpu0, window[0] = time.process_time(), time.perf_counter()
    window[1] = window[0] + spec.duration
    await asyncio.sleep(spec.duration)
    result.client_cpu = time.process_time() - cpu0
    result.elapsed = time.perf_counter() - window[0]
    done.set()
    stop = True
    await asyncio.gather(*tasks)
    result.latencies_us = latencies.tobytes()
    result.requests = len(latencies)
    return result


# ---- runs and report ---------------------------------------------------------------


@dataclass
class Row:
    label: str
    endpoint: str
    concurrency: int
    result: LoadResult
    api_cpu: float
    db_cpu: float
    hit_share: float | None = None  # of the run's cacheable requests (warm-up included)

    def lat_ms(self) -> list[float]:
        a = array("q")
        a.frombytes(self.result.latencies_us)
        return sorted(x / 1000 for x in a)

    def pct(self, q: float) -> float:
        return percentile(self.lat_ms(), q)

    def rate(self) -> float:
        return self.result.requests / self.result.elapsed if self.result.elapsed else 0.0


def run_load(spec: LoadSpec, api_pid: int | None, db: Database) -> tuple[LoadResult, float, float]:
    """The load process's result, and the API's and PostgreSQL's CPU seconds meanwhile."""
    ctx = mp.get_context("spawn")
    measuring, done, results = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=load_process, args=(spec, measuring, done, results))
    proc.start()
    timeout = spec.warmup + spec.duration + 240
    if not measuring.wait(timeout):
        proc.kill()
        raise SystemExit(f"the load process did not start ({spec.target} {spec.endpoint})")
    api0, db0 = cpu_seconds(api_pid), cpu_seconds(db.postgres_pid)
    done.wait(timeout)
    api1, db1 = cpu_seconds(api_pid), cpu_seconds(db.postgres_pid)
    result: LoadResult = results.get(timeout=120)
    proc.join(30)
    return result, api1 - api0, db1 - db0


def cache_counters(base: str) -> tuple[float, float]:
    """(hits, misses) of the bar cache, from /metrics (one worker's: exact with 1 worker)."""
    text = httpx.get(f"{base}/metrics", timeout=10, trust_env=False).text
    found = dict(re.findall(r"^mb_api_bar_cache_(hits|misses)_total (\S+)$", text, re.M))
    return float(found.get("hits", 0)), float(found.get("misses", 0))


def sanity_check(base: str, symbol: str, day: date) -> str:
    with httpx.Client(base_url=base, timeout=30, trust_env=False) as client:
        bars = client.get(api_path("bars", symbol, day)).json()
        latest = client.get(api_path("latest", symbol, day)).json()
        quality = client.get(api_path("completeness", symbol, day)).json()
    return (f"{symbol}: bars count {bars.get('count')} (last {bars['bars'][-1]['timestamp']}), "
            f"latest {latest['bar']['timestamp']}, completeness of {day} "
            f"{quality.get('completeness')} % ({quality.get('actual')}/{quality.get('expected')})")  # fmt: skip


def print_table(rows: list[Row]) -> None:
    print(f"\n{'target':<22} {'endpoint':<13} {'conc':>4} {'req/s':>7} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>6} {'KiB/req':>7} "
          f"{'CPU api':>7} {'CPU db':>6} {'CPU client':>10} {'hits':>5}")  # fmt: skip
    for r in rows:
        el = r.result.elapsed or 1.0
        kib = r.result.body_bytes / 1024 / max(r.result.requests, 1)
        api = "-" if r.api_cpu != r.api_cpu else f"{r.api_cpu / el:.0%}"
        dbc = "-" if r.db_cpu != r.db_cpu else f"{r.db_cpu / el:.0%}"
        hit = "-" if r.hit_share is None else f"{r.hit_share:.0%}"
        print(f"{r.label:<22} {r.endpoint:<13} {r.concurrency:>4} {r.rate():>7,.0f} "
              f"{r.pct(0.5):>8.2f} {r.pct(0.95):>8.2f} {r.pct(0.99):>8.2f} {r.pct(1.0):>8.2f} "
              f"{r.result.errors:>6} {kib:>7.1f} {api:>7} {dbc:>6} "
              f"{r.result.client_cpu / el:>10.0%} {hit:>5}")  # fmt: skip
        for sample in r.result.error_sample:
            print(f"    error: {sample}")
    print("(conc = requests in flight; CPU as % of one core during the measured window; hits ="
          " share of the run's bars/latest requests, warm-up included, answered from the bar"
          " cache: 1 worker only)")


def print_ratios(rows: list[Row]) -> None:
    base = {(r.endpoint, r.concurrency): r for r in rows if r.label == BASELINE}
    print(f"\nAPI / baseline (the same SQL on the same pool, from the client process), and the "
          f"p95 target (<= {TARGET_P95_MS:g} ms):")  # fmt: skip
    for r in rows:
        b = base.get((r.endpoint, r.concurrency))
        if r.label == BASELINE or b is None:
            continue
        verdict = "meets" if r.pct(0.95) <= TARGET_P95_MS else "MISSES"
        print(f"  {r.label:<22} {r.endpoint:<13} conc {r.concurrency:>3}:  "
              f"p50 x{r.pct(0.5) / b.pct(0.5):.1f}  p95 x{r.pct(0.95) / b.pct(0.95):.1f}  "
              f"req/s x{r.rate() / b.rate():.2f}   p95 {r.pct(0.95):.1f} ms {verdict} the target")  # fmt: skip


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--days", type=int, default=365, help="calendar days of 1m bars")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    ap.add_argument("--concurrency", default="1,4,16",
                    help="requests in flight; several levels: 1,4,16")  # fmt: skip
    ap.add_argument("--workers", default="1,2", help="API worker counts to run, e.g. 1 or 1,2")
    ap.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="HTTP client of the load process (raw: minimal keep-alive HTTP/1.1)",
    )
    ap.add_argument("--endpoints", default=",".join(ENDPOINTS),
                    help=f"endpoints to measure, of {','.join(ENDPOINTS)}")  # fmt: skip
    ap.add_argument("--bar-cache", default="on",
                    help="the API's bar cache: on (MB_API_BAR_CACHE_MB's default), off (0), or "
                    "on,off (both, one after the other)")  # fmt: skip
    ap.add_argument("--trigger-cost", action="store_true",
                    help="only measure what migration 0010's triggers cost bar writes, in a "
                    "throwaway cluster (see trigger_cost)")  # fmt: skip
    ap.add_argument("--load-connections", type=int, default=2, help="parallel COPY streams")
    ap.add_argument("--chunk-interval", default=None,
                    help="chunk interval for the loaded bars, e.g. '1 day' (as before migration "
                    "0007); default: the migrated one (30 days)")  # fmt: skip
    ap.add_argument("--reuse-data", action="store_true",
                    help="with --database-url: skip the load when the bars are already there")
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                    help="use this database (bench symbols' bars are replaced) instead of a "
                    "temp cluster")  # fmt: skip
    args = ap.parse_args()
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    if not endpoints or set(endpoints) - set(ENDPOINTS):
        ap.error(f"--endpoints: some of {','.join(ENDPOINTS)}")
    caches = [c.strip() for c in args.bar_cache.split(",") if c.strip()]
    if not caches or set(caches) - {"on", "off"}:
        ap.error("--bar-cache: on, off or on,off")

    if args.trigger_cost:
        print(f"load average at start: {_loadavg()} ({os.cpu_count()} CPUs)")
        with database(None, prefix="mb-bench-api-") as db:
            for line in trigger_cost(db.dsn):
                print(line)
        print(f"load average at the end: {_loadavg()}")
        return

    calendar = TradingCalendar()
    unix_us, last_day = trading_minutes(calendar, args.days)
    symbols = bench_symbols(args.symbols)
    ndays = len(np.unique((unix_us + IST_OFFSET_US) // 86_400_000_000))
    print(f"load average at start: {_loadavg()} ({os.cpu_count()} CPUs)")
    print(f"{len(symbols)} symbols x {len(unix_us):,} 1m bars ({ndays} trading days up to "
          f"{last_day}) = {len(symbols) * len(unix_us):,} rows")  # fmt: skip
    logs = Path(tempfile.mkdtemp(prefix="mb-bench-api-logs-"))
    failed = False
    with database(args.database_url, prefix="mb-bench-api-") as db:
        if args.reuse_data and loaded_rows(db.dsn, symbols, unix_us) == len(unix_us) * len(symbols):
            print("--reuse-data: the bars are there; not loaded")
        else:
            stats = load_bars(db.dsn, symbols, unix_us, args.load_connections, args.chunk_interval)
            print(f"load: {stats.rows:,} rows in {stats.seconds:.1f} s = {stats.rows / stats.seconds:,.0f} "
              f"rows/s ({stats.nbytes / 2**20 / stats.seconds:,.1f} MiB/s of COPY data, "
              f"{args.load_connections} connections, binary COPY); VACUUM (ANALYZE) {stats.vacuum_seconds:.1f} s;"
              f" table {stats.table_mib:,.0f} MiB with indexes")  # fmt: skip

        print(
            "EXPLAIN (ANALYZE, BUFFERS), each query as the API sends it (unprepared: planned "
            "with its values each time; prepared: the generic plan):"
        )
        for line in explain(db.dsn, symbols[0], last_day):
            print(f"  {line}")
        rows: list[Row] = []

        # bars-ranges: every run asks for ``to``s of its own, within the loaded days (with
        # room for the 1000 bars before each).
        ranges = itertools.count(step=RANGE_RUN)
        wrap = max(RANGE_RUN, (args.days - 15) * 24 * 60)

        def measure(label: str, endpoint: str, conc: int, api_pid: int | None = None,
                    **target: Any) -> None:  # fmt: skip
            first = next(ranges) % wrap if endpoint == "bars-ranges" else 0
            spec = LoadSpec(endpoint=endpoint, symbols=symbols, day=last_day, concurrency=conc,
                            duration=args.duration, first_request=first, **target)  # fmt: skip
            counters = target.get("base") and endpoint != "completeness" and workers_now == 1
            before = cache_counters(target["base"]) if counters else None
            result, api_cpu, db_cpu = run_load(spec, api_pid, db)
            share = None
            if before is not None:
                hits, misses = (a - b for a, b in zip(cache_counters(target["base"]), before,
                                                      strict=True))  # fmt: skip
                share = hits / (hits + misses) if hits + misses else None
            rows.append(Row(label, endpoint, conc, result, api_cpu, db_cpu, share))

        workers_now = 0
        for conc in concurrency:
            for endpoint in endpoints:
                measure(BASELINE, endpoint, conc, target="sql", dsn=db.dsn)
        for w in workers:
            for cache in caches:
                workers_now = w
                log = logs / f"api-{w}-cache-{cache}.log"
                with api_server(db.dsn, w, log, None if cache == "on" else "0") as (base, pid):
                    print(f"API with {w} worker(s), bar cache {cache}: "
                          f"{sanity_check(base, symbols[0], last_day)}")  # fmt: skip
                    for conc in concurrency:
                        for endpoint in endpoints:
                            label = f"API {w} worker{'s' if w > 1 else ''}" + (
                                "" if cache == "on" else ", no cache")
                            measure(label, endpoint, conc, pid, target="api", base=base,
                                    client=args.client)  # fmt: skip
        failed = any(r.result.errors for r in rows)
    print_table(rows)
    print_ratios(rows)
    print(
        f"\nload average at the end: {_loadavg()} (1, 5, 15 min; other work on the machine "
        "slows every figure)"
    )
    if failed:
        print(f"\nsome requests failed; the API's logs are in {logs}")
    else:
        shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()
