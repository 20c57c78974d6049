"""One collector: a Kite ticker connection set -> bars, storage rows and live messages.

Per frame (the hot path, synchronous, called by the ticker client with each raw frame;
``handle_frame`` works on numpy columns, ``frames.py``, and falls back to the per-tick
``handle_ticks`` for irregular frames, with the same results): the tick row (with its volume delta) goes to the storage writer; the aggregator turns it
into bar updates (final and revised bars are stored with 'live' provenance and their
revision, and published); full-mode depth is stored at most once per ``depth_interval``
per instrument; the newest tick and book per instrument are handed to the publisher when
it flushes (``flush_live``). A timer (``timer_interval``) advances the
aggregator with feed time so quiet instruments' bars close, watches feed health (status
messages, gaps) and publishes the forming 1m bar of instruments that ticked; every
``stats_interval`` it publishes per-symbol stats and the forming bars of the longer
timeframes.

Failures stay inside: an exception while handling a frame is counted and logged, never
raised into the ticker (which would reconnect); an invalid or expired access token puts
the collector in ``auth_failed`` (no retry loop) until its credentials change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from market_bridge.aggregation import BarAggregator, BarUpdate
from market_bridge.aggregation.keys import IST_OFFSET_S, session_open_epoch
from market_bridge.collect import frames
from market_bridge.collect.feed import FeedClock, FeedEvent, FeedMonitor, FeedSample
from market_bridge.collect.messages import stats_data, status_data
from market_bridge.collect.model import (
    ACTIVE_STATES,
    COUNTERS,
    INDEX_SEGMENT,
    CollectorMetrics,
    CollectorOptions,
    Credentials,
    Gap,
    LiveSink,
    RowSink,
)
from market_bridge.collect.rows import bar_row, tick_row
from market_bridge.collect.spec import Resolution, Subscription
from market_bridge.kite.codec import (
    FULL_PACKET,
    PACKET_MODES,
    QUOTE_PACKET,
    FrameError,
    TickColumns,
    decode_frame,
    decode_frame_columns,
)
from market_bridge.kite.errors import KiteTokenError
from market_bridge.kite.models import IST, Mode, Tick
from market_bridge.kite.ticker import KiteTickerClient
from market_bridge.storage import pgcopy
from market_bridge.storage.pgcopy import PG_EPOCH_S, timestamp_us
from market_bridge.storage.rows import depth_row

__all__ = [
    "ACTIVE_STATES",
    "Collector",
    "CollectorMetrics",
    "CollectorOptions",
    "Credentials",
    "Gap",
    "LiveSink",
    "RowSink",
]

log = logging.getLogger(__name__)

_NEG_INF = float("-inf")
_NO_DAY = -(2**62)  # VolumeBaseline before its first packet
_JUMP = 60.0  # seconds: a tick this far ahead of the aggregator's time advances it first
_US = 1_000_000
_HAS_VOLUME = (QUOTE_PACKET, FULL_PACKET)


class Collector:
    def __init__(
        self,
        name: str,
        writer: RowSink,
        publisher: LiveSink,
        ws_root: str,
        options: CollectorOptions | None = None,
    ) -> None:
        self.name = name
        self.writer = writer
        self.publisher = publisher
        self.ws_root = ws_root
        self.options = options or CollectorOptions()
        self.metrics = CollectorMetrics()
        self.generation = 0
        self.mode: Mode = "quote"
        self._credentials: Credentials | None = None
        self._subs: dict[int, Subscription] = {}
        self._known: dict[int, Subscription] = {}  # everything ever subscribed (late bars)
        self._client: KiteTickerClient | None = None
        self._client_task: asyncio.Task[None] | None = None
        self._timer_task: asyncio.Task[None] | None = None
        self._restart_task: asyncio.Task[None] | None = None
        self._base = dict.fromkeys(COUNTERS, 0)  # counters of replaced ticker clients
        self._gaps: list[Gap] = []  # noticed, not yet recorded by the manager
        self._new_state()

    def _new_state(self) -> None:
        o = self.options
        # forming bars are polled (latest_bar) on the timer rather than built for every tick
        self._agg = BarAggregator(o.timeframes, grace=timedelta(seconds=o.grace), forming=())
        self._shortest = self._agg.timeframes[0]
        self._longer = self._agg.timeframes[1:]
        self._has_day = "day" in self._agg.timeframes
        self._clock = FeedClock()
        self._monitor = FeedMonitor(o.garbage_after, stall_after=0.9 * o.stall_timeout)
        # per-instrument state in arrays, one slot per token ever subscribed (``_slot_of``;
        # ``_state_slots``: the subscription table's slot -> state slot), so that a frame
        # updates it in one go: the volume baseline (``VolumeBaseline``'s fields: day,
        # cumulative base, newest packet time) and when the next order book is due
        self._slot_of: dict[int, int] = {}
        self._state_slots = np.zeros(0, np.intp)
        self._vb_day = np.zeros(0, np.int64)
        self._vb_base = np.zeros(0, np.int64)
        self._vb_last = np.zeros(0, np.float64)
        self._depth_due = np.zeros(0, np.float64)
        self._frame_pos = np.zeros(0, np.intp)  # scratch: a state slot's row in the frame
        self._started: float | None = None
        self._last_dt: datetime | None = None
        self._last_t = 0.0
        self._agg_now = float("-inf")  # feed time the aggregator was last advanced to
        # newest tick per token (a PacketRef until someone needs the Tick)
        self._latest: dict[int, Tick | frames.PacketRef] = {}
        self._live: set[int] = set()  # tokens with a tick not yet handed to the publisher
        self._touched: set[int] = set()  # since the last stats
        self._touched_now: set[int] = set()  # since the last timer
        self._next_stats = 0.0
        self._lost_since: datetime | None = None
        self._lost_reason = ""
        self._garbage_restarts = 0

    def __repr__(self) -> str:
        return f"Collector({self.name!r}, state={self.metrics.state!r})"

    # -- control --------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self.metrics.state

    @property
    def symbols(self) -> list[str]:
        return [s.symbol for s in self._subs.values()]

    async def start(
        self,
        resolution: Resolution,
        mode: Mode,
        credentials: Credentials | None,
        generation: int = 0,
        problem: str | None = None,
    ) -> None:
        """Start collecting. Without credentials the collector stays in ``no_credentials``
        (``problem`` says why) until ``update`` brings some."""
        self._new_state()
        await self._begin(resolution, mode, credentials, generation, problem)

    async def _begin(
        self,
        resolution: Resolution,
        mode: Mode,
        credentials: Credentials | None,
        generation: int,
        problem: str | None,
    ) -> None:
        self.generation = generation
        self.mode = mode
        self._set_subscriptions(resolution)
        self._credentials = credentials
        self._attach_live()
        self.metrics.last_error = resolution.describe_problems()
        if credentials is None:
            self.metrics.state = "no_credentials"
            self.metrics.last_error = problem or "no Kite credentials"
            return
        self.metrics.state = "starting"
        self._monitor.new_client()
        await self._start_client()
        if self._timer_task is None:
            self._timer_task = asyncio.create_task(
                self._timer(), name=f"collector-{self.name}-timer"
            )

    def open_offline(self, resolution: Resolution, mode: Mode) -> None:
        """Subscriptions without a ticker client: for feeding recorded or generated frames
        through ``handle_ticks`` and ``on_timer`` (benchmarks, replays of captures)."""
        self._new_state()
        self.mode = mode
        self._set_subscriptions(resolution)
        self._attach_live()
        self.metrics.state = "running"

    async def update(
        self,
        resolution: Resolution,
        mode: Mode,
        credentials: Credentials | None,
        generation: int,
        problem: str | None = None,
    ) -> None:
        """Apply a new desired state: subscribe/unsubscribe the difference, change mode,
        reconnect with new credentials."""
        self.generation = generation
        task = self._client_task
        if credentials != self._credentials or task is None or task.done():
            # new credentials, or the client gave up (auth failure): start over
            # (bars and volume baselines are kept: it is the same feed)
            self._close_gap(datetime.now(IST))  # e.g. down since an auth failure
            await self._stop_client()
            await self._begin(resolution, mode, credentials, generation, problem)
            return
        old = set(self._subs)
        self._set_subscriptions(resolution)
        self.metrics.last_error = resolution.describe_problems()
        new = set(self._subs)
        client = self._client
        assert client is not None  # the task is alive
        removed = old - new
        if removed:
            await client.unsubscribe(removed)
        if mode != self.mode:
            self.mode = mode
            if new:
                await client.subscribe(list(self._subs), mode)  # also (re)sets the mode
        elif new - old:
            await client.subscribe([t for t in self._subs if t not in old], mode)

    async def stop(self, state: str = "stopped", reason: str = "collector stopped") -> None:
        """Stop collecting; bars whose period is over are finalised and stored."""
        was_active = self.metrics.running
        for task in (self._timer_task, self._restart_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._timer_task = self._restart_task = None
        await self._stop_client()
        now = self._clock.now(time.time())
        if now is not None:
            until = datetime.fromtimestamp(now + self.options.grace, IST)
            self._on_bars(self._agg.on_time(until))
        self._close_gap(datetime.now(IST))
        self.flush_live()
        self._detach_live()
        if was_active:
            self._publish_status(FeedEvent("feed_lost", datetime.now(IST), reason))
        self.metrics.state = state

    def take_gaps(self) -> list[Gap]:
        gaps, self._gaps = self._gaps, []
        return gaps

    def _set_subscriptions(self, resolution: Resolution) -> None:
        subs = resolution.subscriptions
        capacity = 3000 * 3
        if len(subs) > capacity:  # Kite's limit per API key: collect the first ones, say so
            dropped = list(subs)[capacity:]
            subs = {t: subs[t] for t in list(subs)[:capacity]}
            self.metrics.errors += 1
            log.error(
                "collector %s: %d instruments over Kite's limit of %d not subscribed",
                self.name,
                len(dropped),
                capacity,
            )
        self._subs = dict(subs)
        self._table = frames.SubscriptionTable(self._subs)
        slot_of = self._slot_of
        for token in self._subs:
            slot_of.setdefault(token, len(slot_of))
        grow = len(slot_of) - len(self._vb_day)
        if grow:
            self._vb_day = np.concatenate([self._vb_day, np.full(grow, _NO_DAY, np.int64)])
            self._vb_base = np.concatenate([self._vb_base, np.zeros(grow, np.int64)])
            self._vb_last = np.concatenate([self._vb_last, np.full(grow, _NEG_INF)])
            self._depth_due = np.concatenate([self._depth_due, np.full(grow, _NEG_INF)])
            self._frame_pos = np.zeros(len(slot_of), np.intp)
        self._state_slots = np.array([slot_of[t] for t in self._table.tokens.tolist()], np.intp)
        self._known.update(subs)
        self.metrics.subscribed_tokens = len(self._subs)
        self.metrics.unknown_symbols = resolution.unknown_symbols

    # -- ticker client ---------------------------------------------------------------------
    async def _start_client(self) -> None:
        creds = self._credentials
        assert creds is not None
        o = self.options
        client = KiteTickerClient(
            creds.api_key, creds.access_token, self.ws_root, on_frame=self._on_frame,
            stall_timeout=o.stall_timeout, backoff_initial=o.backoff_initial,
            backoff_max=o.backoff_max,
        )  # fmt: skip
        if self._subs:
            await client.subscribe(list(self._subs), self.mode)
        self._client = client
        self._client_task = asyncio.create_task(
            self._run_client(client), name=f"collector-{self.name}-ticker"
        )

    async def _run_client(self, client: KiteTickerClient) -> None:
        try:
            await client.run()
        except KiteTokenError as exc:
            self.metrics.state = "auth_failed"
            self.metrics.last_error = str(exc)
            log.error("collector %s: %s", self.name, exc)
            self._on_feed_events(self._monitor.fail("auth_failed", datetime.now(IST)))
        except Exception as exc:  # the client gave up for a reason we did not foresee
            self.metrics.errors += 1
            self.metrics.state = "failed"
            self.metrics.last_error = f"ticker stopped: {type(exc).__name__}: {exc}"
            log.exception("collector %s: ticker stopped", self.name)
            self._on_feed_events(self._monitor.fail("ticker_failed", datetime.now(IST)))

    async def _stop_client(self) -> None:
        client, task = self._client, self._client_task
        self._client = self._client_task = None
        if client is None:
            return
        await client.close()
        if task is not None:
            try:
                await asyncio.wait_for(task, 5.0)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for k in COUNTERS:
            self._base[k] += int(getattr(client.metrics, k))

    async def _restart_client(self, reason: str) -> None:
        log.warning("collector %s: reconnecting (%s)", self.name, reason)
        self.metrics.client_restarts += 1
        await self._stop_client()
        if self._credentials is not None and self.metrics.state in ACTIVE_STATES:
            await self._start_client()

    def ticker_metrics(self) -> dict[str, Any]:
        """Ticker counters over every client this collector used."""
        out: dict[str, Any] = dict(self._base)
        client = self._client
        if client is not None:
            for k in COUNTERS:
                out[k] += int(getattr(client.metrics, k))
            out["connected"] = client.metrics.connected
            out["last_error"] = client.metrics.last_error
            last = client.metrics.last_frame_at
            out["last_frame_at"] = last.isoformat() if last else None
        else:
            out["connected"] = 0
        out["reconnects"] += self.metrics.client_restarts
        return out

    # -- hot path ----------------------------------------------------------------------------
    def _on_frame(self, data: bytes, received_at: datetime) -> None:
        """The ticker's raw-frame callback (it counts frames; decoding is ours)."""
        client = self._client
        try:
            count = self.handle_frame(data, received_at)
        except FrameError as exc:
            if client is not None:
                tm = client.metrics
                tm.decode_errors += 1
                tm.errors += 1
                tm.last_error = f"malformed frame skipped: {exc}"
            log.warning("collector %s: malformed frame skipped: %s", self.name, exc)
            return
        except Exception as exc:  # never into the ticker: it would reconnect
            self.metrics.errors += 1
            self.metrics.last_error = f"tick handling failed: {type(exc).__name__}: {exc}"
            log.exception("collector %s: tick handling failed", self.name)
            return
        if client is not None:
            client.metrics.ticks += count

    def handle_frame(self, data: bytes, received_at: datetime) -> int:
        """Store, aggregate and publish one binary frame; returns the ticks it carried.

        The columnar path (``frames``): the frame is decoded into numpy columns, filtered
        (unsubscribed, other mode, stale) and encoded for COPY in bulk; only volume
        deltas, depth conflation and the aggregator (on values, not ``Tick`` objects) run
        per tick. Frames with several packet kinds (a full-mode collector's stocks and
        indices) are put back into frame order first; a feed-time leap splits the frame
        where it happens (the aggregator advances there). A writer without
        ``put_encoded`` takes the per-tick path ``handle_ticks``. Both give the same rows,
        bars and live messages. Raises ``FrameError`` for a malformed frame
        (nothing of it is used)."""
        if len(data) < 2:
            return 0
        cols = decode_frame_columns(data)
        n = len(cols)
        put_encoded = getattr(self.writer, "put_encoded", None)
        if n == 0 or put_encoded is None:
            ticks = decode_frame(data, received_at)
            self.handle_ticks(ticks)
            return len(ticks)
        lengths = cols.packet_length
        layout = None
        if n > 1 and bool((lengths != lengths[0]).any()):
            layout = frames.column_offsets(data, cols)
        self._columns(data, cols, layout, received_at, put_encoded)
        return n

    def _columns(self, data: bytes, cols: TickColumns,
                 layout: tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]] | None,
                 received_at: datetime,
                 put_encoded: Callable[[Any, bytes, int], None]) -> None:  # fmt: skip
        """``handle_frame`` on columns (``layout``: packet offsets and frame positions of
        the rows of a frame with several packet kinds, else None)."""
        m = self.metrics
        lengths = cols.packet_length
        length = int(lengths[0])
        recv = received_at.timestamp()
        subscribed, slots = self._table.lookup(cols.instrument_token)
        if layout is None:
            if PACKET_MODES[length] != self.mode:
                unsub = int((~subscribed).sum())
                m.ticks_unsubscribed += unsub
                m.ticks_other_mode += len(cols) - unsub
                return
            keep = subscribed
            n_other = 0
        else:
            mode_ok = np.array([PACKET_MODES[k] == self.mode for k in lengths.tolist()])
            keep = subscribed & mode_ok
            n_other = int((subscribed & ~mode_ok).sum())
        ets = cols.exchange_timestamp
        has_ets = ets != 0  # 0 as well for packets without an exchange time
        t = np.where(has_ets, ets, recv)
        max_age = self.options.max_tick_age
        if max_age is not None:
            stale = keep & (t < recv - max_age)
            n_stale = int(stale.sum())
            if n_stale:
                keep = keep & ~stale
        else:
            n_stale = 0
        m.ticks_unsubscribed += len(cols) - int(subscribed.sum())
        m.ticks_other_mode += n_other
        m.ticks_stale += n_stale
        rows = np.flatnonzero(keep)
        if not len(rows):
            return
        if layout is not None:
            rows = rows[np.argsort(layout[1][rows], kind="stable")]  # frame order
        # Feed time leaping ahead (the session's first tick, a replay) advances the
        # aggregator before the tick that leaps, as the per-tick path does: the frame goes
        # in segments that each start at such a tick.
        t_rows = t[rows]
        ets_rows = has_ets[rows]
        bars: list[BarUpdate] = []
        start, n = 0, len(rows)
        while start < n:
            if ets_rows[start] and t_rows[start] > self._agg_now + _JUMP:
                self._jump_to(float(t_rows[start]), recv)
            jump_at = self._agg_now + _JUMP
            later = np.flatnonzero(ets_rows[start + 1 :] & (t_rows[start + 1 :] > jump_at))
            end = start + 1 + int(later[0]) if len(later) else n
            bars.extend(self._rows(data, cols, rows[start:end], layout, slots, t, has_ets,
                                   received_at, put_encoded))  # fmt: skip
            start = end
        if bars:
            self._on_bars(bars)
        # the newest tick (last of the latest-timestamped ones) drives the feed clock
        k = n - 1 - int(np.argmax(t_rows[::-1]))
        newest_t = float(t_rows[k])
        exchange_time = bool(ets_rows[k])
        if exchange_time:
            self._clock.observe(newest_t, recv)
        ts = datetime.fromtimestamp(newest_t, IST) if exchange_time else received_at
        if m.last_tick_at is None or ts > m.last_tick_at:
            m.last_tick_at = ts

    def _rows(self, data: bytes, cols: TickColumns, rows: npt.NDArray[np.intp],
              layout: tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]] | None,
              slots_all: npt.NDArray[np.intp], t_all: npt.NDArray[np.float64],
              has_ets: npt.NDArray[np.bool_],
              received_at: datetime,
              put_encoded: Callable[[Any, bytes, int], None]) -> list[BarUpdate]:  # fmt: skip
        """The kept ``rows`` of a frame (frame order, no feed-time leap after the first):
        volume deltas, depth conflation, newest packets, COPY rows, aggregation; returns
        the aggregator's bar updates."""
        m = self.metrics
        lengths = cols.packet_length
        length = int(lengths[0])
        ets = cols.exchange_timestamp
        if layout is not None:
            row_lengths = lengths[rows]
            uniform = bool((row_lengths == row_lengths[0]).all())
            length = int(row_lengths[0])
        else:
            uniform = True
        slots = slots_all[rows]
        t = t_all[rows]
        tokens = cols.instrument_token[rows].tolist()
        times = t.tolist()
        n = len(rows)
        if uniform:
            quote = length in _HAS_VOLUME
            has_vol = np.full(n, quote)
            bookable = np.full(n, length == FULL_PACKET)
            ois: list[Any] = cols.oi[rows].tolist() if length == FULL_PACKET else [None] * n
            if layout is None:
                offsets = (4 + rows * (length + 2)).tolist()  # frames.uniform_offset
            else:
                offsets = layout[0][rows].tolist()
            kinds: list[int] = [length] * n
        else:
            has_vol = (row_lengths == QUOTE_PACKET) | (row_lengths == FULL_PACKET)
            bookable = row_lengths == FULL_PACKET
            ois = [o if f else None for o, f in zip(cols.oi[rows].tolist(),
                                                    bookable.tolist(), strict=True)]  # fmt: skip
            offsets = layout[0][rows].tolist()  # type: ignore[index]
            kinds = row_lengths.tolist()
        bookable &= (cols.instrument_token[rows] & 0xFF) != INDEX_SEGMENT
        volume = cols.volume_traded[rows]
        cums: list[Any] = (
            volume.tolist() if bool(has_vol.all())
            else [c if v else None for c, v in zip(volume.tolist(), has_vol.tolist(), strict=True)]
        )  # fmt: skip
        state = self._state_slots[slots]
        deltas, depth_rows = self._frame_state(state, t, times, volume, cums, has_vol, bookable)
        latest = self._latest
        refs = zip(repeat(data), offsets, kinds, repeat(received_at), strict=False)
        latest.update(zip(tokens, refs, strict=True))
        self._live.update(tokens)
        self._touched.update(tokens)
        self._touched_now.update(tokens)
        received_us = timestamp_us(received_at)
        t_us = np.where(has_ets[rows], (ets[rows] - PG_EPOCH_S) * _US, received_us)
        if uniform:
            encoded = frames.tick_tuples_sized(
                cols, rows, slots, t_us, received_us, deltas, self._table, self.mode
            )[0]
        else:
            parts = []
            for kind in dict.fromkeys(kinds):
                sel = np.flatnonzero(row_lengths == kind)
                data_k, sizes = frames.tick_tuples_sized(
                    cols, rows[sel], slots[sel], t_us[sel], received_us,
                    [deltas[j] for j in sel.tolist()], self._table, self.mode,
                )  # fmt: skip
                parts.append((data_k, sizes, sel))
            encoded = pgcopy.interleave(parts, n)
        put_encoded("ticks", encoded, n)
        m.ticks_received += n
        if len(depth_rows):
            sel = depth_rows
            put_encoded(
                "depth",
                frames.depth_tuples(cols, rows[sel], slots[sel], t_us[sel], self._table),
                len(sel),
            )
            m.depth_snapshots += len(sel)
        return self._agg.on_batch(tokens, times, cols.last_price[rows].tolist(), cums, ois)

    def _frame_state(
        self,
        state: npt.NDArray[np.intp],
        t: npt.NDArray[np.float64],
        times: list[float],
        volume: npt.NDArray[np.int64],
        cums: list[Any],
        has_vol: npt.NDArray[np.bool_],
        bookable: npt.NDArray[np.bool_],
    ) -> tuple[list[int | None], npt.NDArray[np.intp]]:
        """Volume deltas (None without volume) and the rows whose order book is due, for
        a frame's kept ticks (state slots ``state``, in frame order); updates the state.

        One vectorised update when each instrument appears once in the frame: in-order
        packets of the same day (``VolumeBaseline``'s common case) get cum - base at once,
        the others (first packet, new day, reset, out of order) go through
        ``_volume_delta``, which is what the per-tick path does for each tick; instruments
        being independent, the order between them does not matter. A frame with an
        instrument twice (or the very first packets) is done tick by tick, in order."""
        n = len(state)
        interval = self.options.depth_interval
        vb_day, vb_base, vb_last = self._vb_day, self._vb_base, self._vb_last
        due = self._depth_due
        if self._started is None or self._repeats(state):
            deltas: list[int | None] = []
            rows: list[int] = []
            books = bookable.tolist()
            for j, (slot, ti, cum) in enumerate(zip(state.tolist(), times, cums, strict=True)):
                deltas.append(None if cum is None else self._volume_delta(slot, ti, cum))
                if books[j] and ti >= due[slot]:
                    rows.append(j)
                    due[slot] = ti + interval
            return deltas, np.array(rows, np.intp)
        sv = state[has_vol]
        tv = t[has_vol]
        cv = volume[has_vol]
        base = vb_base[sv]
        day = (tv + IST_OFFSET_S) // 86_400
        ok = (vb_day[sv] == day) & (cv >= base) & (tv >= vb_last[sv])
        delta = cv - base
        vb_base[sv[ok]] = cv[ok]
        vb_last[sv[ok]] = tv[ok]
        out = delta.tolist()
        for i in np.flatnonzero(~ok).tolist():
            out[i] = self._volume_delta(int(sv[i]), float(tv[i]), int(cv[i]))
        if len(out) == n:
            deltas = out
        else:
            deltas = [None] * n
            for j, d in zip(np.flatnonzero(has_vol).tolist(), out, strict=True):
                deltas[j] = d
        sb = state[bookable]
        tb = t[bookable]
        go = tb >= due[sb]
        due[sb[go]] = tb[go] + interval
        return deltas, np.flatnonzero(bookable)[go]

    def _repeats(self, state: npt.NDArray[np.intp]) -> bool:
        """Whether a state slot occurs more than once in ``state``: each slot is given its
        row, and a slot that occurs again has the later row (~6 us a frame; np.unique
        sorts, ~40 us)."""
        rows = np.arange(len(state))
        pos = self._frame_pos
        pos[state] = rows
        return bool((pos[state] != rows).any())

    def handle_ticks(self, ticks: Iterable[Tick]) -> None:
        """Store, aggregate and publish a batch of ticks (one frame, usually).

        The hot path: attributes are bound to locals and the common case of the volume
        delta is inlined (see ``_volume_delta``), since this runs for every tick."""
        subs = self._subs
        on_tick = self._agg.on_tick
        live_add = self._live.add
        m = self.metrics
        rows: list[tuple[Any, ...]] = []
        depth: list[tuple[Any, ...]] = []
        bars: list[BarUpdate] = []
        depth_due = self._depth_due
        interval = self.options.depth_interval
        slot_of = self._slot_of
        vb_day, vb_base, vb_last = self._vb_day, self._vb_base, self._vb_last
        latest = self._latest
        touched_add = self._touched.add
        touched_now_add = self._touched_now.add
        newest: Tick | None = None
        newest_t = _NEG_INF
        max_age = self.options.max_tick_age
        stale_before = _NEG_INF
        jump_at = self._agg_now + _JUMP
        mode = self.mode
        full = mode == "full"
        last_dt, last_t = self._last_dt, self._last_t
        for tick in ticks:
            token = tick.instrument_token
            sub = subs.get(token)
            if sub is None:
                m.ticks_unsubscribed += 1
                continue
            if tick.mode != mode:
                m.ticks_other_mode += 1
                continue
            ts = tick.exchange_timestamp or tick.received_at
            if ts is None:
                continue
            if ts is last_dt or ts == last_dt:
                t = last_t
            else:
                t = last_t = ts.timestamp()
                last_dt = ts
            if max_age is not None and tick.received_at is not None:
                if stale_before == _NEG_INF:  # one frame: one receive time
                    stale_before = tick.received_at.timestamp() - max_age
                if t < stale_before:
                    m.ticks_stale += 1
                    continue
            if t > jump_at and tick.exchange_timestamp is not None:
                self._jump(tick, t)
                jump_at = self._agg_now + _JUMP
            cum = tick.volume_traded
            slot = slot_of[token]
            if cum is None:
                delta = None
            else:
                base = int(vb_base[slot])
                if (cum >= base and t >= vb_last[slot]
                        and vb_day[slot] == (t + IST_OFFSET_S) // 86_400):  # fmt: skip
                    delta = cum - base  # in order, same day: VolumeBaseline's common case
                    vb_base[slot] = cum
                    vb_last[slot] = t
                else:
                    delta = self._volume_delta(slot, t, cum)
            rows.append(tick_row(tick, sub.instrument, delta))
            bars.extend(on_tick(tick))
            latest[token] = tick
            touched_add(token)
            touched_now_add(token)
            live_add(token)
            if full and token & 0xFF != INDEX_SEGMENT:
                if t >= depth_due[slot]:
                    row = depth_row(tick, sub.instrument)
                    if row is not None:
                        depth.append(row)
                        depth_due[slot] = t + interval
            if t >= newest_t:
                newest_t = t
                newest = tick
        self._last_dt, self._last_t = last_dt, last_t
        if rows:
            m.ticks_received += len(rows)
            self.writer.put("ticks", rows)
        if depth:
            m.depth_snapshots += len(depth)
            self.writer.put("depth", depth)
        if bars:
            self._on_bars(bars)
        if newest is not None:
            ts = newest.timestamp
            if newest.exchange_timestamp is not None and newest.received_at is not None:
                self._clock.observe(newest_t, newest.received_at.timestamp())
            if ts is not None and (m.last_tick_at is None or ts > m.last_tick_at):
                m.last_tick_at = ts

    def _jump(self, tick: Tick, t: float) -> None:
        self._jump_to(t, tick.received_at.timestamp() if tick.received_at else t)

    def _jump_to(self, t: float, received: float) -> None:
        """Feed time leapt ahead (first tick, a new session after a stale snapshot, a
        replay): advance the aggregator first, or it would drop the tick as from the future."""
        if not self._clock.plausible(t, received):
            return  # the aggregator will ignore it as from the future
        self._clock.observe(t, received)
        self._advance(t)

    def _advance(self, feed_now: float) -> None:
        self._agg_now = max(self._agg_now, feed_now)
        self._on_bars(self._agg.on_time(datetime.fromtimestamp(feed_now, IST)))

    def _volume_delta(self, slot: int, t: float, cum: int) -> int:
        """``VolumeBaseline.delta`` on the arrays' slot ``slot`` (the rules are there)."""
        if self._started is None:
            self._started = t  # as the aggregator does: watching since the first tick
        day = int((t + IST_OFFSET_S) // 86_400)
        current = int(self._vb_day[slot])
        if day == current:
            base = int(self._vb_base[slot])
            if cum > base:
                self._vb_base[slot] = cum
                if t > self._vb_last[slot]:
                    self._vb_last[slot] = t
                return cum - base
            if t > self._vb_last[slot]:
                self._vb_last[slot] = t
                if cum < base:  # a reset
                    self._vb_base[slot] = cum
            return 0
        if day > current:
            self._vb_day[slot] = day
            self._vb_base[slot] = cum
            self._vb_last[slot] = t
            return cum if self._started <= session_open_epoch(day) else 0
        return 0

    def _on_bars(self, updates: Iterable[BarUpdate]) -> None:
        rows: list[tuple[Any, ...]] = []
        pub = self.publisher
        for upd in updates:
            sub = self._known.get(upd.bar.instrument_token)
            if sub is None:
                continue
            pub.bar(sub.symbol, upd)
            if upd.kind == "forming":
                continue
            if upd.kind == "final":
                self.metrics.bars_created += 1
            else:
                self.metrics.bars_revised += 1
            rows.append(bar_row(upd.bar, sub.instrument))
        if rows:
            self.writer.put("bars", rows)

    # -- timer: feed time, feed health, stats -----------------------------------------------
    async def _timer(self) -> None:
        while True:
            await asyncio.sleep(self.options.timer_interval)
            try:
                self.on_timer(time.time())
            except Exception as exc:
                self.metrics.errors += 1
                self.metrics.last_error = f"timer failed: {type(exc).__name__}: {exc}"
                log.exception("collector %s: timer failed", self.name)

    def on_timer(self, wall: float) -> None:
        feed_now = self._clock.now(wall)
        if feed_now is not None:
            self._advance(feed_now)
        now = datetime.fromtimestamp(wall, IST)
        client = self._client
        if client is not None and self.metrics.state in ACTIVE_STATES:
            self._on_feed_events(self._monitor.observe(self._sample(client, now), now))
            if self.metrics.state == "starting" and self._monitor.state == "up":
                self.metrics.state = "running"
            if self._monitor.state == "up":
                self._garbage_restarts = 0
            # malformed frames only: reconnect, less often while it persists (3 s, 6 s, ...)
            patience = self.options.garbage_reconnect_after * 2 ** min(self._garbage_restarts, 4)
            if self._monitor.garbage_seconds(now) >= patience and (
                self._restart_task is None or self._restart_task.done()
            ):
                self._garbage_restarts += 1
                self._monitor.reset_garbage()  # a reconnect is under way: count afresh
                self._restart_task = asyncio.create_task(self._restart_client("malformed frames"))
        if not hasattr(self.publisher, "add_source"):
            self.flush_live()
        self._publish_forming(self._touched_now, (self._shortest,))
        self._touched_now = set()
        if wall >= self._next_stats:
            self._next_stats = wall + self.options.stats_interval
            touched, self._touched = self._touched, set()
            self._publish_stats(touched)
            self._publish_forming(touched, self._longer)

    def _sample(self, client: KiteTickerClient, now: datetime) -> FeedSample:
        tm = client.metrics
        expected = -(-len(client.subscriptions) // client.per_connection)
        b = self._base
        last = tm.last_frame_at
        silent = (now - last).total_seconds() if last is not None else 0.0
        return FeedSample(
            expected=expected,
            connected=tm.connected,
            reconnects=b["reconnects"] + tm.reconnects + self.metrics.client_restarts,
            stalls=b["stalls"] + tm.stalls,
            ticks=b["ticks"] + tm.ticks,
            decode_errors=b["decode_errors"] + tm.decode_errors,
            silent_for=silent,
        )

    def _on_feed_events(self, events: list[FeedEvent]) -> None:
        for ev in events:
            self._publish_status(ev)
            if ev.state == "feed_lost":
                if self.metrics.state in ACTIVE_STATES:
                    self.metrics.state = "feed_lost"
                if self._lost_since is None:  # not a new reason for an ongoing loss
                    self.metrics.feed_losses += 1
                    # the gap starts after the last tick we have (exchange time)
                    self._lost_since = self.metrics.last_tick_at or ev.at
                self._lost_reason = ev.reason
            else:
                if self.metrics.state == "feed_lost":
                    self.metrics.state = "running"
                self._close_gap(ev.at)

    def _close_gap(self, at: datetime) -> None:
        """The feed is back (or we stop waiting for it): record the period without data."""
        start = self._lost_since
        if start is None:
            return
        feed_now = self._clock.now(at.timestamp())
        end = datetime.fromtimestamp(feed_now, IST) if feed_now else at
        self._gaps.append(Gap(start, max(start, end), self._lost_reason, tuple(self.symbols)))
        self._lost_since = None

    def _publish_status(self, ev: FeedEvent) -> None:
        extra: dict[str, Any] = {}
        if ev.lost_at is not None:
            extra["lost_at"] = ev.lost_at.isoformat()
        data = status_data(ev.state, self.name, ev.at, ev.reason, **extra)
        for sub in self._subs.values():
            self.publisher.status(sub.symbol, data)

    def _tick_of(self, token: int) -> Tick | None:
        tick = self._latest.get(token)
        if isinstance(tick, tuple):
            tick = self._latest[token] = frames.ref_tick(tick)
        return tick

    def _decode_latest(self, tokens: Iterable[int]) -> None:
        """Turn the newest packets of ``tokens`` into ``Tick``s, decoded together."""
        latest = self._latest
        todo = [t for t in tokens if isinstance(latest.get(t), tuple)]
        if todo:
            refs: list[frames.PacketRef] = [latest[t] for t in todo]  # type: ignore[misc]
            for token, tick in zip(todo, frames.decode_refs(refs), strict=True):
                latest[token] = tick

    # -- live ticks and books: conflated, handed over when the publisher flushes ----------
    def _attach_live(self) -> None:
        add = getattr(self.publisher, "add_source", None)
        if add is not None:
            add(self.flush_live)

    def _detach_live(self) -> None:
        remove = getattr(self.publisher, "remove_source", None)
        if remove is not None:
            remove(self.flush_live)

    def flush_live(self) -> None:
        """Give the publisher the newest tick (and book, full mode) of every instrument
        that ticked since the last call. The publisher calls this before each flush (or
        the timer does, for a publisher that does not pull)."""
        if not self._live:
            return
        tokens, self._live = self._live, set()
        pub = self.publisher
        books = self.mode == "full"
        self._decode_latest(tokens)
        for token in tokens:
            sub = self._subs.get(token)
            tick = self._tick_of(token)
            if sub is None or tick is None:
                continue
            pub.tick(sub.symbol, tick)
            if books and token & 0xFF != INDEX_SEGMENT:
                pub.orderbook(sub.symbol, tick)

    def _publish_stats(self, tokens: set[int]) -> None:
        self._decode_latest(tokens)
        for token in tokens:
            sub = self._subs.get(token)
            tick = self._tick_of(token)
            if sub is None or tick is None:
                continue
            day = self._agg.latest_bar(token, "day") if self._has_day else None
            self.publisher.stats(sub.symbol, stats_data(tick, day))

    def _publish_forming(self, tokens: Iterable[int], timeframes: Sequence[str]) -> None:
        """The current bars of instruments that ticked (the publisher keeps the latest)."""
        latest_bar = self._agg.latest_bar
        for token in tokens:
            sub = self._subs.get(token)
            if sub is None:
                continue
            for tf in timeframes:
                bar = latest_bar(token, tf)
                if bar is not None and not bar.final:
                    self.publisher.bar(sub.symbol, BarUpdate(bar, "forming"))

    # -- status --------------------------------------------------------------------------------
    def lag_ms(self, now: datetime) -> float | None:
        last = self.metrics.last_tick_at
        return None if last is None else (now - last).total_seconds() * 1000.0

    def metrics_dict(self) -> dict[str, Any]:
        """Everything for ``md.collector_status.metrics``."""
        m = self.metrics
        return {
            "state": m.state,
            "mode": self.mode,
            "symbols": len(self._subs),
            "ticks_unsubscribed": m.ticks_unsubscribed,
            "ticks_stale": m.ticks_stale,
            "ticks_other_mode": m.ticks_other_mode,
            "bars_revised": m.bars_revised,
            "depth_snapshots": m.depth_snapshots,
            "feed_losses": m.feed_losses,
            "client_restarts": m.client_restarts,
            "handling_errors": m.errors,
            "unknown_symbols": list(m.unknown_symbols),
            "feed": self._monitor.state,
            "ticker": self.ticker_metrics(),
            "aggregator": self._agg.stats.as_dict(),
        }

    @property
    def errors(self) -> int:
        return self.metrics.errors + int(self.ticker_metrics()["errors"])

    @property
    def reconnects(self) -> int:
        return int(self.ticker_metrics()["reconnects"])
