"""Bar timeframes, their Kite interval names, and how bars are aligned.

Intraday bars are aligned to the NSE session start (09:15 IST), as Kite's historical
candles are: a 1h bar covers 09:15-10:14, 10:15-11:14, ... and the last one of the day is a
partial 15:15 bar. Day bars are labelled 00:00 IST. Bars are labelled by their start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from market_bridge.kite.models import IST

SESSION_ANCHOR = time(9, 15)


class UnknownTimeframe(ValueError):
    def __init__(self, value: str) -> None:
        self.value = value
        super().__init__(
            f"unknown timeframe {value!r}; valid timeframes: {', '.join(TIMEFRAMES)}"
        )


@dataclass(frozen=True, slots=True)
class Timeframe:
    name: str  # our name: 1m 3m 5m 10m 15m 30m 1h day
    kite_interval: str  # Kite's historical interval name
    minutes: int  # length in minutes; day = 1440
    max_days_per_request: int  # Kite's limit on one historical request's span

    @property
    def is_intraday(self) -> bool:
        return self.name != "day"

    @property
    def delta(self) -> timedelta:
        return timedelta(minutes=self.minutes)

    def bar_start(self, ts: datetime) -> datetime:
        """Start (label) of the bar that contains ``ts``; aware datetime in IST."""
        if ts.tzinfo is None:
            raise ValueError("naive datetime given to Timeframe.bar_start")
        local = ts.astimezone(IST)
        if not self.is_intraday:
            return local.replace(hour=0, minute=0, second=0, microsecond=0)
        anchor = local.replace(
            hour=SESSION_ANCHOR.hour, minute=SESSION_ANCHOR.minute, second=0, microsecond=0
        )
        elapsed = (local - anchor) // timedelta(minutes=1)
        return anchor + timedelta(minutes=(elapsed // self.minutes) * self.minutes)

    def bar_end(self, start: datetime) -> datetime:
        """Exclusive end of the bar labelled ``start`` (day bars end at midnight)."""
        return start + self.delta


_ALL = (
    Timeframe("1m", "minute", 1, 60),
    Timeframe("3m", "3minute", 3, 100),
    Timeframe("5m", "5minute", 5, 100),
    Timeframe("10m", "10minute", 10, 100),
    Timeframe("15m", "15minute", 15, 200),
    Timeframe("30m", "30minute", 30, 200),
    Timeframe("1h", "60minute", 60, 400),
    Timeframe("day", "day", 1440, 2000),
)
TIMEFRAMES: dict[str, Timeframe] = {tf.name: tf for tf in _ALL}
_BY_KITE: dict[str, Timeframe] = {tf.kite_interval: tf for tf in _ALL}
_ALIASES = {"60m": "1h", "1d": "day", "d": "day", "1day": "day"}


def parse_timeframe(value: str) -> Timeframe:
    """Our names, Kite's interval names and a few aliases (60m, 1d) are accepted."""
    key = value.strip().lower() if isinstance(value, str) else value
    if key in TIMEFRAMES:
        return TIMEFRAMES[key]
    if key in _BY_KITE:
        return _BY_KITE[key]
    if key in _ALIASES:
        return TIMEFRAMES[_ALIASES[key]]
    raise UnknownTimeframe(str(value))
