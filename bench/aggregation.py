"""Micro-benchmark: BarAggregator on synthetic Kite-like ticks, against two baselines.

    .venv/bin/python bench/aggregation.py [--ticks 500000] [--instruments 200]

Ticks carry 1 s exchange timestamps (as Kite's do), cumulative day volume, ~1 % swapped
out of order and ~0.5 % duplicated; ``on_time`` runs once per simulated second.
Throughput is ticks per CPU second of this process (``time.process_time``, on_time
included), so other load on a shared machine does not inflate it; per-tick latency is
wall-clock ``time.perf_counter_ns`` around ``on_tick`` (its tail includes preemption).
Baselines on the same ticks:
``dict-of-lists`` (append per minute, OHLCV computed once at the end: the least a Python
loop can do, no rollups, no out-of-order handling) and ``pandas`` (one batch: frame
construction, volume deltas by groupby-diff, groupby on bar start for every timeframe).
Runs in ~20 s of CPU (longer wall time when the machine is shared).
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

import pandas as pd
from support import percentile

from market_bridge.aggregation import BarAggregator
from market_bridge.kite.models import IST, Tick
from market_bridge.market.timeframes import TIMEFRAMES

SESSION_OPEN = datetime(2026, 3, 2, 9, 15, tzinfo=IST)


def synthetic_ticks(n: int, instruments: int, seed: int = 7) -> list[Tick]:
    rng = random.Random(seed)
    tokens = [256 * (1000 + i) + 1 for i in range(instruments)]
    price = {tok: rng.randint(2_000, 60_000) for tok in tokens}  # in 0.05 steps
    cum = dict.fromkeys(tokens, 0)
    per_second = max(1, instruments // 2)  # ~0.5 ticks/s per instrument
    ticks: list[Tick] = []
    rand = rng.random  # randint/choice cost more than the ticks they describe
    sizes = (0, 1, 5, 10, 25, 100)
    second = 0
    while len(ticks) < n:
        ts = SESSION_OPEN + timedelta(seconds=second)
        for tok in rng.sample(tokens, per_second):
            price[tok] = max(1, price[tok] + int(rand() * 7) - 3)
            cum[tok] += sizes[int(rand() * 6)]
            tick = Tick(
                instrument_token=tok,
                mode="full",
                tradable=True,
                last_price=round(price[tok] * 0.05, 2),
                volume_traded=cum[tok],
                oi=None,
                exchange_timestamp=ts,
            )
            ticks.append(tick)
            r = rand()
            if r < 0.005:
                ticks.append(tick)  # duplicate delivery
            elif r < 0.015 and len(ticks) > 2:
                ticks[-1], ticks[-2] = ticks[-2], ticks[-1]  # reordered packets
        second += 1
    return ticks[:n]


def pctl(sorted_ns: list[int], p: float) -> float:
    """The ``p`` quantile of sorted nanoseconds, in microseconds."""
    return percentile(sorted_ns, p) / 1000.0


def run_aggregator(
    ticks: list[Tick], forming: Iterable[str] | None
) -> tuple[float, list[int], int]:
    agg = BarAggregator(forming=forming)
    lat: list[int] = []
    record = lat.append
    clock = time.perf_counter_ns
    updates = 0
    last_second = ticks[0].exchange_timestamp
    start = time.process_time()
    for tick in ticks:
        ts = tick.exchange_timestamp
        if ts is not None and last_second is not None and ts > last_second:
            updates += len(agg.on_time(ts))  # the service's timer, once per second
            last_second = ts
        t0 = clock()
        out = agg.on_tick(tick)
        record(clock() - t0)
        updates += len(out)
    assert last_second is not None
    updates += len(agg.on_time(last_second + timedelta(days=2)))
    elapsed = time.process_time() - start
    return elapsed, lat, updates


def run_dict_of_lists(ticks: list[Tick]) -> float:
    start = time.process_time()
    groups: dict[tuple[int, int], list[tuple[float, int]]] = {}
    last: dict[int, int] = {}
    for tick in ticks:
        ts = tick.exchange_timestamp
        if ts is None or tick.volume_traded is None:
            continue
        prev = last.get(tick.instrument_token, tick.volume_traded)
        last[tick.instrument_token] = tick.volume_traded
        key = (tick.instrument_token, int(ts.timestamp()) // 60)
        groups.setdefault(key, []).append((tick.last_price, max(0, tick.volume_traded - prev)))
    bars = {
        key: (rows[0][0], max(p for p, _ in rows), min(p for p, _ in rows), rows[-1][0], sum(v for _, v in rows))
        for key, rows in groups.items()
    }  # fmt: skip
    assert bars
    return time.process_time() - start


def run_pandas(ticks: list[Tick]) -> float:
    start = time.process_time()
    df = pd.DataFrame(
        {
            "token": [t.instrument_token for t in ticks],
            "ts": [t.exchange_timestamp for t in ticks],
            "price": [t.last_price for t in ticks],
            "cum": [t.volume_traded for t in ticks],
        }
    )
    df["ts"] = pd.to_datetime(df["ts"])
    df["vol"] = df.groupby("token")["cum"].diff().fillna(0).clip(lower=0)
    df["pv"] = df["price"] * df["vol"]
    origin = pd.Timestamp(SESSION_OPEN)
    for tf in TIMEFRAMES.values():
        if tf.is_intraday:
            grouper = pd.Grouper(key="ts", freq=f"{tf.minutes}min", origin=origin)
        else:
            grouper = pd.Grouper(key="ts", freq="D")
        g = df.groupby(["token", grouper])
        bars = g.agg(
            open=("price", "first"),
            high=("price", "max"),
            low=("price", "min"),
            close=("price", "last"),
            volume=("vol", "sum"),
            pv=("pv", "sum"),
        )
        assert len(bars)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=500_000)
    parser.add_argument("--instruments", type=int, default=200)
    args = parser.parse_args()

    t0 = time.perf_counter()
    gc.disable()  # half a million long-lived objects: don't rescan them while building
    ticks = synthetic_ticks(args.ticks, args.instruments)
    gc.enable()
    gc.collect()
    # the input is not what is measured: keep the collector from walking it on every
    # gen-2 pass (a service holds a few thousand objects, not the whole day's ticks)
    gc.freeze()
    span = ticks[-1].exchange_timestamp - ticks[0].exchange_timestamp  # type: ignore[operator]
    print(
        f"{len(ticks):,} ticks, {args.instruments} instruments, {span} of market, "
        f"timeframes {' '.join(TIMEFRAMES)} (generated in {time.perf_counter() - t0:.1f} s)"
    )
    base_dict = run_dict_of_lists(ticks)
    base_pandas = run_pandas(ticks)
    n = len(ticks)
    print(f"{'run':<34}{'ticks/cpu-s':>12}{'p50 µs':>9}{'p95 µs':>9}{'p99 µs':>9}{'updates':>11}")
    results: dict[str, float] = {}
    for label, forming, sample in (
        ("aggregator, forming 1m (default)", None, ticks),
        ("aggregator, finals only", (), ticks),
        # 8 Bar allocations per tick: run on the first fifth to keep the bench short
        ("aggregator, forming all 8 tfs *", tuple(TIMEFRAMES), ticks[: n // 5]),
    ):
        elapsed, lat, updates = run_aggregator(sample, forming)
        lat.sort()
        results[label] = len(sample) / elapsed
        print(
            f"{label:<34}{len(sample) / elapsed:>12,.0f}{pctl(lat, 0.50):>9.2f}"
            f"{pctl(lat, 0.95):>9.2f}{pctl(lat, 0.99):>9.2f}{updates:>11,}"
        )
        print(f"{'':<34}mean {statistics.fmean(lat) / 1000:.2f} µs, max {lat[-1] / 1000:.0f} µs")
    print(f"{'baseline dict-of-lists (1m only)':<34}{n / base_dict:>12,.0f}")
    print(f"{'baseline pandas batch (all tfs)':<34}{n / base_pandas:>12,.0f}")
    for label, rate in results.items():
        print(
            f"ratio {label}: {rate / (n / base_dict):.2f}x dict-of-lists, "
            f"{rate / (n / base_pandas):.2f}x pandas"
        )
    print(f"* on the first {n // 5:,} ticks; whole bench {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
