"""Kite Ticker decode throughput: kiteconnect's parser vs ours, on the same frames, same run.

    .venv/bin/python bench/decode.py [--seconds 0.4]

Decoders timed on each workload:
  kiteconnect      KiteTicker._parse_binary (dicts, depth included)
  decode_frame     Tick objects, market depth left unparsed (it is parsed on first access)
  decode_frame+d   Tick objects, then depth_buy/depth_sell read on every tick (like kiteconnect)
  columns          decode_frame_columns: numpy arrays per frame
  columns x20      decode_frames_columns: numpy arrays per batch of 20 frames
Throughput is the best of several timed passes over all frames of the workload; passes of the
decoders are interleaved so that load from other processes affects them alike.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kiteconnect import KiteTicker

from market_bridge.kite.codec import (
    decode_frame,
    decode_frame_columns,
    decode_frames_columns,
    encode_ticks,
    price_divisor,
)
from market_bridge.kite.models import IST, DepthLevel, Mode, Tick

SEGMENTS = [1] * 6 + [2] * 6 + [3, 4, 5, 6, 7, 12]  # mostly NSE cash and F&O
T0 = 1_718_000_000  # a session second; exchange timestamps cluster around it


def make_tick(rng: random.Random, i: int, mode: Mode, index: bool) -> Tick:
    segment = 9 if index else rng.choice(SEGMENTS)
    token = (1000 + i) * 256 + segment
    div = price_divisor(token)
    tick_size = 5 if div == 100 else 25  # in wire units
    ltp_raw = rng.randrange(1_000, 500_000) * tick_size
    price = lambda raw: raw / div  # noqa: E731
    last = price(ltp_raw)
    if mode == "ltp":
        return Tick(token, "ltp", not index, last)
    close_raw = ltp_raw + rng.randrange(-200, 200) * tick_size
    ohlc = dict(
        open=price(close_raw + rng.randrange(-50, 50) * tick_size),
        high=price(max(ltp_raw, close_raw) + rng.randrange(0, 50) * tick_size),
        low=price(min(ltp_raw, close_raw) - rng.randrange(0, 50) * tick_size),
        close=price(close_raw),
    )
    now = datetime.fromtimestamp(T0 + rng.randrange(2), IST)
    if index:
        return Tick(token, mode, False, last, exchange_timestamp=now, **ohlc)
    tick = Tick(
        token, mode, True, last,
        last_traded_quantity=rng.randrange(1, 500),
        average_traded_price=price(ltp_raw - rng.randrange(-20, 20) * tick_size),
        volume_traded=rng.randrange(10**4, 10**8),
        total_buy_quantity=rng.randrange(10**6),
        total_sell_quantity=rng.randrange(10**6),
        **ohlc,
    )  # fmt: skip
    if mode == "full":
        tick.last_trade_time = datetime.fromtimestamp(T0 - rng.randrange(30), IST)
        tick.exchange_timestamp = now
        tick.oi = rng.randrange(10**7) if segment in (2, 5) else 0
        tick.oi_day_high, tick.oi_day_low = tick.oi + 1000, max(0, tick.oi - 1000)
        tick.depth_buy = tuple(
            DepthLevel(price(ltp_raw - k * tick_size), rng.randrange(1, 5000), rng.randrange(1, 40))
            for k in range(1, 6)
        )
        tick.depth_sell = tuple(
            DepthLevel(price(ltp_raw + k * tick_size), rng.randrange(1, 5000), rng.randrange(1, 40))
            for k in range(1, 6)
        )
    return tick


def make_frames(
    rng: random.Random, mode: Mode, frames: int, per_frame: tuple[int, int], index_share: float
) -> list[bytes]:
    out = []
    for _ in range(frames):
        n = rng.randint(*per_frame)
        out.append(
            encode_ticks([make_tick(rng, i, mode, rng.random() < index_share) for i in range(n)])
        )
    return out


def _with_depth(frame: bytes) -> list[Tick]:
    ticks = decode_frame(frame)
    for t in ticks:
        t.depth_buy, t.depth_sell  # noqa: B018 - force the lazy parse
    return ticks


def each(decode: Callable[[bytes], Any]) -> Callable[[list[bytes]], None]:
    def run(frames: list[bytes]) -> None:
        for frame in frames:
            decode(frame)

    return run


def batched(frames: list[bytes], size: int = 20) -> None:
    for i in range(0, len(frames), size):
        decode_frames_columns(frames[i : i + size])


def rates(
    runs: dict[str, Callable[[list[bytes]], None]], frames: list[bytes], ticks: int, budget: float
) -> dict[str, float]:
    """Ticks per second for each decoder, best of several rounds.

    Rounds interleave the decoders so load from other processes hits all of them alike; fast
    decoders repeat within a round so that every timed sample lasts about 50 ms.
    """
    repeats = {}
    for label, run in runs.items():  # warm-up pass, also sizes the samples
        start = time.perf_counter()
        run(frames)
        repeats[label] = max(1, round(0.05 / (time.perf_counter() - start)))
    best = dict.fromkeys(runs, float("inf"))
    rounds, began = 0, time.perf_counter()
    while rounds < 3 or (rounds < 10 and time.perf_counter() - began < budget * len(runs)):
        for label, run in runs.items():
            start = time.perf_counter()
            for _ in range(repeats[label]):
                run(frames)
            best[label] = min(best[label], (time.perf_counter() - start) / repeats[label])
        rounds += 1
    return {label: ticks / t for label, t in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=0.4, help="rough time per decoder and workload"
    )
    args = parser.parse_args()

    rng = random.Random(20240614)
    kite = KiteTicker("key", "token")
    workloads = {
        "full, 50-200 packets/frame": make_frames(rng, "full", 40, (50, 200), 0.0),
        "full + 5% indices (mixed lengths)": make_frames(rng, "full", 30, (50, 200), 0.05),
        "quote, 50-200 packets/frame": make_frames(rng, "quote", 60, (50, 200), 0.0),
        "ltp, 50-200 packets/frame": make_frames(rng, "ltp", 60, (50, 200), 0.0),
        "full, 1-3 packets/frame": make_frames(rng, "full", 1000, (1, 3), 0.0),
    }
    decoders: dict[str, Callable[[list[bytes]], None]] = {
        "kiteconnect": each(kite._parse_binary),
        "decode_frame": each(decode_frame),
        "decode_frame+d": each(_with_depth),
        "columns": each(decode_frame_columns),
        "columns x20": batched,
    }
    print(f"{'workload':36} {'decoder':16} {'ticks/s':>12} {'vs kiteconnect':>15}")
    for name, frames in workloads.items():
        ticks = sum(len(decode_frame(f)) for f in frames)
        # same frames, same answers (counts; values are covered by tests/test_kite_codec.py)
        assert ticks == sum(len(kite._parse_binary(f)) for f in frames)
        assert ticks == sum(len(decode_frame_columns(f)) for f in frames)
        assert ticks == len(decode_frames_columns(frames))
        runs = {
            label: run
            for label, run in decoders.items()
            if name.startswith("full") or label != "decode_frame+d"  # depth: full mode only
        }
        results = rates(runs, frames, ticks, args.seconds)
        for label, r in results.items():
            print(f"{name:36} {label:16} {r:12,.0f} {r / results['kiteconnect']:14.1f}x")
        print()


if __name__ == "__main__":
    main()
