"""Integer bar keys: the hot path works on IST minute numbers, not datetimes.

A key is the number of whole IST minutes since the Unix epoch at which a bar starts.
Integer arithmetic here is the same alignment as ``Timeframe.bar_start`` (09:15 session
anchor, day bars at 00:00 IST) at a fraction of the cost; a test checks they agree.
"""

from __future__ import annotations

from datetime import datetime

from market_bridge.kite.models import IST
from market_bridge.market.timeframes import SESSION_ANCHOR

IST_OFFSET_S = 19_800  # +05:30; IST has no DST, so a constant offset is exact
DAY_MINUTES = 1440
ANCHOR_MINUTE = SESSION_ANCHOR.hour * 60 + SESSION_ANCHOR.minute  # 555 = 09:15


def minute_key(epoch_s: float) -> int:
    """IST minute number containing ``epoch_s`` (floor, also for pre-1970 values)."""
    return int((epoch_s + IST_OFFSET_S) // 60)


def period_key(minute: int, minutes: int) -> int:
    """Start key of the ``minutes``-long bar containing ``minute``.

    Intraday bars are aligned to 09:15 of the minute's own IST day; floor division makes
    pre-09:15 minutes fall in the bars before the anchor, as ``Timeframe.bar_start`` does.
    Every supported length divides 1440, so bars tile across midnight consistently.
    """
    if minutes == 1:
        return minute
    day_start = minute - minute % DAY_MINUTES
    if minutes == DAY_MINUTES:
        return day_start
    anchor = day_start + ANCHOR_MINUTE
    return anchor + ((minute - anchor) // minutes) * minutes


def key_epoch(key: int) -> int:
    """Unix seconds at which the minute ``key`` starts."""
    return key * 60 - IST_OFFSET_S


def key_datetime(key: int) -> datetime:
    """Aware IST datetime at which the minute ``key`` starts."""
    return datetime.fromtimestamp(key_epoch(key), IST)


def session_open_epoch(day: int) -> int:
    """Unix seconds of 09:15 IST on IST day number ``day`` (minute_key // 1440)."""
    return key_epoch(day * DAY_MINUTES + ANCHOR_MINUTE)
