"""Feed time and feed health, from what the ticker reports. Pure: callers pass the clock.

``FeedClock`` estimates the exchange's current time from the newest exchange timestamp
and how long ago it arrived. The aggregator is advanced with it, not with the wall clock,
so a replayed day (the simulator's replay mode, exchange time far behind wall time)
closes its bars exactly like a live one, and a live feed behaves as with the wall clock.
The estimate never runs ahead of the newest timestamp plus elapsed wall time, so it never
finalises a bar before the feed itself could have.

``FeedMonitor`` turns polled ticker counters into ``feed_lost`` / ``feed_restored`` events:
a connection fewer than expected, any reconnect (even one that completed between two
polls), a stall, or a stream of malformed frames with no valid tick for ``garbage_after``
seconds (such a loss ends with the next valid tick, not with a reconnect).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from market_bridge.collect.messages import FeedState

Health = Literal["idle", "up", "down"]


class FeedClock:
    def __init__(self, max_ahead: float = 60.0) -> None:
        self.max_ahead = max_ahead
        self._offset: float | None = None  # exchange time - receive time of the newest tick
        self._newest = float("-inf")
        self._last = float("-inf")

    @property
    def ready(self) -> bool:
        return self._offset is not None

    def plausible(self, exchange_epoch: float, received_epoch: float) -> bool:
        """False for a timestamp further ahead of its arrival than any clock skew explains:
        one bad packet must not move feed time (and close every bar) into the future."""
        return exchange_epoch - received_epoch <= self.max_ahead

    def observe(self, exchange_epoch: float, received_epoch: float) -> None:
        if exchange_epoch >= self._newest and self.plausible(exchange_epoch, received_epoch):
            self._newest = exchange_epoch
            self._offset = exchange_epoch - received_epoch

    def now(self, wall_epoch: float) -> float | None:
        """Estimated exchange time at ``wall_epoch``; never decreases. None before any tick."""
        if self._offset is None:
            return None
        value = wall_epoch + self._offset
        if value > self._last:
            self._last = value
        return self._last


@dataclass(frozen=True, slots=True)
class FeedSample:
    """Cumulative ticker counters at one poll."""

    expected: int  # connections that should be open (0: nothing subscribed)
    connected: int
    reconnects: int
    stalls: int
    ticks: int
    decode_errors: int
    silent_for: float = 0.0  # seconds since the last frame (heartbeats included)


@dataclass(frozen=True, slots=True)
class FeedEvent:
    state: FeedState
    at: datetime
    reason: str
    lost_at: datetime | None = None  # on feed_restored: when the feed was lost


class FeedMonitor:
    def __init__(self, garbage_after: float = 1.0, stall_after: float = float("inf")) -> None:
        self.garbage_after = garbage_after
        # the ticker counts a stall only after it closed the connection: a silence this long
        # already tells a stall from a disconnect
        self.stall_after = stall_after
        self.state: Health = "idle"
        self.reason: str | None = None
        self.lost_at: datetime | None = None
        self._prev: FeedSample | None = None
        self._garbage_since: datetime | None = None
        self._ticks_at_loss = 0

    def garbage_seconds(self, now: datetime) -> float:
        """How long only malformed frames (no valid tick) have arrived."""
        if self._garbage_since is None:
            return 0.0
        return (now - self._garbage_since).total_seconds()

    def reset_garbage(self) -> None:
        self._garbage_since = None

    def new_client(self) -> None:
        """The ticker client was replaced: its counters start again from zero."""
        self._prev = None
        self._garbage_since = None

    def observe(self, s: FeedSample, now: datetime) -> list[FeedEvent]:
        prev = self._prev or s
        self._prev = s
        new_reconnects = s.reconnects - prev.reconnects
        new_stalls = s.stalls - prev.stalls
        if s.ticks > prev.ticks:
            self._garbage_since = None
        elif s.decode_errors > prev.decode_errors and self._garbage_since is None:
            self._garbage_since = now
        garbage = self.garbage_seconds(now) >= self.garbage_after
        connected = s.expected > 0 and s.connected >= s.expected
        events: list[FeedEvent] = []
        if self.state == "up" and (new_reconnects > 0 or not connected or garbage):
            if new_stalls > 0 or s.silent_for >= self.stall_after:
                reason = "stall"
            elif new_reconnects > 0 or not connected:
                reason = "disconnect"
            else:
                reason = "garbage"
            self._ticks_at_loss = s.ticks
            events.extend(self.fail(reason, now))
        # a garbled feed is back only when valid ticks are: reconnecting alone proves nothing
        proven = self.reason != "garbage" or s.ticks > self._ticks_at_loss
        if self.state != "up" and connected and not garbage and proven:
            if self.state == "down":
                events.append(FeedEvent("feed_restored", now, self.reason or "", self.lost_at))
            self.state = "up"
            self.reason = None
            self.lost_at = None
        if s.expected == 0 and self.state == "up":
            self.state = "idle"  # nothing subscribed: nothing to lose
        return events

    def fail(self, reason: str, now: datetime) -> list[FeedEvent]:
        """The feed is lost for a reason the counters do not show (e.g. auth failure).
        Already down for another reason: announced again, since this one needs action."""
        if self.state == "down":
            if reason == self.reason:
                return []
            self.reason = reason
            return [FeedEvent("feed_lost", now, reason)]
        self.state = "down"
        self.reason = reason
        self.lost_at = now
        return [FeedEvent("feed_lost", now, reason)]
