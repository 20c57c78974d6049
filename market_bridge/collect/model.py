"""What a collector is configured with and reports: options, credentials, metrics, gaps,
and the sinks it writes to (the storage writer, the live publisher). No logic."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from market_bridge.aggregation import BarUpdate
from market_bridge.kite.models import Tick
from market_bridge.market.timeframes import TIMEFRAMES
from market_bridge.storage.writer import Kind

INDEX_SEGMENT = 9  # indices carry no depth
ACTIVE_STATES = frozenset({"starting", "running", "feed_lost"})


class RowSink(Protocol):
    def put(self, kind: Kind, rows: Sequence[tuple[Any, ...]]) -> None: ...


class EncodedSink(RowSink, Protocol):
    """A ``RowSink`` that also takes binary COPY tuples (``StorageWriter``): the columnar
    path uses it when the writer has it."""

    def put_encoded(self, kind: Any, data: bytes, count: int) -> None: ...


class LiveSink(Protocol):
    def tick(self, symbol: str, tick: Tick) -> None: ...
    def orderbook(self, symbol: str, tick: Tick) -> None: ...
    def bar(self, symbol: str, update: BarUpdate) -> None: ...
    def stats(self, symbol: str, data: dict[str, Any]) -> None: ...
    def status(self, symbol: str, data: dict[str, Any]) -> None: ...


class LiveSource(Protocol):
    """A publisher that pulls conflated ticks and books at flush time (``LivePublisher``)."""

    def add_source(self, source: Callable[[], None]) -> None: ...
    def remove_source(self, source: Callable[[], None]) -> None: ...


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


COUNTERS = (
    "frames",
    "heartbeats",
    "ticks",
    "reconnects",
    "stalls",
    "errors",
    "decode_errors",
    "server_errors",
)
