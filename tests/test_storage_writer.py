"""The streaming writer against a real TimescaleDB, including a database outage."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from market_bridge.db.cluster import LocalCluster
from market_bridge.kite.models import IST
from market_bridge.storage.writer import StorageWriter

T0 = datetime(2026, 11, 25, 9, 15, tzinfo=IST)


def tick_rows(start: int, n: int) -> list[tuple[Any, ...]]:
    """Distinct ticks: row i has price i, so duplicates and losses are both visible."""
    return [
        ("NSE", "INFY", 408065, T0 + timedelta(milliseconds=i), float(i), 1, i, 1, None,
         None, None, None, None, None, None, None, None, T0, "ltp")
        for i in range(start, start + n)
    ]


def bar_row(close: float, provenance: str, revision: int = 0) -> tuple[Any, ...]:
    return ("NSE", "INFY", 408065, T0, "1m", 1.0, 2.0, 0.5, close, 10, 3, 1.2, None,
            provenance, revision)


def depth_row(i: int) -> tuple[Any, ...]:
    return ("NSE", "INFY", 408065, T0 + timedelta(milliseconds=i), [1.0] * 5, [1] * 5, [1] * 5,
            [2.0] * 5, [1] * 5, [1] * 5, 10, 20)  # fmt: skip


def count_ticks(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT price) FROM md.tick_data").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_writes_ticks_bars_depth_and_provenance_rule(db_url: str, tmp_path: Path) -> None:
    async def go() -> None:
        w = StorageWriter(db_url, tmp_path / "spool")
        await w.start()
        w.put("ticks", tick_rows(0, 5000))
        w.put("bars", [bar_row(1.0, "live")])
        w.put("depth", [("NSE", "INFY", 408065, T0, [1.0] * 5, [1] * 5, [1] * 5, [2.0] * 5,
                         [1] * 5, [1] * 5, 10, 20)])
        await asyncio.sleep(0.3)
        w.put("bars", [bar_row(2.0, "historical")])  # historical replaces live
        await asyncio.sleep(0.3)
        w.put("bars", [bar_row(3.0, "live", revision=5)])  # live never replaces historical
        await w.close()
        assert w.metrics.rows_written == {"ticks": 5000, "bars": 3, "depth": 1}

    asyncio.run(go())
    assert count_ticks(db_url) == (5000, 5000)
    with psycopg.connect(db_url) as conn:
        bars = conn.execute("SELECT close, provenance FROM md.intraday_bars").fetchall()
        depth = conn.execute("SELECT bid_prices FROM md.order_book").fetchall()
    assert bars == [(2.0, "historical")]
    assert depth == [([1.0] * 5,)]


def test_database_outage_loses_nothing_and_duplicates_nothing(
    own_cluster: LocalCluster, tmp_path: Path
) -> None:
    dsn = own_cluster.dsn("mb")
    total = revision = 0

    async def go() -> StorageWriter:
        nonlocal total, revision
        w = StorageWriter(dsn, tmp_path / "spool", max_batch=400, memory_limit=1000,
                          retry_interval=0.1)
        await w.start()
        def step() -> None:  # ticks; a book and a new revision of one bar (the other lane)
            nonlocal total, revision
            w.put("ticks", tick_rows(total, 300))
            w.put("depth", [depth_row(total)])
            w.put("bars", [bar_row(float(revision), "live", revision)])
            total += 300
            revision += 1

        for _ in range(5):  # healthy
            step()
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(own_cluster.stop, "immediate")
        for _ in range(20):  # database down: memory, then spool
            step()
            await asyncio.sleep(0.03)
        assert not w.metrics.db_up
        assert w.metrics.spooled_batches > 0, "memory limit exceeded: should have spooled"
        on_disk = len(list((tmp_path / "spool").glob("*.batch")))
        assert on_disk > 0 and w.metrics.spool_files == on_disk
        await asyncio.to_thread(own_cluster.start)
        for _ in range(5):  # back
            step()
            await asyncio.sleep(0.02)
        await w.close()
        return w

    w = asyncio.run(go())
    assert w.metrics.db_failures > 0 and w.metrics.replayed_batches > 0
    assert count_ticks(dsn) == (total, total)
    with psycopg.connect(dsn) as conn:  # every book once; the bar's revisions in order
        assert conn.execute("SELECT count(*) FROM md.order_book").fetchone() == (30,)
        bars = conn.execute("SELECT close, revision FROM md.intraday_bars").fetchall()
    assert bars == [(float(revision - 1), revision - 1)]
    assert not list((tmp_path / "spool").glob("*.batch"))
    assert w.metrics.spool_files == 0


def test_spool_left_by_a_dead_process_is_replayed_once(
    own_cluster: LocalCluster, tmp_path: Path
) -> None:
    dsn = own_cluster.dsn("mb")
    spool = tmp_path / "spool"
    own_cluster.stop("immediate")

    async def first() -> None:  # database down for its whole life: all spooled at close
        w = StorageWriter(dsn, spool, retry_interval=0.05)
        await w.start()
        w.put("ticks", tick_rows(0, 700))
        await asyncio.sleep(0.2)
        await w.close(timeout=1)

    asyncio.run(first())
    assert len(list(spool.glob("*.batch"))) == 1
    own_cluster.start()

    async def second() -> None:
        w = StorageWriter(dsn, spool)
        assert w.metrics.spool_files == 1  # counted at start, replayed by lane 0
        await w.start()
        w.put("ticks", tick_rows(700, 300))
        await w.close()
        assert w.metrics.spool_files == 0 and w.metrics.replayed_batches == 1

    asyncio.run(second())
    assert count_ticks(dsn) == (1000, 1000)


def test_bar_merge_equals_row_by_row_upserts(db_url: str) -> None:
    """One write's bars go in as one INSERT ... SELECT (``_BAR_MERGE``): the outcome must be
    what ``_BAR_UPSERT`` row by row, in order, gives (the backfill's statement), for bars
    repeated in a write with mixed provenance and revisions, over rows already stored."""
    import random

    from market_bridge.storage import pgcopy
    from market_bridge.storage.writer import _BAR_MERGE, _BAR_STAGE, _BAR_UPSERT, _COPY_BARS

    rng = random.Random(7)
    keys = [("NSE", sym, T0 + timedelta(minutes=k), tf)
            for sym in ("INFY", "TCS") for k in range(3) for tf in ("1m", "5m")]  # fmt: skip

    def row(key: tuple[Any, ...], i: int) -> tuple[Any, ...]:
        ex, sym, ts, tf = key
        prov = "historical" if rng.random() < 0.04 else "live"
        return (ex, sym, 408065 + i, ts, tf, 1.0, 2.0, 0.5, float(i), i, i % 7 or None,
                None if i % 3 else 1.5, None if i % 2 else i, prov, rng.randrange(4))  # fmt: skip

    select = ("SELECT exchange, symbol, bar_timestamp, timeframe, instrument_token, close, "
              "volume, trades_count, vwap, oi, provenance, revision FROM md.intraday_bars "
              "ORDER BY 1, 2, 3, 4")  # fmt: skip
    results = []
    for merge in (False, True):
        rng.seed(7)
        with psycopg.connect(db_url, autocommit=True) as conn:  # a transaction per write
            conn.execute("TRUNCATE md.intraday_bars")
            if merge:
                conn.execute(_BAR_STAGE)
            for _ in range(12):  # writes
                rows = [row(rng.choice(keys), i) for i in range(rng.randrange(1, 30))]
                with conn.transaction(), conn.cursor() as cur:
                    if merge:
                        with cur.copy(_COPY_BARS) as copy:
                            copy.write(pgcopy.HEADER + pgcopy.encode_bar_rows(rows)
                                       + pgcopy.TRAILER)  # fmt: skip
                        cur.execute(_BAR_MERGE)
                    else:
                        cur.executemany(_BAR_UPSERT, rows)
            results.append(conn.execute(select).fetchall())
    for a, b in zip(*results, strict=True):
        assert a == b, (a, b)
    assert results[0] == results[1]
    assert len(results[0]) == len(keys)
    assert {r[-2] for r in results[0]} == {"live", "historical"}
