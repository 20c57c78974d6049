"""One collector: a Kite ticker connection set -> bars, storage rows and live messages.

Per tick (the hot path, synchronous, called by the ticker client for each frame):
the tick row (with its volume delta) goes to the storage writer; the aggregator turns it
into bar updates (final and revised bars are stored with 'live' provenance and their
revision, and published); full-mode depth is stored at most once per ``depth_interval``
per instrument and published conflated. A timer (``timer_interval``) advances the
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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from market_bridge.aggregation import BarAggregator, BarUpdate
from market_bridge.aggregation.keys import IST_OFFSET_S
from market_bridge.aggregation.volume import VolumeBaseline
from market_bridge.collect.feed import FeedClock, FeedEvent, FeedMonitor, FeedSample
from market_bridge.collect.messages import stats_data, status_data
from market_bridge.collect.rows import bar_row, tick_row
from market_bridge.collect.spec import Resolution, Subscription
from market_bridge.kite.errors import KiteTokenError
from market_bridge.kite.models import IST, Mode, Tick
from market_bridge.kite.ticker import KiteTickerClient
from market_bridge.market.timeframes import TIMEFRAMES
from market_bridge.storage.rows import depth_row
from market_bridge.storage.writer import Kind

log = logging.getLogger(__name__)

INDEX_SEGMENT = 9  # indices carry no depth
_NEG_INF = float("-inf")
_JUMP = 60.0  # seconds: a tick this far ahead of the aggregator's time advances it first
ACTIVE_STATES = frozenset({"starting", "running", "feed_lost"})


class RowSink(Protocol):
    def put(self, kind: Kind, rows: Sequence[tuple[Any, ...]]) -> None: ...


class LiveSink(Protocol):
    def tick(self, symbol: str, tick: Tick) -> None: ...
    def orderbook(self, symbol: str, tick: Tick) -> None: ...
    def bar(self, symbol: str, update: BarUpdate) -> None: ...
    def stats(self, symbol: str, data: dict[str, Any]) -> None: ...
    def status(self, symbol: str, data: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class CollectorOptions:
    timeframes: tuple[str, ...] = tuple(TIMEFRAMES)
    grace: float = 2.0  # seconds after a bar's end before it is final
    depth_interval: float = 1.0  # stored order book snapshots: at most one per this, per instrument
    stall_timeout: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    timer_interval: float = 0.25
    stats_interval: float = 1.0
    # Ticks whose exchange time is this much older than their arrival are stale snapshots
    # (Kite sends the last state on subscribe outside market hours): ignored, so they do not
    # become bars of a past session. None accepts any age: for replayed feeds (simulator).
    max_tick_age: float | None = 600.0
    garbage_after: float = 1.0  # only malformed frames this long -> feed_lost
    garbage_reconnect_after: float = 3.0  # ... and this long -> reconnect


@dataclass(frozen=True)
class Credentials:
    api_key: str = field(repr=False)
    access_token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Gap:
    """A period when the feed was down while the collector should have collected."""

    start: datetime
    end: datetime
    reason: str
    symbols: tuple[str, ...]


@dataclass
class CollectorMetrics:
    state: str = "stopped"
    subscribed_tokens: int = 0
    ticks_received: int = 0
    ticks_unsubscribed: int = 0  # ticks for tokens no longer subscribed (in-flight)
    ticks_stale: int = 0  # see CollectorOptions.max_tick_age
    # Snapshots in another mode than the collector's: Kite answers a subscribe in quote mode
    # before the mode message applies. Skipped: a quote tick has no exchange timestamp, and
    # bars must not mix receive time with exchange time.
    ticks_other_mode: int = 0
    bars_created: int = 0  # final bars
    bars_revised: int = 0
    depth_snapshots: int = 0
    errors: int = 0  # handling errors (ticker errors are in the ticker metrics)
    feed_losses: int = 0
    client_restarts: int = 0  # reconnects we forced (garbage feed, new credentials)
    last_tick_at: datetime | None = None  # newest tick time (exchange time; ltp/quote: arrival)
    last_error: str | None = None
    unknown_symbols: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        return self.state in ACTIVE_STATES


_COUNTERS = (
    "frames",
    "heartbeats",
    "ticks",
    "reconnects",
    "stalls",
    "errors",
    "decode_errors",
    "server_errors",
)


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
        self._base = dict.fromkeys(_COUNTERS, 0)  # counters of replaced ticker clients
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
        self._volume: dict[int, VolumeBaseline] = {}
        self._started: float | None = None
        self._last_dt: datetime | None = None
        self._last_t = 0.0
        self._depth_due: dict[int, float] = {}
        self._agg_now = float("-inf")  # feed time the aggregator was last advanced to
        self._latest: dict[int, Tick] = {}
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
        self._known.update(subs)
        self.metrics.subscribed_tokens = len(self._subs)
        self.metrics.unknown_symbols = resolution.unknown_symbols

    # -- ticker client ---------------------------------------------------------------------
    async def _start_client(self) -> None:
        creds = self._credentials
        assert creds is not None
        o = self.options
        client = KiteTickerClient(
            creds.api_key, creds.access_token, self.ws_root, on_ticks=self._on_ticks,
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
        for k in _COUNTERS:
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
            for k in _COUNTERS:
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
    def _on_ticks(self, ticks: list[Tick]) -> None:
        try:
            self.handle_ticks(ticks)
        except Exception as exc:  # never into the ticker: it would reconnect
            self.metrics.errors += 1
            self.metrics.last_error = f"tick handling failed: {type(exc).__name__}: {exc}"
            log.exception("collector %s: tick handling failed", self.name)

    def handle_ticks(self, ticks: Iterable[Tick]) -> None:
        """Store, aggregate and publish a batch of ticks (one frame, usually).

        The hot path: attributes are bound to locals and the common case of the volume
        delta is inlined (see ``_volume_delta``), since this runs for every tick."""
        subs = self._subs
        on_tick = self._agg.on_tick
        pub_tick = self.publisher.tick
        pub_book = self.publisher.orderbook
        m = self.metrics
        rows: list[tuple[Any, ...]] = []
        depth: list[tuple[Any, ...]] = []
        bars: list[BarUpdate] = []
        depth_due = self._depth_due
        interval = self.options.depth_interval
        volumes = self._volume
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
            if cum is None:
                delta = None
            else:
                vol = volumes.get(token)
                if (vol is not None and cum >= vol.base and t >= vol.last_ts
                        and vol.day == (t + IST_OFFSET_S) // 86_400):  # fmt: skip
                    delta = cum - vol.base  # in order, same day: VolumeBaseline's common case
                    vol.base = cum
                    vol.last_ts = t
                else:
                    delta = self._volume_delta(token, t, cum)
            rows.append(tick_row(tick, sub.instrument, delta))
            bars.extend(on_tick(tick))
            latest[token] = tick
            touched_add(token)
            touched_now_add(token)
            pub_tick(sub.symbol, tick)
            if full and token & 0xFF != INDEX_SEGMENT:
                pub_book(sub.symbol, tick)
                if t >= depth_due.get(token, _NEG_INF):
                    row = depth_row(tick, sub.instrument)
                    if row is not None:
                        depth.append(row)
                        depth_due[token] = t + interval
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
        """Feed time leapt ahead (first tick, a new session after a stale snapshot, a
        replay): advance the aggregator first, or it would drop the tick as from the future."""
        received = tick.received_at.timestamp() if tick.received_at else t
        if not self._clock.plausible(t, received):
            return  # the aggregator will ignore it as from the future
        self._clock.observe(t, received)
        self._advance(t)

    def _advance(self, feed_now: float) -> None:
        self._agg_now = max(self._agg_now, feed_now)
        self._on_bars(self._agg.on_time(datetime.fromtimestamp(feed_now, IST)))

    def _volume_delta(self, token: int, t: float, cum: int) -> int:
        base = self._volume.get(token)
        if base is None:
            if self._started is None:
                self._started = t  # as the aggregator does: watching since the first tick
            base = self._volume[token] = VolumeBaseline(self._started)
        return base.delta(int((t + IST_OFFSET_S) // 86_400), t, cum)

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

    def _publish_stats(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            sub = self._subs.get(token)
            tick = self._latest.get(token)
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

