"""Benchmark: the simulator's frames through decode -> aggregate -> write, into TimescaleDB.

    .venv/bin/python bench/streaming.py [--seconds 500] [--rate 10000] [--profile]

Uses ``DATABASE_URL`` when set (its md.tick_data, md.intraday_bars, md.order_book and
md.ingest_batches are TRUNCATED: point it at a scratch database), else starts a private
cluster in a temp dir with production (durable) settings and drops it afterwards.

Frames: the simulator's market model, every instrument of its universe (~240) in full mode,
one frame per exchange second (Kite's framing: one binary message with every instrument's
packet), pre-encoded before anything is timed.

The pipeline is what ``market-bridge stream`` runs per frame: ``Collector.handle_frame``
(columnar decode, filters, volume deltas and depth conflation on per-instrument arrays,
``BarAggregator.on_batch`` for all eight timeframes with its vector lane, tick and
order-book rows encoded for binary COPY in bulk) -> ``StorageWriter`` (lanes: two for ticks
(``--tick-lanes``), one for books + bars; write when idle, one transaction per write,
exactly-once batches) plus the
``LivePublisher`` pulling the newest ticks and flushing NOTIFYs every 50 ms. The
baseline does the same decoding and aggregation but writes each frame's rows with
``executemany`` INSERTs in one transaction per frame, awaited before the next frame.

Measured for both, in one run:
- sustained ticks/s: all frames as fast as possible, until the last row is committed;
- tick-to-DB latency p50/p95/p99 at ``--rate`` ticks/s: commit time minus the time the
  frame was due (so queueing counts), per tick, after a ``--warmup`` (1 s: connections,
  the first chunks of each hypertable after the TRUNCATE, caches; a one-off at start);
- aggregation latency: ``BarAggregator.on_tick`` per tick, and ``handle_frame`` per frame.

Depth: the simulator sends one snapshot per instrument per exchange second, Kite several
for liquid instruments; ``--depth-interval 10`` (default) stores one book per 10 exchange
seconds per instrument, so about one depth row per ten ticks as with a real feed at the
1 snapshot/s setting. ``--depth-interval 1`` is the worst case (a row per tick).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psycopg
import support
from psycopg import sql

from market_bridge.aggregation import BarAggregator
from market_bridge.collect import Collector, CollectorOptions, LivePublisher
from market_bridge.collect.messages import display_symbol
from market_bridge.collect.rows import bar_row
from market_bridge.collect.runtime import tune_gc
from market_bridge.collect.spec import Resolution, Subscription
from market_bridge.instruments import (
    Instrument,
    InstrumentIndex,
    parse_instruments_csv,
    upsert_instruments,
)
from market_bridge.kite.codec import decode_frame
from market_bridge.kite.models import IST, Tick
from market_bridge.kite.simulator import SimConfig
from market_bridge.kite.simulator.feed import frames
from market_bridge.kite.simulator.state import SimState
from market_bridge.storage.rows import BAR_COLUMNS, DEPTH_COLUMNS, TICK_COLUMNS, depth_row, tick_row
from market_bridge.storage.writer import StorageWriter

DAY = date(2026, 11, 23)
_TABLES = ("tick_data", "intraday_bars", "order_book", "ingest_batches")
_INSERT_TICK = sql.SQL("INSERT INTO md.tick_data ({}) VALUES ({})").format(
    sql.SQL(", ").join(map(sql.Identifier, TICK_COLUMNS)),
    sql.SQL(", ").join(sql.Placeholder() * len(TICK_COLUMNS)),
)
_INSERT_DEPTH = sql.SQL("INSERT INTO md.order_book ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
    sql.SQL(", ").join(map(sql.Identifier, DEPTH_COLUMNS)),
    sql.SQL(", ").join(sql.Placeholder() * len(DEPTH_COLUMNS)),
)
_UPSERT_BAR = sql.SQL(
    """INSERT INTO md.intraday_bars ({}) VALUES ({})
    ON CONFLICT (exchange, symbol, bar_timestamp, timeframe) DO UPDATE SET
        open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
        volume = EXCLUDED.volume, revision = EXCLUDED.revision"""
).format(
    sql.SQL(", ").join(map(sql.Identifier, BAR_COLUMNS)),
    sql.SQL(", ").join(sql.Placeholder() * len(BAR_COLUMNS)),
)


# -- set-up --------------------------------------------------------------------------------
@contextmanager
def database() -> Iterator[str]:
    """``DATABASE_URL`` when set, else a private cluster with production (durable)
    settings: this bench measures writes."""
    with support.database(os.environ.get("DATABASE_URL"), durable=True, name="bench",
                          prefix="mb-bench-streaming-") as db:  # fmt: skip
        yield db.dsn


@dataclass
class Feed:
    frames: list[bytes]
    ticks: int
    instruments: list[Instrument]


def build_feed(seconds: int) -> Feed:
    state = SimState(SimConfig(session="always"))
    instruments = parse_instruments_csv(state.universe.csv())
    subs = [(i.instrument_token, "full") for i in instruments if i.segment != "INDICES"]
    start = int(datetime.combine(DAY, datetime.min.time(), IST).timestamp()) + 9 * 3600 + 900
    out: list[bytes] = []
    ticks = 0
    for k in range(seconds):
        packets = state.packets.packets(subs, start + k)  # type: ignore[arg-type]
        for frame, count in frames(packets):
            out.append(frame)
            ticks += count
    return Feed(out, ticks, instruments)


def resolution(instruments: Sequence[Instrument]) -> Resolution:
    return Resolution({i.instrument_token: Subscription(i, display_symbol(i)) for i in instruments})


def truncate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(
            sql.SQL(", ").join(sql.Identifier("md", t) for t in _TABLES)))


def pct(values: Sequence[float], q: float) -> float:
    """Percentile ``q`` (0-100) of unsorted ``values``."""
    return support.percentile(sorted(values), q / 100)


# -- the pipeline ---------------------------------------------------------------------------
class NullLive:
    def tick(self, symbol: str, tick: Tick) -> None: ...
    def orderbook(self, symbol: str, tick: Tick) -> None: ...
    def bar(self, symbol: str, update: Any) -> None: ...
    def stats(self, symbol: str, data: dict[str, Any]) -> None: ...
    def status(self, symbol: str, data: dict[str, Any]) -> None: ...


@dataclass
class Result:
    name: str
    ticks_per_s: float = 0.0
    latency_ms: tuple[float, float, float] = (0.0, 0.0, 0.0)
    agg_tick_us_p95: float = 0.0
    frame_ms_p95: float = 0.0
    note: str = ""


async def pipeline_run(dsn: str, feed: Feed, rate: float | None, depth_interval: float,
                       spool: Path, publish: bool,
                       warmup: float = 0.0, tick_lanes: int = 2) -> tuple[float, list[float], list[float]]:  # fmt: skip
    """Returns (ticks/s, per-tick latencies ms after the first ``warmup`` seconds, per-frame
    handle_frame ms)."""
    truncate(dsn)
    writer = StorageWriter(dsn, spool, track_latency=rate is not None, tick_lanes=tick_lanes)
    publisher = LivePublisher(dsn) if publish else None
    collector = Collector("bench", writer, publisher or NullLive(), ws_root="",
                          options=CollectorOptions(max_tick_age=None,
                                                   depth_interval=depth_interval))  # fmt: skip
    collector.open_offline(resolution(feed.instruments), "full")
    await writer.start()
    if publisher is not None:
        await publisher.start()
    waits: list[tuple[int, float]] = []  # (ticks in frame, ms from due time to put)
    frame_ms: list[float] = []
    interval = (len(decode_frame(feed.frames[0])) / rate) if rate else 0.0
    t0 = time.perf_counter()
    next_timer = t0
    for i, frame in enumerate(feed.frames):
        due = t0 + i * interval
        if rate:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        start = time.perf_counter()
        count = collector.handle_frame(frame, datetime.now(IST))
        end = time.perf_counter()
        frame_ms.append((end - start) * 1e3)
        waits.append((count, (end - due) * 1e3 if rate else 0.0))
        if end >= next_timer:
            collector.on_timer(time.time())
            next_timer = end + 0.25
        await asyncio.sleep(0)  # let the writer and the publisher run
    if publisher is not None:
        await publisher.close()
    await writer.close()
    elapsed = time.perf_counter() - t0
    latencies: list[float] = []
    if rate:
        per_tick = iter(writer.latencies_ns)
        skip = int(warmup * rate)
        for count, wait in waits:
            for _ in range(count):
                lat = wait + next(per_tick, 0) / 1e6
                if skip > 0:
                    skip -= 1
                else:
                    latencies.append(lat)
    return feed.ticks / elapsed, latencies, frame_ms


async def baseline_run(dsn: str, feed: Feed, rate: float | None, depth_interval: float,
                       warmup: float = 0.0) -> tuple[float, list[float]]:  # fmt: skip
    """Decode + aggregate as above; each frame's rows INSERTed with executemany, committed
    before the next frame."""
    truncate(dsn)
    index = InstrumentIndex(feed.instruments)
    agg = BarAggregator()
    depth_due: dict[int, float] = {}
    latencies: list[float] = []
    interval = (len(decode_frame(feed.frames[0])) / rate) if rate else 0.0
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        t0 = time.perf_counter()
        for i, frame in enumerate(feed.frames):
            due = t0 + i * interval
            if rate:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            ticks = decode_frame(frame, datetime.now(IST))
            tick_rows, depth_rows, bar_rows = [], [], []
            for tick in ticks:
                inst = index.by_token(tick.instrument_token)
                tick_rows.append(tick_row(tick, inst, None))
                for upd in agg.on_tick(tick):
                    if upd.kind != "forming":
                        bar_rows.append(bar_row(upd.bar, inst))
                t = tick.timestamp.timestamp()  # type: ignore[union-attr]
                if t >= depth_due.get(tick.instrument_token, 0.0):
                    row = depth_row(tick, inst)
                    if row is not None:
                        depth_rows.append(row)
                        depth_due[tick.instrument_token] = t + depth_interval
            async with conn.cursor() as cur:
                await cur.executemany(_INSERT_TICK, tick_rows)
                if depth_rows:
                    await cur.executemany(_INSERT_DEPTH, depth_rows)
                if bar_rows:
                    await cur.executemany(_UPSERT_BAR, bar_rows)
            await conn.commit()
            if rate and due - t0 >= warmup:
                done = (time.perf_counter() - due) * 1e3
                latencies.extend([done] * len(ticks))
        elapsed = time.perf_counter() - t0
    return feed.ticks / elapsed, latencies


def aggregation_latency(feed: Feed) -> list[float]:
    """``BarAggregator.on_tick`` per tick (microseconds), all timeframes."""
    ticks = [t for f in feed.frames for t in decode_frame(f, datetime.now(IST))]
    agg = BarAggregator()
    clock = time.perf_counter_ns
    out: list[float] = []
    for tick in ticks:
        t0 = clock()
        agg.on_tick(tick)
        out.append((clock() - t0) / 1e3)
    return out


# -- main -------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=500, help="exchange seconds of frames")
    ap.add_argument("--rate", type=float, default=10_000, help="ticks/s of the latency runs")
    ap.add_argument("--latency-seconds", type=float, default=6.0, help="length of latency runs")
    ap.add_argument("--warmup", type=float, default=1.0,
                    help="seconds at the start of latency runs left out of the figures")
    ap.add_argument("--depth-interval", type=float, default=10.0)
    ap.add_argument("--no-publish", action="store_true", help="leave out the live publisher")
    ap.add_argument("--tick-lanes", type=int, default=2,
                    help="writer connections for ticks (StorageWriter's default: 2)")
    ap.add_argument("--no-gc-tuning", action="store_true",
                    help="leave CPython's GC as it is (default: gc.freeze() after set-up and a "
                         "gen-0 threshold of 50,000, as the streaming service does)")
    ap.add_argument("--profile", action="store_true", help="cProfile the pipeline's sustained run")
    args = ap.parse_args()

    t = time.perf_counter()
    feed = build_feed(args.seconds)
    print(f"frames: {len(feed.frames)} x ~{feed.ticks // len(feed.frames)} full-mode packets = "
          f"{feed.ticks} ticks (encoded in {time.perf_counter() - t:.1f} s)")  # fmt: skip
    n_latency = max(1, int(args.rate * (args.latency_seconds + args.warmup)
                           / (feed.ticks / len(feed.frames))))  # fmt: skip
    latency_feed = Feed(feed.frames[:n_latency], 0, feed.instruments)
    latency_feed.ticks = sum(len(decode_frame(f)) for f in latency_feed.frames)

    agg_us = aggregation_latency(feed)
    if not args.no_gc_tuning:
        tune_gc()  # as StreamingService.run does after start-up
    with database() as dsn, tempfile.TemporaryDirectory() as spool_root:
        with psycopg.connect(dsn) as conn:
            upsert_instruments(conn, feed.instruments)
        publish = not args.no_publish
        spool = Path(spool_root)

        def run(coro_fn: Callable[[], Any]) -> Any:
            return asyncio.run(coro_fn())

        prof = cProfile.Profile() if args.profile else None
        if prof:
            prof.enable()
        tps, _, frame_ms = run(lambda: pipeline_run(dsn, feed, None, args.depth_interval,
                                                     spool / "a", publish,
                                                     tick_lanes=args.tick_lanes))  # fmt: skip
        if prof:
            prof.disable()
        _, lat, lat_frame_ms = run(lambda: pipeline_run(
            dsn, latency_feed, args.rate, args.depth_interval, spool / "b", publish, args.warmup,
            args.tick_lanes))
        base_tps, _ = run(lambda: baseline_run(dsn, feed, None, args.depth_interval))
        _, base_lat = run(lambda: baseline_run(dsn, latency_feed, args.rate, args.depth_interval,
                                               args.warmup))
        with psycopg.connect(dsn) as conn:
            version = conn.execute("SELECT extversion FROM pg_extension "
                                   "WHERE extname = 'timescaledb'").fetchone()  # fmt: skip

    ours = Result("pipeline (COPY, batched)", tps,
                  (pct(lat, 50), pct(lat, 95), pct(lat, 99)), pct(agg_us, 95),
                  pct(lat_frame_ms, 95))  # fmt: skip
    base = Result("baseline (executemany INSERT)", base_tps,
                  (pct(base_lat, 50), pct(base_lat, 95), pct(base_lat, 99)), pct(agg_us, 95))
    print(f"TimescaleDB {version[0] if version else '?'}; "
          f"{'DATABASE_URL' if os.environ.get('DATABASE_URL') else 'private durable cluster'}; "
          f"live publisher {'on' if publish else 'off'}; depth every {args.depth_interval:g} s; "
          f"{args.tick_lanes} tick lane(s); "
          f"gc tuning {'off' if args.no_gc_tuning else 'on'}")
    print(f"{'':32}{'ticks/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for r in (ours, base):
        p50, p95, p99 = r.latency_ms
        print(f"{r.name:32}{r.ticks_per_s:>10,.0f}{p50:>9.2f}{p95:>9.2f}{p99:>9.2f}")
    print(f"ratio (pipeline / baseline): throughput x{tps / base_tps:.1f}, "
          f"p95 latency x{base.latency_ms[1] / max(ours.latency_ms[1], 1e-9):.1f} lower")
    print(f"aggregation: on_tick p50 {statistics.median(agg_us):.1f} us, p95 {pct(agg_us, 95):.1f} us,"
          f" p99 {pct(agg_us, 99):.1f} us per tick; handle_frame p95 {pct(frame_ms, 95):.2f} ms "
          f"per frame of ~{feed.ticks // len(feed.frames)} ticks (p95 {ours.frame_ms_p95:.2f} ms "
          f"in the paced run)")
    print(f"latency runs at {args.rate:,.0f} ticks/s for {latency_feed.ticks:,} ticks (the first "
          f"{args.warmup:g} s left out); targets: "
          "100,000 ticks/s sustained, tick-to-DB p95 <= 10 ms, aggregation p95 <= 1 ms")
    if prof:
        print("\nprofile of the sustained pipeline run (cumulative, top 25):")
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
