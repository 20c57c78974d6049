"""The collector's columnar path (``handle_frame``) against its per-tick path
(``handle_ticks(decode_frame(...))``): the same frames, with the irregular cases the
columnar path must get right (reordered and repeated packets, stale and unsubscribed
ticks, other-mode packets, mixed packet kinds, a day change, feed-time leaps, two of them
inside one frame),
must give byte-identical COPY tuples, the same bar rows, the same live messages and the
same counters."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from market_bridge.aggregation import BarUpdate
from market_bridge.collect import Collector, CollectorOptions
from market_bridge.collect.messages import display_symbol
from market_bridge.collect.spec import Resolution, Subscription
from market_bridge.instruments import parse_instruments_csv
from market_bridge.kite.codec import decode_frame, encode_frame
from market_bridge.kite.models import IST, Tick
from market_bridge.kite.simulator import SimConfig
from market_bridge.kite.simulator.state import SimState
from market_bridge.storage import pgcopy

DAY = date(2026, 11, 23)


class Sink:
    """What a writer and a publisher would be handed (encoded as the writer encodes)."""

    def __init__(self, encoded: bool) -> None:
        self.data: dict[str, list[bytes]] = {"ticks": [], "depth": []}
        self.counts: dict[str, int] = {"ticks": 0, "depth": 0}
        self.bars: list[tuple[Any, ...]] = []
        self.live: list[tuple[str, str, Any]] = []
        self.per_tick_frames = 0  # frames the columnar path handed to handle_ticks
        if encoded:
            self.put_encoded = self._put_encoded

    def put(self, kind: str, rows: Sequence[tuple[Any, ...]]) -> None:
        if kind == "bars":
            self.bars.extend(rows)
            return
        encode = pgcopy.encode_tick_rows if kind == "ticks" else pgcopy.encode_depth_rows
        self._put_encoded(kind, encode(rows), len(rows))

    def _put_encoded(self, kind: str, data: bytes, count: int) -> None:
        self.data[kind].append(data)
        self.counts[kind] += count

    # LiveSink
    def tick(self, symbol: str, tick: Tick) -> None:
        self.live.append(("tick", symbol, tick))

    def orderbook(self, symbol: str, tick: Tick) -> None:
        self.live.append(("orderbook", symbol, (tick.depth_buy, tick.depth_sell)))

    def bar(self, symbol: str, update: BarUpdate) -> None:
        self.live.append(("bar", symbol, update))

    def stats(self, symbol: str, data: dict[str, Any]) -> None:
        self.live.append(("stats", symbol, data))

    def status(self, symbol: str, data: dict[str, Any]) -> None:
        self.live.append(("status", symbol, data))


def feed(seconds: int, start: datetime) -> tuple[list[bytes], list[Any], list[int]]:
    state = SimState(SimConfig(session="always"))
    listed = parse_instruments_csv(state.universe.csv())
    # indices first: in full mode their 32-byte packets share frames with 184-byte ones
    instruments = ([i for i in listed if i.segment == "INDICES"][:4]
                   + [i for i in listed if i.segment != "INDICES"][:40])  # fmt: skip
    tokens = [i.instrument_token for i in instruments]
    t0 = int(start.timestamp())
    rng = random.Random(5)
    out: list[bytes] = []
    for k in range(seconds):
        full = state.packets.packets([(tok, "full") for tok in tokens], t0 + k)  # type: ignore[arg-type]
        if k % 17 == 3:  # packets repeated and reordered within a frame
            full = full + rng.sample(full, 5)
            rng.shuffle(full)
        if k % 23 == 5:  # a quote-mode frame (Kite answers a subscribe in quote mode first)
            full = state.packets.packets([(tok, "quote") for tok in tokens[:5]], t0 + k)  # type: ignore[arg-type]
        if k % 29 == 7:  # more packet kinds: other modes (ltp, index quote, quote)
            full = full + state.packets.packets(
                [(tokens[0], "ltp"), (tokens[1], "quote"), (tokens[5], "quote")], t0 + k)  # type: ignore[arg-type]
        if k % 31 == 11:  # only stocks: one packet kind
            full = [p for p in full if len(p) != 32]
        if k % 37 == 13:  # only indices
            full = [p for p in full if len(p) == 32]
        out.append(encode_frame(full))
    for i in range(len(out) - 3, 0, -31):  # whole frames arriving late
        out[i], out[i - 2] = out[i - 2], out[i]
    return out, instruments, tokens


def join_frames(*frames: bytes) -> bytes:
    """One frame with the packets of ``frames`` in order (count, then length-prefixed
    packets: the bodies concatenate)."""
    count = sum(int.from_bytes(f[:2], "big") for f in frames)
    return count.to_bytes(2, "big") + b"".join(f[2:] for f in frames)


def run(frames: list[bytes], instruments: list[Any], columnar: bool,
        arrival: list[datetime]) -> tuple[Sink, Collector]:  # fmt: skip
    sink = Sink(encoded=columnar)
    collector = Collector("c", sink, sink, ws_root="",
                          options=CollectorOptions(max_tick_age=600.0, depth_interval=5.0))  # fmt: skip
    per_tick = collector.handle_ticks

    def counted(ticks: Any) -> None:
        sink.per_tick_frames += bool(ticks)
        per_tick(ticks)

    collector.handle_ticks = counted  # type: ignore[method-assign]
    subs = {i.instrument_token: Subscription(i, display_symbol(i)) for i in instruments[:-3]}
    collector.open_offline(Resolution(subs), "full")  # the last three are not subscribed
    for k, (frame, now) in enumerate(zip(frames, arrival, strict=True)):
        if columnar:
            collector.handle_frame(frame, now)
        else:
            collector.handle_ticks(decode_frame(frame, now))
        if k % 4 == 0:
            collector.on_timer(now.timestamp())
        if k % 9 == 0:
            collector.flush_live()
    collector.flush_live()
    return sink, collector


def test_columnar_path_equals_the_per_tick_path() -> None:
    # 23:57 -> 00:04: a day change; arrival 1 s after exchange time, except a stale
    # stretch (exchange time 20 min behind arrival) and a jump (replay restarts 2 h later)
    start = datetime.combine(DAY, datetime.min.time(), IST) + timedelta(hours=23, minutes=57)
    frames, instruments, _ = feed(420, start)
    arrival = [start + timedelta(seconds=k + 1, microseconds=123_457) for k in range(len(frames))]
    for k in range(100, 110):
        arrival[k] += timedelta(minutes=20)
    later, _, _ = feed(60, start + timedelta(hours=2))
    frames += later
    arrival += [start + timedelta(hours=2, seconds=k + 1) for k in range(len(later))]

    fast, cf = run(frames, instruments, True, arrival)
    slow, cs = run(frames, instruments, False, arrival)
    assert fast.counts == slow.counts and fast.counts["ticks"] > 10_000
    assert fast.counts["depth"] > 100
    assert b"".join(fast.data["ticks"]) == b"".join(slow.data["ticks"])
    assert b"".join(fast.data["depth"]) == b"".join(slow.data["depth"])
    assert fast.bars == slow.bars and len(fast.bars) > 100
    assert fast.live == slow.live
    assert cf.metrics == cs.metrics
    assert cf.metrics.ticks_stale and cf.metrics.ticks_unsubscribed and cf.metrics.ticks_other_mode
    assert cf.metrics_dict() == cs.metrics_dict()
    assert cf._agg.stats == cs._agg.stats and cf._agg.stats.ticks_processed > 5_000
    # the columnar path took every frame: mixed ones (most frames here have 32-byte index
    # and 184-byte stock packets) and the leaps (first frame, the replay 2 h later)
    assert fast.per_tick_frames == 0
    assert any(t.instrument_token == instruments[0].instrument_token
               for kind, _, t in fast.live if kind == "tick")  # fmt: skip


def test_feed_time_leaping_twice_inside_one_frame() -> None:
    # a minute of frames, then one frame with the packets of three seconds 200 s apart:
    # the aggregator must advance before the second and before the third second's
    # packets (else the third, 400 s ahead, is dropped as from the future)
    start = datetime.combine(DAY, datetime.min.time(), IST) + timedelta(hours=10)
    frames, instruments, _ = feed(60, start)
    arrival = [start + timedelta(seconds=k + 1) for k in range(len(frames))]
    leap = start + timedelta(seconds=65)
    frames.append(join_frames(*(feed(1, leap + timedelta(seconds=200 * j))[0][0]
                                for j in range(3))))  # fmt: skip
    arrival.append(leap + timedelta(seconds=401))

    fast, cf = run(frames, instruments, True, arrival)
    slow, cs = run(frames, instruments, False, arrival)
    assert cf._agg.stats == cs._agg.stats
    assert cf._agg.stats.ignored_future == 0
    assert cf._agg_now == cs._agg_now == (leap + timedelta(seconds=400)).timestamp()
    assert b"".join(fast.data["ticks"]) == b"".join(slow.data["ticks"])
    assert fast.bars == slow.bars and fast.live == slow.live
    assert fast.per_tick_frames == 0
