"""Throughput of the Kite simulator: ticks/s it streams to one client in full mode.

    .venv/bin/python bench/simulator.py [--seconds 10] [--tick-rate 500] [--instruments 0]

Starts ``market-bridge simulate`` in a subprocess (its own process and GIL, as in real use),
connects one WebSocket client, subscribes ``--instruments`` tokens (0 = the whole universe)
in full mode and counts packets for ``--seconds`` after a 2 s warm-up. The client only reads
each frame's packet count (so it is not the bottleneck); one frame per second is fully
decoded with the project codec as a sanity check. Prints ticks/s, frames/s and MB/s.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import time
import urllib.request

import orjson
from support import simulator
from websockets.asyncio.client import connect

from market_bridge.kite.codec import decode_frame_columns
from market_bridge.kite.simulator import DEFAULT_ACCESS_TOKEN, DEFAULT_API_KEY


def tokens(base: str, limit: int) -> list[int]:
    with urllib.request.urlopen(base + "/instruments", timeout=10) as resp:
        rows = list(csv.DictReader(io.StringIO(resp.read().decode())))
    toks = [int(r["instrument_token"]) for r in rows]
    return toks[:limit] if limit else toks


async def measure(ws_url: str, toks: list[int], warmup: float, seconds: float) -> dict[str, float]:
    url = f"{ws_url}/?api_key={DEFAULT_API_KEY}&access_token={DEFAULT_ACCESS_TOKEN}"
    async with connect(url, max_size=None, compression=None) as ws:
        await ws.send(orjson.dumps({"a": "subscribe", "v": toks}).decode())
        await ws.send(orjson.dumps({"a": "mode", "v": ["full", toks]}).decode())
        start = time.perf_counter() + warmup
        end = start + seconds
        packets = frames = nbytes = 0
        checked = 0
        next_check = start
        while True:
            msg = await ws.recv()
            now = time.perf_counter()
            if now >= end:
                break
            if now < start or not isinstance(msg, bytes) or len(msg) < 2:
                continue
            count = int.from_bytes(msg[:2], "big")
            packets += count
            frames += 1
            nbytes += len(msg)
            if now >= next_check:  # decode one frame a second: the stream must stay valid
                cols = decode_frame_columns(msg)
                assert len(cols) == count and (cols.packet_length > 0).all()
                checked += 1
                next_check += 1.0
    return {
        "ticks_per_s": packets / seconds,
        "frames_per_s": frames / seconds,
        "mb_per_s": nbytes / seconds / 1e6,
        "frames_checked": checked,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--tick-rate", type=float, default=500.0)
    ap.add_argument("--instruments", type=int, default=0, help="0 = all")
    args = ap.parse_args()

    with simulator("--tick-rate", str(args.tick_rate), all_plans=True) as base:
        toks = tokens(base, args.instruments)
        ws_url = base.replace("http://", "ws://", 1)
        result = asyncio.run(measure(ws_url, toks, args.warmup, args.seconds))
    print(
        f"simulator -> 1 client, full mode, {len(toks)} instruments, tick rate "
        f"{args.tick_rate:g}/s each (offered {len(toks) * args.tick_rate:,.0f} ticks/s)"
    )
    print(
        f"  {result['ticks_per_s']:,.0f} ticks/s  {result['frames_per_s']:,.0f} frames/s  "
        f"{result['mb_per_s']:.1f} MB/s  ({result['frames_checked']} frames decoded OK)"
    )


if __name__ == "__main__":
    main()
