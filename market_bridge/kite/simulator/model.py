"""The deterministic market: one function of (instrument, second) behind ticks and candles.

For each instrument and session day the model defines, for every trading second ``k``:
last price, quantity traded in that second, cumulative day volume, turnover (for the
average price), running day high/low, open interest and its day high/low, and a five-level
book. Per-second values use only integer arithmetic on hashed random bits (``noise``), so
any second can be computed alone, in a one-minute block or as part of the whole day, with
identical results on every machine (the few per-day constants use plain float math once).

* Price: a random walk in 1/1024-tick steps, bridged so the session opens at
  ``previous close x (1 + gap)`` and closes exactly at the day's anchor close (``prices``),
  which becomes the next session's previous close. Prices are whole ticks.
* Volume: at least one lot every second, more near the open and close (U-shaped).
* Open interest (futures, options): a walk in lots around a per-day level.

A :class:`DayPlan` holds what random access needs: the state before each one-minute block
(prefix sums, running extremes) and the day's one-minute OHLCV bars. Historical candles
come from those bars; live ticks come from :meth:`MarketModel.block`, which recomputes a
minute from its prefix with the same code that built the bars. So a collector's bars equal
the historical candles by construction (and ``tests/test_simulator.py`` checks it).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property

import numpy as np

from market_bridge.kite.models import IST, DepthLevel, Mode, Tick
from market_bridge.kite.simulator.noise import I64Array, bits, stream_key, unit_int
from market_bridge.kite.simulator.prices import anchor_close, to_ticks
from market_bridge.kite.simulator.sessions import NSE_SECONDS, SessionRule, Window
from market_bridge.kite.simulator.universe import Instrument, Universe

_SUB_BITS = 10
SUB = 1 << _SUB_BITS  # sub-tick resolution of the walk; prices are rounded to whole ticks
BLOCK = 60  # seconds per block: one-minute bars and the unit of random access
DEPTH = 5
_FIXED = 16  # fixed-point bits of the step multiplier
_STREAM_SECOND, _STREAM_BOOK, _STREAM_DAY = 11, 12, 13
_BIG = np.int64(1 << 62)


@dataclass(frozen=True, slots=True)
class Profile:
    """Per-instrument model constants."""

    instrument: Instrument
    avg_lots: int  # mean lots traded per second (0 for indices)
    oi_lots: int  # typical open interest in lots (0 when none)

    @classmethod
    def of(cls, inst: Instrument) -> Profile:
        if inst.is_index:
            return cls(inst, 0, 0)
        if inst.instrument_type == "EQ":
            units = max(1.0, min(20_000.0, 525_000.0 / max(inst.base_price, 1.0)))
            return cls(inst, round(units), 0)
        per_kind = {"FUT": (5, 150_000), "CE": (20, 50_000), "PE": (20, 50_000)}
        lots, oi = per_kind[inst.instrument_type]
        if inst.exchange == "MCX":
            lots, oi = 2, 8_000
        elif inst.exchange == "CDS":
            lots, oi = 50, 200_000
        return cls(inst, lots, oi)


@dataclass(slots=True)
class Series:
    """Model values for the seconds ``k0 .. k0 + len - 1`` of one session (numpy int64)."""

    k0: int
    price: I64Array  # ticks
    qty: I64Array  # units traded in that second
    cumvol: I64Array
    turnover: I64Array  # sum of price (ticks) x qty
    high: I64Array  # running day high, ticks
    low: I64Array
    oi: I64Array  # units; 0 when the instrument has none
    oi_high: I64Array
    oi_low: I64Array
    walk: I64Array  # price walk W, sub-ticks (prefix state)
    oi_walk: I64Array  # OI walk, lots (prefix state)


PREFIX_FIELDS = ("walk", "cumvol", "turnover", "high", "low", "oi_walk", "oi_high", "oi_low")


@dataclass(frozen=True, slots=True)
class Prefix:
    """The state just before a block: what :func:`series` needs to continue the day."""

    walk: int = 0
    cumvol: int = 0
    turnover: int = 0
    high: int = 0
    low: int = int(_BIG)
    oi_walk: int = 0
    oi_high: int = 0
    oi_low: int = int(_BIG)


@dataclass(frozen=True, slots=True)
class DayPlan:
    """One instrument's session day: constants, block prefixes and one-minute bars."""

    profile: Profile
    window: Window
    prev_close: int  # ticks
    open: int  # ticks
    close: int  # ticks (the anchor; last traded price of the session)
    step_mult: int  # fixed-point sd multiplier of the walk
    walk_total: int  # W at the last second (the bridge removes it)
    oi_base: int  # lots
    oi_mult: int  # lots per OI step
    keys: tuple[int, int]  # streams: per-second draws, book draws
    # state at the end of each block (index b = after block b); see ``prefix``
    ends: dict[str, I64Array] = field(default_factory=dict)
    bars: dict[str, I64Array] = field(default_factory=dict)  # open high low close volume oi

    @property
    def blocks(self) -> int:
        return self.window.seconds // BLOCK

    def prefix(self, b: int) -> Prefix:
        """State before block ``b``."""
        if b == 0:
            return Prefix()
        return Prefix(*(int(self.ends[name][b - 1]) for name in PREFIX_FIELDS))


_SHAPES: dict[int, tuple[I64Array, I64Array]] = {}


def _shapes(n: int) -> tuple[I64Array, I64Array]:
    """Per session length: the bridge fraction k/(n-1) in 2^-32 units, and the U-shaped
    volume weight (956 at mid-session .. 4232 at the ends, mean ~2048 = 2^11)."""
    found = _SHAPES.get(n)
    if found is None:
        k = np.arange(n, dtype=np.int64)
        frac = (k << 32) // max(1, n - 1)
        centred = 2 * k - (n - 1)
        weight = (3276 * centred * centred) // max(1, (n - 1) * (n - 1)) + 956
        found = _SHAPES[n] = (frac, weight)
    return found


# One 64-bit draw per second feeds price, volume and OI:
#   bits 0-23 price step (binomial, sd sqrt 6), 24-33 all zero = a 4x jump (fat tails),
#   34-49 volume, 50-63 OI step (binomial(14) - 7).
def _price_steps(raw: np.ndarray, step_mult: int) -> I64Array:
    step = np.bitwise_count(raw & np.uint64(0xFF_FFFF)).astype(np.int64) - 12
    jump = (raw & np.uint64(0x3_FF00_0000)) == 0
    step[jump] *= 4
    return (step * step_mult) >> _FIXED


def _core(
    plan: DayPlan, k0: int, k1: int, walk0: int, oi_walk0: int, raw: np.ndarray | None = None
) -> tuple[I64Array, I64Array, I64Array, I64Array, I64Array]:
    """Price, quantity, OI and the two walks for seconds ``[k0, k1)``."""
    inst = plan.profile.instrument
    n = plan.window.seconds
    count = k1 - k0
    if raw is None:
        raw = bits(plan.keys[0], np.arange(k0, k1, dtype=np.int64))

    inc = _price_steps(raw, plan.step_mult)
    if k0 == 0:
        inc[0] = 0  # the session opens exactly at the open
    walk = np.cumsum(inc)
    walk += walk0
    frac, weight = _shapes(n)
    # Bridge: remove the walk's own end point and land on the close (floor shifts are exact).
    drift = plan.close * SUB - plan.open * SUB - plan.walk_total
    if abs(drift) < 1 << 31:
        internal = (drift * frac[k0:k1]) >> 32
    else:  # far beyond any real day's move; the slow exact form cannot overflow
        internal = (drift * np.arange(k0, k1, dtype=np.int64)) // max(1, n - 1)
    internal += walk
    internal += plan.open * SUB + SUB // 2
    internal >>= _SUB_BITS
    price = np.maximum(internal, 1)

    if plan.profile.avg_lots:
        # lots = 1 + r16 * weight * (avg - 1) / 2^26: mean 1 + (avg - 1) over the day.
        r16 = ((raw >> np.uint64(34)) & np.uint64(0xFFFF)).astype(np.int64)
        r16 *= weight[k0:k1]
        r16 *= plan.profile.avg_lots - 1
        r16 >>= 26
        r16 += 1
        qty = r16 * inst.lot_size
    else:
        qty = np.zeros(count, dtype=np.int64)

    if plan.profile.oi_lots:
        oi_inc = np.bitwise_count(raw >> np.uint64(50)).astype(np.int64) - 7
        oi_walk = np.cumsum(oi_inc * plan.oi_mult)
        oi_walk += oi_walk0
        oi = np.maximum(oi_walk + plan.oi_base, 0) * inst.lot_size
    else:
        oi_walk = oi = np.zeros(count, dtype=np.int64)
    return price, qty, oi, walk, oi_walk


def series(plan: DayPlan, k0: int, k1: int, prefix: Prefix) -> Series:
    """Model values for seconds ``[k0, k1)``, continuing from ``prefix`` (state at k0 - 1)."""
    price, qty, oi, walk, oi_walk = _core(plan, k0, k1, prefix.walk, prefix.oi_walk)
    cumvol = np.cumsum(qty)
    cumvol += prefix.cumvol
    turnover = np.cumsum(price * qty)
    turnover += prefix.turnover
    high = np.maximum(np.maximum.accumulate(price), prefix.high)
    low = np.minimum(np.minimum.accumulate(price), prefix.low)
    if plan.profile.oi_lots:
        oi_high = np.maximum(np.maximum.accumulate(oi), prefix.oi_high)
        oi_low = np.minimum(np.minimum.accumulate(oi), prefix.oi_low)
    else:
        oi_high = oi_low = oi
    return Series(k0, price, qty, cumvol, turnover, high, low, oi, oi_high, oi_low, walk, oi_walk)


def plan_day(profile: Profile, window: Window, seed: int, prev_close: int, close: int) -> DayPlan:
    """Build a day's plan (one pass over the whole session).

    Block-end state comes from per-block reductions (sums, maxima) of the same per-second
    values :func:`series` produces, so a block continued from its prefix matches exactly.
    """
    inst = profile.instrument
    token, day = inst.instrument_token, window.day.toordinal()
    keys = (
        stream_key(seed, token, day, _STREAM_SECOND),
        stream_key(seed, token, day, _STREAM_BOOK),
    )
    day_key = stream_key(seed, token, day, _STREAM_DAY)
    gap = (unit_int(day_key, 0) - 0.5) * 2 * 0.4 * inst.volatility
    open_ = max(1, round(prev_close * (1 + gap)))
    # Daily volatility spread over an NSE session, in sub-ticks per second.
    sigma = prev_close * SUB * inst.volatility / math.sqrt(NSE_SECONDS)
    step_mult = max(1, round(sigma / math.sqrt(6.0) * (1 << _FIXED)))
    oi_base = round(profile.oi_lots * (0.7 + 0.6 * unit_int(day_key, 1)))
    oi_mult = max(1, profile.oi_lots // 5000)
    n = window.seconds
    raw = bits(keys[0], np.arange(n, dtype=np.int64))
    inc = _price_steps(raw, step_mult)
    walk_total = int(inc[1:].sum())
    draft = DayPlan(
        profile, window, prev_close, open_, close, step_mult, walk_total, oi_base, oi_mult, keys
    )
    price, qty, oi, walk, oi_walk = _core(draft, 0, n, 0, 0, raw)
    blocks = n // BLOCK
    by_block = price.reshape(blocks, BLOCK)
    bars = {
        "open": by_block[:, 0].copy(),
        "high": by_block.max(axis=1),
        "low": by_block.min(axis=1),
        "close": by_block[:, -1].copy(),
        "volume": qty.reshape(blocks, BLOCK).sum(axis=1),
        "oi": oi[BLOCK - 1 :: BLOCK].copy(),
    }
    oi_blocks = oi.reshape(blocks, BLOCK)
    has_oi = bool(profile.oi_lots)
    ends = {
        "walk": walk[BLOCK - 1 :: BLOCK].copy(),
        "cumvol": np.cumsum(bars["volume"]),
        "turnover": np.cumsum((price * qty).reshape(blocks, BLOCK).sum(axis=1)),
        "high": np.maximum.accumulate(bars["high"]),
        "low": np.minimum.accumulate(bars["low"]),
        "oi_walk": oi_walk[BLOCK - 1 :: BLOCK].copy(),
        "oi_high": np.maximum.accumulate(oi_blocks.max(axis=1)) if has_oi else bars["oi"],
        "oi_low": np.minimum.accumulate(oi_blocks.min(axis=1)) if has_oi else bars["oi"],
    }
    return DayPlan(
        profile, window, prev_close, open_, close, step_mult, walk_total, oi_base, oi_mult, keys,
        ends, bars,
    )  # fmt: skip


class Block:
    """One minute of one instrument, ready for tick building (Python ints, book precomputed)."""

    def __init__(self, plan: DayPlan, s: Series) -> None:
        inst = plan.profile.instrument
        self.plan = plan
        self.k0 = s.k0
        self.token = inst.instrument_token
        self.is_index = inst.is_index
        self.tick_wire = inst.tick_wire
        self.divisor = inst.divisor
        self.stamp0 = plan.window.open_epoch + s.k0
        self.price: list[int] = s.price.tolist()
        self.qty: list[int] = s.qty.tolist()
        self.cumvol: list[int] = s.cumvol.tolist()
        self.turnover: list[int] = s.turnover.tolist()
        self.high: list[int] = s.high.tolist()
        self.low: list[int] = s.low.tolist()
        self.oi: list[int] = s.oi.tolist()
        self.oi_high: list[int] = s.oi_high.tolist()
        self.oi_low: list[int] = s.oi_low.tolist()
        self._price = s.price

    @cached_property
    def book(
        self,
    ) -> tuple[list[list[int]], list[list[int]], list[list[int]], list[int], list[int]]:
        """Per second: 10 level prices (wire units), quantities, orders (5 bids then 5 asks),
        and total buy/sell quantities. Built on first use (quote and full modes only)."""
        plan = self.plan
        inst = plan.profile.instrument
        n = len(self.price)
        idx = np.arange(self.k0, self.k0 + n, dtype=np.int64)
        grid = (idx[:, None] * 12 + np.arange(12, dtype=np.int64)[None, :]).reshape(-1)
        draws = bits(plan.keys[1], grid).reshape(n, 12)
        first = draws[:, 0]
        bid0 = self._price - (first & np.uint64(1)).astype(np.int64)
        ask0 = bid0 + 1 + ((first >> np.uint64(1)) & np.uint64(1)).astype(np.int64)
        level = np.arange(DEPTH, dtype=np.int64)
        prices = np.concatenate([bid0[:, None] - level, ask0[:, None] + level], axis=1)
        d = draws[:, 1:11]
        depth_lots = 3 * max(1, plan.profile.avg_lots)
        lots = ((d & np.uint64(0x3FF)).astype(np.int64) * depth_lots) // 1024 + 1
        orders = np.minimum(lots, ((d >> np.uint64(20)) & np.uint64(0x1F)).astype(np.int64) + 1)
        qty = lots * inst.lot_size
        empty = prices <= 0  # a book cannot go below one tick
        prices[empty] = 0
        qty[empty] = 0
        orders[empty] = 0
        spare = draws[:, 11]
        buy_mult = (spare & np.uint64(31)).astype(np.int64) + 8
        sell_mult = ((spare >> np.uint64(8)) & np.uint64(31)).astype(np.int64) + 8
        total_buy = qty[:, :DEPTH].sum(axis=1) * buy_mult
        total_sell = qty[:, DEPTH:].sum(axis=1) * sell_mult
        return (
            (prices * inst.tick_wire).tolist(), qty.tolist(), np.minimum(orders, 0xFFFF).tolist(),
            total_buy.tolist(), total_sell.tolist(),
        )  # fmt: skip


def build_tick(block: Block, k: int, mode: Mode) -> Tick:
    """The Kite tick for second ``k`` of the block's session in ``mode``."""
    i = k - block.k0
    tw, div = block.tick_wire, block.divisor
    last = block.price[i] * tw / div
    token = block.token
    if mode == "ltp":
        return Tick(token, "ltp", not block.is_index, last)
    plan = block.plan
    close = plan.prev_close * tw / div
    change = (last - close) * 100 / close if close else 0.0
    open_, high, low = plan.open * tw / div, block.high[i] * tw / div, block.low[i] * tw / div
    full = mode == "full"
    stamp = datetime.fromtimestamp(block.stamp0 + i, IST) if full else None
    if block.is_index:
        return Tick(
            token,
            mode,
            False,
            last,
            open=open_,
            high=high,
            low=low,
            close=close,
            change=change,
            exchange_timestamp=stamp,
        )
    cumvol = block.cumvol[i]
    atp = (block.turnover[i] * tw // cumvol) / div if cumvol else 0.0
    prices, qty, orders, total_buy, total_sell = block.book
    tick = Tick(
        token, mode, True, last, block.qty[i], atp, cumvol, total_buy[i], total_sell[i],
        open_, high, low, close, change,
    )  # fmt: skip
    if full:
        tick.last_trade_time = stamp
        tick.exchange_timestamp = stamp
        tick.oi, tick.oi_day_high, tick.oi_day_low = block.oi[i], block.oi_high[i], block.oi_low[i]
        p, q, o = prices[i], qty[i], orders[i]
        levels = [DepthLevel(p[j] / div, q[j], o[j]) for j in range(2 * DEPTH)]
        tick.depth_buy, tick.depth_sell = tuple(levels[:DEPTH]), tuple(levels[DEPTH:])
    return tick


class MarketModel:
    """The universe's prices under one session rule and seed; caches plans and blocks.

    Pure apart from its caches: every answer is a function of (seed, session, token, time).
    Thread-safe: historical requests and plan warm-up run in worker threads.
    """

    def __init__(
        self,
        universe: Universe,
        session: SessionRule | None = None,
        seed: int = 0,
        plan_cache: int = 600,
        block_cache: int = 2_000,
    ) -> None:
        self.universe = universe
        self.session = session or SessionRule()
        self.seed = seed
        self._profiles = {i.instrument_token: Profile.of(i) for i in universe.instruments}
        self._plans: OrderedDict[tuple[int, date], DayPlan] = OrderedDict()
        self._blocks: OrderedDict[tuple[int, date, int], Block] = OrderedDict()
        self._plan_cache = plan_cache
        self._block_cache = block_cache
        self._lock = threading.Lock()
        self._building: dict[tuple[int, date], threading.Lock] = {}

    def close_ticks(self, token: int, day: date) -> int:
        inst = self._profiles[token].instrument
        price = anchor_close(self.seed, token, inst.base_price, inst.volatility, day)
        return to_ticks(price, inst.tick_size)

    def plan(self, token: int, day: date) -> DayPlan | None:
        """The plan of ``token`` on ``day``; None when the market is shut that day."""
        key = (token, day)
        with self._lock:
            found = self._plans.get(key)
            if found is not None:
                self._plans.move_to_end(key)
                return found
            building = self._building.get(key)
            owner = building is None
            if building is None:
                building = self._building[key] = threading.Lock()
                building.acquire()
        if not owner:
            with building:  # another thread is building it: wait, then read the cache
                pass
            return self.plan(token, day)
        try:
            window = self.session.window(day)
            if window is None:
                return None
            prev = self.close_ticks(token, self.session.previous_day(day))
            close = self.close_ticks(token, day)
            plan = plan_day(self._profiles[token], window, self.seed, prev, close)
            with self._lock:
                self._plans[key] = plan
                if len(self._plans) > self._plan_cache:
                    self._plans.popitem(last=False)
            return plan
        finally:
            with self._lock:
                del self._building[key]
            building.release()

    @property
    def plans_cached(self) -> int:
        return len(self._plans)

    def has_plan(self, token: int, day: date) -> bool:
        return (token, day) in self._plans

    def warm(self, tokens: list[int], day: date) -> None:
        """Build missing plans (slow: ~3 ms per instrument for an NSE day, ~12 ms for 24 h);
        the server calls this in a worker thread so the event loop keeps running."""
        for token in tokens:
            self.plan(token, day)

    def block(self, token: int, day: date, b: int) -> Block:
        """Block ``b`` (seconds 60b .. 60b+59) of the session on ``day``."""
        key = (token, day, b)
        found = self._blocks.get(key)
        if found is not None:
            return found
        plan = self.plan(token, day)
        if plan is None:
            raise ValueError(f"no session on {day}")
        block = Block(plan, series(plan, b * BLOCK, (b + 1) * BLOCK, plan.prefix(b)))
        with self._lock:
            self._blocks[key] = block
            if len(self._blocks) > self._block_cache:
                self._blocks.popitem(last=False)
        return block

    def tick_at(self, token: int, epoch: int, mode: Mode = "full") -> Tick | None:
        """The tick for the second ``epoch``, or None when the market is shut then."""
        found = self.session.locate(epoch)
        if found is None:
            return None
        window, k = found
        return build_tick(self.block(token, window.day, k // BLOCK), k, mode)

    def last_tick(self, token: int, epoch: int, mode: Mode = "full") -> Tick:
        """The latest tick at or before ``epoch`` (the closing tick while the market is shut)."""
        window, k = self.session.last_traded(epoch)
        return build_tick(self.block(token, window.day, k // BLOCK), k, mode)
