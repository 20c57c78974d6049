"""Where ticks become bars: incremental OHLCV for 1m and its rollups, pure and clock-free.

Feed ticks with ``on_tick`` and advance time with ``on_time(now)``; both return the
``BarUpdate``s they caused. Nothing here reads a clock or does I/O. Full definitions and
measured figures: docs/aggregation.md. In short:

- A tick belongs to the bar containing ``tick.timestamp`` (exchange time, else receive
  time). Ignored and counted: no timestamp, naive timestamp or price <= 0 (``invalid``),
  more than ``max_future`` ahead of the last ``on_time`` (``future``), too late (below),
  and duplicates: same timestamp, price, cumulative volume and OI as the instrument's
  previous accepted tick.
- Volume comes from deltas of Kite's cumulative day volume (see ``volume.py``: first tick
  of the day, resets, out-of-order packets). ``trades_count`` counts ticks that revealed
  new volume (Kite sends snapshots, not trades). ``vwap`` = sum(price*delta)/sum(delta),
  None without volume. ``oi`` = OI of the latest-timestamped tick in the bar carrying OI.
- OHLC: open = price at the earliest timestamp, close = price at the latest (ties: arrival
  order), high/low over all accepted ticks, including late ones.
- Rollups (3m ... 1h aligned to 09:15 IST, ``day`` at 00:00 IST) are built from 1m bars,
  which are always kept internally; merging is exact, so a rollup equals aggregating its
  ticks directly. A tick is applied to every timeframe or to none.
- Finality: per instrument, watermark = max(latest ``on_time`` now, latest accepted tick
  timestamp of that instrument). A bar is final once watermark >= bar end + ``grace``.
  A per-instrument watermark means one instrument's clock-skewed ticks cannot finalise
  the others; quiet instruments are finalised by ``on_time``.
- Late ticks: a tick for a final bar amends it and emits ``revised`` (revision + 1) if a
  published field changed. Final bars stay in memory until watermark >= bar end + grace +
  ``late_window``; a tick whose 1m bar is past that is dropped (``too_late``), so the
  1m bars and their rollups always see the same ticks.
- Cost: an in-order tick touches only the current 1m bar; rollups absorb a 1m bar when the
  next minute starts. Forming updates allocate one ``Bar`` per timeframe per tick, so by
  default only the shortest published timeframe gets them (``forming`` to choose); a
  publisher polls ``latest_bar`` for the others on its own throttle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta

from market_bridge.aggregation.bar import Bar, BarUpdate
from market_bridge.aggregation.keys import (
    DAY_MINUTES,
    IST_OFFSET_S,
    key_datetime,
    key_epoch,
    period_key,
)
from market_bridge.aggregation.volume import VolumeBaseline
from market_bridge.kite.models import Tick
from market_bridge.market.timeframes import TIMEFRAMES, Timeframe, parse_timeframe

_INF = float("inf")
# BarUpdate(...) runs NamedTuple's Python-level __new__; tuple.__new__ is ~2x cheaper
_new_update = tuple.__new__
_NEG_INF = float("-inf")
_NAN = float("nan")


@dataclass(slots=True)
class AggregatorStats:
    ticks_processed: int = 0
    ignored_no_timestamp: int = 0
    ignored_invalid: int = 0
    ignored_future: int = 0
    ignored_duplicate: int = 0
    ignored_too_late: int = 0
    volume_resets: int = 0
    bars_finalised: int = 0  # "final" updates emitted (configured timeframes only)
    revisions: int = 0  # "revised" updates emitted

    @property
    def ignored(self) -> int:
        return (
            self.ignored_no_timestamp
            + self.ignored_invalid
            + self.ignored_future
            + self.ignored_duplicate
            + self.ignored_too_late
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Tf:
    __slots__ = ("emit", "forming", "minutes", "name")

    def __init__(self, name: str, minutes: int, emit: bool, forming: bool) -> None:
        self.name = name
        self.minutes = minutes
        self.emit = emit  # configured by the caller (1m is kept even when not)
        self.forming = forming


class _Acc:
    """Mutable bar state. Empty accumulators (a rollup before any 1m bar was merged into
    it) use +/-inf sentinels so that merging needs no special cases."""

    __slots__ = (
        "close",
        "close_ts",
        "deadline",
        "final",
        "high",
        "key",
        "low",
        "name",
        "oi",
        "oi_ts",
        "open",
        "open_ts",
        "parents",
        "pv",
        "revision",
        "start",
        "trades",
        "volume",
    )

    def __init__(self, name: str, key: int, start: datetime, deadline: float) -> None:
        self.name = name
        self.key = key
        self.start = start
        self.deadline = deadline  # bar end + grace, Unix seconds
        self.open = self.close = 0.0
        self.high = _NEG_INF
        self.low = _INF
        self.open_ts = _INF
        self.close_ts = _NEG_INF
        self.volume = 0
        self.pv = 0.0
        self.trades = 0
        self.oi: int | None = None
        self.oi_ts = _NEG_INF
        self.final = False
        self.revision = 0
        self.parents: list[_Acc] = []  # rollup bars of a current 1m bar (index = tf - 1)


def _apply(acc: _Acc, t: float, price: float, delta: int, oi: int | None) -> bool:
    """Add one tick; True if a published field changed."""
    changed = False
    if t < acc.open_ts:
        acc.open_ts = t
        if price != acc.open:
            acc.open = price
            changed = True
    if t >= acc.close_ts:
        acc.close_ts = t
        if price != acc.close:
            acc.close = price
            changed = True
    if price > acc.high:
        acc.high = price
        changed = True
    if price < acc.low:
        acc.low = price
        changed = True
    if delta > 0:
        acc.volume += delta
        acc.pv += price * delta
        acc.trades += 1
        changed = True
    if oi is not None and t >= acc.oi_ts:
        acc.oi_ts = t
        if oi != acc.oi:
            acc.oi = oi
            changed = True
    return changed


def _merge(dst: _Acc, src: _Acc) -> None:
    """Fold a whole 1m bar into a rollup. Timestamps of different minutes never tie."""
    if src.open_ts < dst.open_ts:
        dst.open_ts = src.open_ts
        dst.open = src.open
    if src.close_ts >= dst.close_ts:
        dst.close_ts = src.close_ts
        dst.close = src.close
    if src.high > dst.high:
        dst.high = src.high
    if src.low < dst.low:
        dst.low = src.low
    dst.volume += src.volume
    dst.pv += src.pv
    dst.trades += src.trades
    if src.oi is not None and src.oi_ts >= dst.oi_ts:
        dst.oi_ts = src.oi_ts
        dst.oi = src.oi


def _snapshot(token: int, acc: _Acc, cur: _Acc | None) -> Bar:
    """Published copy of ``acc``, plus the not-yet-merged current 1m bar ``cur``."""
    if cur is None:
        vol = acc.volume
        return Bar(
            token, acc.name, acc.start, acc.open, acc.high, acc.low, acc.close, vol,
            acc.trades, acc.pv / vol if vol else None, acc.oi, acc.final, acc.revision,
        )  # fmt: skip
    vol = acc.volume + cur.volume
    oi = cur.oi if cur.oi is not None and cur.oi_ts >= acc.oi_ts else acc.oi
    return Bar(
        token,
        acc.name,
        acc.start,
        acc.open if acc.open_ts < cur.open_ts else cur.open,
        acc.high if acc.high > cur.high else cur.high,
        acc.low if acc.low < cur.low else cur.low,
        cur.close if cur.close_ts >= acc.close_ts else acc.close,
        vol,
        acc.trades + cur.trades,
        (acc.pv + cur.pv) / vol if vol else None,
        oi,
        acc.final,
        acc.revision,
    )


class _Instrument:
    __slots__ = (
        "bars",
        "cur",
        "dup_oi",
        "dup_p",
        "dup_t",
        "dup_v",
        "max_ts",
        "next_deadline",
        "next_prune",
        "token",
        "top",
        "volume",
    )

    def __init__(self, token: int, n_tfs: int, started: float) -> None:
        self.token = token
        self.bars: list[dict[int, _Acc]] = [{} for _ in range(n_tfs)]  # retained, by key
        self.cur: _Acc | None = None  # newest open 1m bar, not yet merged into rollups
        self.top = -(2**62)  # key of the newest 1m bar that became current
        self.max_ts = _NEG_INF  # latest accepted tick timestamp
        self.next_deadline = _INF  # earliest deadline among open bars
        self.next_prune = _INF  # earliest deadline + late_window among final bars
        self.volume = VolumeBaseline(started)
        self.dup_t = _NEG_INF
        self.dup_p = 0.0
        self.dup_v: int | None = None
        self.dup_oi: int | None = None


class BarAggregator:
    """Incremental bars for many instruments. Not thread-safe: call from one thread/task."""

    def __init__(
        self,
        timeframes: Iterable[str | Timeframe] = tuple(TIMEFRAMES),
        *,
        grace: timedelta = timedelta(seconds=2),
        late_window: timedelta = timedelta(minutes=10),
        max_future: timedelta = timedelta(minutes=5),
        started_at: datetime | None = None,
        forming: Iterable[str | Timeframe] | None = None,
    ) -> None:
        """``timeframes``: what to publish (final and revised updates).

        ``forming``: timeframes that get a forming update from every tick that changes
        them; default: the shortest published one. Each costs a ``Bar`` allocation per
        tick, so a publisher of many timeframes should poll ``latest_bar`` on its own
        throttle instead (``()`` turns them off). ``started_at``: when the caller started
        watching the market (default: the first timestamp seen by ``on_tick``/``on_time``);
        it decides whether a day's first cumulative volume counts (see ``volume.py``).
        """
        wanted = {_tf_name(tf) for tf in timeframes}
        if not wanted:
            raise ValueError("BarAggregator needs at least one timeframe")
        shortest = min(wanted, key=lambda name: TIMEFRAMES[name].minutes)
        live = {shortest} if forming is None else {_tf_name(tf) for tf in forming}
        if not live <= wanted:
            raise ValueError(f"forming timeframes {sorted(live - wanted)} are not aggregated")
        if grace < timedelta(0) or late_window < timedelta(0) or max_future < timedelta(0):
            raise ValueError("grace, late_window and max_future must not be negative")
        names = ["1m"] + [tf.name for tf in TIMEFRAMES.values() if tf.name in wanted - {"1m"}]
        self._tfs = [
            _Tf(n, TIMEFRAMES[n].minutes, n in wanted, n in live) for n in names
        ]  # index 0 is always 1m, then by increasing length
        self._forming_idx = [i for i, tf in enumerate(self._tfs) if tf.forming]
        self._emit_idx = {tf.name: i for i, tf in enumerate(self._tfs) if tf.emit}
        self._grace = grace.total_seconds()
        self._window = late_window.total_seconds()
        # a tick is too late when its minute's end + grace + late window <= watermark;
        # folded into one offset from the minute's start (seconds) for the hot path
        self._too_late_after = 60 - IST_OFFSET_S + self._grace + self._window
        self._max_future = max_future.total_seconds()
        self._started: float | None = None
        if started_at is not None:
            self._started = _epoch(started_at)
        self._now = _NEG_INF
        self._last_dt: datetime | None = None  # cache for the timestamp conversion
        self._last_t = 0.0
        self._last_m = 0
        self._future_limit = _INF
        self._min_deadline = _INF  # lower bound of every instrument's next deadline/prune
        self._instruments: dict[int, _Instrument] = {}
        self._starts: dict[int, datetime] = {}
        self._stats = AggregatorStats()

    @property
    def timeframes(self) -> list[str]:
        return [tf.name for tf in self._tfs if tf.emit]

    @property
    def stats(self) -> AggregatorStats:
        """A copy of the counters (resets are summed from the instruments on demand)."""
        resets = sum(i.volume.resets for i in self._instruments.values())
        return replace(self._stats, volume_resets=resets)

    # -- input ---------------------------------------------------------------------------

    def on_tick(self, tick: Tick) -> list[BarUpdate]:
        stats = self._stats
        ts = tick.exchange_timestamp or tick.received_at
        if ts is None:
            stats.ignored_no_timestamp += 1
            return []
        # datetime.timestamp() is slow for aware datetimes; Kite's 1 s exchange timestamps
        # repeat across consecutive ticks, so remember the last conversion
        if ts == self._last_dt:
            t = self._last_t
            m = self._last_m
        elif ts.tzinfo is None:
            stats.ignored_invalid += 1
            return []
        else:
            t = self._last_t = ts.timestamp()
            m = self._last_m = int((t + IST_OFFSET_S) // 60)
            self._last_dt = ts
            if self._started is None:
                self._started = t
        price = tick.last_price
        if not price > 0:  # Kite sends 0 for contracts that have not traded
            stats.ignored_invalid += 1
            return []
        if t > self._future_limit:
            stats.ignored_future += 1
            return []
        out: list[BarUpdate] = []
        self._accept(tick.instrument_token, t, m, price, tick.volume_traded, tick.oi, out)
        return out

    def on_batch(
        self,
        tokens: Sequence[int],
        times: Sequence[float],
        prices: Sequence[float],
        volumes: Sequence[int | None],
        ois: Sequence[int | None],
    ) -> list[BarUpdate]:
        """``on_tick`` for many ticks given as values (a columnar decoder's rows), in order:
        ``times`` are the ticks' timestamps (exchange, else receive time) in Unix seconds.
        Same rules, counters and updates as calling ``on_tick`` for each."""
        stats = self._stats
        out: list[BarUpdate] = []
        accept = self._accept
        last_t = _NAN
        m = 0
        for token, t, price, cum, oi in zip(tokens, times, prices, volumes, ois, strict=True):
            if t != last_t:
                last_t = t
                m = int((t + IST_OFFSET_S) // 60)
                if self._started is None:
                    self._started = t
            if not price > 0:
                stats.ignored_invalid += 1
                continue
            if t > self._future_limit:
                stats.ignored_future += 1
                continue
            accept(token, t, m, price, cum, oi, out)
        return out

    def _accept(self, token: int, t: float, m: int, price: float, cum: int | None,
                oi: int | None, out: list[BarUpdate]) -> None:  # fmt: skip
        """A valid tick (timestamp ``t`` in minute ``m``): the rest of ``on_tick``."""
        stats = self._stats
        inst = self._instruments.get(token)
        if inst is None:
            started = t if self._started is None else self._started
            inst = self._instruments[token] = _Instrument(token, len(self._tfs), started)
        now = self._now
        wm = inst.max_ts if inst.max_ts > now else now
        if m * 60 + self._too_late_after <= wm:
            stats.ignored_too_late += 1
            return
        if t == inst.dup_t and price == inst.dup_p and cum == inst.dup_v and oi == inst.dup_oi:
            stats.ignored_duplicate += 1
            return
        inst.dup_t = t
        inst.dup_p = price
        inst.dup_v = cum
        inst.dup_oi = oi
        stats.ticks_processed += 1
        if cum is None:
            delta = 0
        else:
            vol = inst.volume
            day = m // DAY_MINUTES
            if cum >= vol.base and t >= vol.last_ts and vol.day == day:
                # in-order packet of the same day: inline VolumeBaseline.delta's common case
                delta = cum - vol.base
                vol.base = cum
                vol.last_ts = t
            else:
                delta = vol.delta(day, t, cum)

        if t > inst.max_ts:
            inst.max_ts = t
            if t > wm:
                wm = t
                if inst.next_deadline <= wm or inst.next_prune <= wm:
                    self._finalize(inst, wm, out)

        cur = inst.cur
        if cur is not None and cur.key == m:
            # hot path: an in-order tick of the current minute touches only the 1m bar
            # (this is _apply, inlined; cur is never empty, so the elifs are safe)
            changed = False
            if t >= cur.close_ts:
                cur.close_ts = t
                if price != cur.close:
                    cur.close = price
                    changed = True
            elif t < cur.open_ts:
                cur.open_ts = t
                if price != cur.open:
                    cur.open = price
                    changed = True
            if price > cur.high:
                cur.high = price
                changed = True
            elif price < cur.low:
                cur.low = price
                changed = True
            if delta > 0:
                cur.volume += delta
                cur.pv += price * delta
                cur.trades += 1
                changed = True
            if oi is not None and t >= cur.oi_ts:
                cur.oi_ts = t
                if oi != cur.oi:
                    cur.oi = oi
                    changed = True
            if changed:
                for i in self._forming_idx:
                    snap = (
                        _snapshot(token, cur.parents[i - 1], cur)
                        if i
                        else _snapshot(token, cur, None)
                    )
                    out.append(_new_update(BarUpdate, (snap, "forming")))
            return
        if m > inst.top and key_epoch(m + 1) + self._grace > wm:
            self._new_current(inst, m, token, t, price, delta, oi, out)
        else:
            self._apply_late(inst, m, token, t, price, delta, oi, wm, out)

    def on_time(self, now: datetime) -> list[BarUpdate]:
        """Advance time; finalises (and forgets) bars of every instrument that are due."""
        t = _epoch(now)
        if self._started is None:
            self._started = t
        if t > self._now:
            self._now = t
            self._future_limit = t + self._max_future
        out: list[BarUpdate] = []
        if self._now < self._min_deadline:
            return out
        low = _INF
        for inst in self._instruments.values():
            wm = inst.max_ts if inst.max_ts > self._now else self._now
            if inst.next_deadline <= wm or inst.next_prune <= wm:
                self._finalize(inst, wm, out)
            low = min(low, inst.next_deadline, inst.next_prune)
        self._min_deadline = low
        return out

    # -- queries -------------------------------------------------------------------------

    def latest_bar(self, instrument_token: int, timeframe: str | Timeframe) -> Bar | None:
        """Snapshot of the newest bar in memory (forming or final), e.g. for a subscriber's
        first message or a throttled publisher of forming bars."""
        idx = self._emit_idx.get(timeframe) if isinstance(timeframe, str) else None
        if idx is None:
            name = _tf_name(timeframe)
            idx = next((i for i, tf in enumerate(self._tfs) if tf.name == name and tf.emit), None)
        inst = self._instruments.get(instrument_token)
        if inst is None or idx is None or not inst.bars[idx]:
            return None
        bars = inst.bars[idx]
        acc = bars[max(bars)]
        cur = inst.cur
        # ``in`` compares by identity here (_Acc has no __eq__)
        return _snapshot(instrument_token, acc, cur if idx and cur and acc in cur.parents else None)

    # -- internals -----------------------------------------------------------------------

    def _new_acc(self, inst: _Instrument, idx: int, key: int, wm: float = _NEG_INF) -> _Acc:
        """A new bar, scheduled for finalisation; already final if its deadline <= ``wm``
        (a late tick for a period that is over: its first version is its final one)."""
        tf = self._tfs[idx]
        start = self._starts.get(key)
        if start is None:
            # every instrument opens the same minute's bars: share the datetimes
            if len(self._starts) > 4096:
                self._starts.clear()
            start = self._starts[key] = key_datetime(key)
        deadline = key_epoch(key + tf.minutes) + self._grace
        acc = _Acc(tf.name, key, start, deadline)
        inst.bars[idx][key] = acc
        if deadline <= wm:
            acc.final = True
            due = deadline + self._window
            if due < inst.next_prune:
                inst.next_prune = due
        elif deadline < inst.next_deadline:
            inst.next_deadline = due = deadline
        else:
            return acc
        if due < self._min_deadline:
            self._min_deadline = due
        return acc

    def _new_current(
        self,
        inst: _Instrument,
        m: int,
        token: int,
        t: float,
        price: float,
        delta: int,
        oi: int | None,
        out: list[BarUpdate],
    ) -> None:
        """A tick opens a newer minute: fold the previous current 1m bar into its rollups."""
        prev = inst.cur
        if prev is not None:
            for rollup in prev.parents:
                _merge(rollup, prev)
        cur = self._new_acc(inst, 0, m)
        bars = inst.bars
        for i in range(1, len(self._tfs)):
            key = period_key(m, self._tfs[i].minutes)
            parent = bars[i].get(key)
            # an open rollup: its deadline >= this minute's, which is still ahead
            cur.parents.append(parent if parent is not None else self._new_acc(inst, i, key))
        inst.cur = cur
        inst.top = m
        _apply(cur, t, price, delta, oi)
        for i in self._forming_idx:
            snap = _snapshot(token, cur.parents[i - 1], cur) if i else _snapshot(token, cur, None)
            out.append(_new_update(BarUpdate, (snap, "forming")))

    def _apply_late(
        self,
        inst: _Instrument,
        m: int,
        token: int,
        t: float,
        price: float,
        delta: int,
        oi: int | None,
        wm: float,
        out: list[BarUpdate],
    ) -> None:
        """A tick for an older minute (or one already past its deadline): apply it to the
        1m bar and each rollup directly, creating bars that do not exist yet."""
        cur = inst.cur
        for i, tf in enumerate(self._tfs):
            key = period_key(m, tf.minutes)
            found = inst.bars[i].get(key)
            acc = self._new_acc(inst, i, key, wm) if found is None else found
            changed = _apply(acc, t, price, delta, oi)
            if not tf.emit:
                continue
            if found is None and acc.final:
                self._stats.bars_finalised += 1
                out.append(_new_update(BarUpdate, (_snapshot(token, acc, None), "final")))
            elif acc.final:
                if changed:
                    acc.revision += 1
                    self._stats.revisions += 1
                    out.append(_new_update(BarUpdate, (_snapshot(token, acc, None), "revised")))
            elif changed and tf.forming:
                extra = cur if cur is not None and any(p is acc for p in cur.parents) else None
                out.append(_new_update(BarUpdate, (_snapshot(token, acc, extra), "forming")))

    def _finalize(self, inst: _Instrument, wm: float, out: list[BarUpdate]) -> None:
        """Finalise this instrument's bars due at watermark ``wm``, shortest timeframe
        first, and forget final bars older than the late window."""
        next_deadline = _INF
        next_prune = _INF
        cutoff = wm - self._window
        for i, tf in enumerate(self._tfs):
            bars = inst.bars[i]
            gone: list[int] = []
            for key, acc in bars.items():
                if not acc.final:
                    if acc.deadline > wm:
                        next_deadline = min(next_deadline, acc.deadline)
                        continue
                    if acc is inst.cur:
                        # rollups are finalised after 1m in this loop: give them its ticks
                        for parent in acc.parents:
                            _merge(parent, acc)
                        inst.cur = None
                    acc.final = True
                    if tf.emit:
                        self._stats.bars_finalised += 1
                        out.append(
                            _new_update(BarUpdate, (_snapshot(inst.token, acc, None), "final"))
                        )
                if acc.deadline <= cutoff:
                    gone.append(key)
                else:
                    next_prune = min(next_prune, acc.deadline + self._window)
            for key in gone:
                del bars[key]
        inst.next_deadline = next_deadline
        inst.next_prune = next_prune


def _tf_name(tf: str | Timeframe) -> str:
    return parse_timeframe(tf).name if isinstance(tf, str) else tf.name


def _epoch(value: datetime) -> float:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to BarAggregator; use aware datetimes (IST)")
    return value.timestamp()
