"""Per-tick traded quantity from Kite's cumulative day volume (``volume_traded``).

Kite sends snapshots: each packet carries the day's cumulative volume so far, so the
quantity traded between two packets is the difference. The rules (also in
docs/aggregation.md), per instrument and IST day:

- First packet of a day: its cumulative value is the baseline. It counts in full only if
  the aggregator has been running since before that day's 09:15 session open (then nothing
  of the day can have been missed); otherwise it counts 0, because the value includes
  trades from before we connected, which belong to bars we never saw.
- Later packets: delta = value - baseline when the value is higher (the baseline rises).
  Volume is therefore attributed to the packet that first reveals it, even if an older
  packet arrives later; an equal or lower value counts 0, so nothing is counted twice and
  nothing is negative.
- A lower value on a packet *newer* (strictly later exchange time) than every packet seen
  that day is a reset (Kite/reconnect): the baseline drops to the new value, delta 0.
  A lower value with the same or an older time is an out-of-order packet, not a reset:
  Kite's exchange timestamps have 1 s resolution, so reordering within a second must not
  lower the baseline (that would count the same volume again).
- A packet from an earlier day than the current one counts 0 and changes nothing.
"""

from __future__ import annotations

from market_bridge.aggregation.keys import session_open_epoch

_NO_DAY = -(2**62)


class VolumeBaseline:
    __slots__ = ("base", "day", "last_ts", "resets", "started")

    def __init__(self, started: float) -> None:
        self.started = started  # Unix seconds the aggregator started watching
        self.day = _NO_DAY
        self.base = 0
        self.last_ts = float("-inf")
        self.resets = 0

    def delta(self, day: int, t: float, cum: int) -> int:
        """Quantity newly revealed by a packet at ``t`` (IST day ``day``) with ``cum``."""
        if day == self.day:
            base = self.base
            if cum > base:
                self.base = cum
                if t > self.last_ts:
                    self.last_ts = t
                return cum - base
            if t > self.last_ts:
                self.last_ts = t
                if cum < base:
                    self.base = cum
                    self.resets += 1
            return 0
        if day > self.day:
            self.day = day
            self.base = cum
            self.last_ts = t
            return cum if self.started <= session_open_epoch(day) else 0
        return 0
