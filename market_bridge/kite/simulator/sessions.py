"""When the simulated market trades: NSE hours on trading days, or always.

``always`` (the default for development) trades every second of every day, so live data
flows at any hour; each IST calendar day is one session (00:00-24:00) with its own open,
day volume and previous close. ``nse`` trades 09:15-15:30 IST on trading days (Mon-Fri
unless a calendar is passed). Pure: epochs in, epochs out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal

from market_bridge.kite.models import IST

SessionKind = Literal["nse", "always"]
SESSION_KINDS: tuple[SessionKind, ...] = ("nse", "always")

NSE_OPEN = time(9, 15)
NSE_SECONDS = 22_500  # 09:15:00 .. 15:29:59
DAY_SECONDS = 86_400
_IST_OFFSET = 19_800  # seconds east of UTC
_MAX_HOLIDAY_RUN = 30  # longest stretch of closed days we search across


def weekdays(day: date) -> bool:
    return day.weekday() < 5


def ist_date(epoch: float) -> date:
    """The IST calendar date of a Unix time."""
    return date.fromordinal(date(1970, 1, 1).toordinal() + int((epoch + _IST_OFFSET) // 86_400))


def ist_midnight(day: date) -> int:
    """Unix time of 00:00 IST on ``day``."""
    return (day.toordinal() - date(1970, 1, 1).toordinal()) * 86_400 - _IST_OFFSET


@dataclass(frozen=True, slots=True)
class Window:
    """One session: trading seconds ``open_epoch + k`` for ``k`` in ``range(seconds)``."""

    day: date
    open_epoch: int
    seconds: int

    @property
    def close_epoch(self) -> int:
        """Exclusive end."""
        return self.open_epoch + self.seconds


@lru_cache(maxsize=4096)
def _nse_window(day: date) -> Window:
    # Cached: every tick looks its session up, and datetime arithmetic is comparatively slow.
    return Window(day, int(datetime.combine(day, NSE_OPEN, IST).timestamp()), NSE_SECONDS)


@dataclass(frozen=True, slots=True)
class SessionRule:
    kind: SessionKind = "always"
    # Which days trade under ``nse``; ignored by ``always``. The CLI passes the NSE calendar.
    is_trading_day: Callable[[date], bool] = field(default=weekdays, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in SESSION_KINDS:
            raise ValueError(f"unknown session {self.kind!r}; valid: {', '.join(SESSION_KINDS)}")

    def trades_on(self, day: date) -> bool:
        return self.kind == "always" or self.is_trading_day(day)

    def window(self, day: date) -> Window | None:
        """The session on ``day``, or None when closed all day."""
        if self.kind == "always":
            return Window(day, ist_midnight(day), DAY_SECONDS)
        if not self.is_trading_day(day):
            return None
        return _nse_window(day)

    def previous_day(self, day: date) -> date:
        """The last session day strictly before ``day``."""
        probe = day - timedelta(days=1)
        for _ in range(_MAX_HOLIDAY_RUN):
            if self.trades_on(probe):
                return probe
            probe -= timedelta(days=1)
        return probe

    def locate(self, epoch: int) -> tuple[Window, int] | None:
        """The session and second index ``k`` trading at ``epoch``, or None when closed."""
        window = self.window(ist_date(epoch))
        if window is None or not window.open_epoch <= epoch < window.close_epoch:
            return None
        return window, epoch - window.open_epoch

    def last_traded(self, epoch: int) -> tuple[Window, int]:
        """The most recent traded second at or before ``epoch`` (the closing state when shut)."""
        day = ist_date(epoch)
        for _ in range(_MAX_HOLIDAY_RUN):
            window = self.window(day)
            if window is not None and window.open_epoch <= epoch:
                return window, min(epoch, window.close_epoch - 1) - window.open_epoch
            day -= timedelta(days=1)
        raise ValueError(f"no session in the {_MAX_HOLIDAY_RUN} days before {epoch}")

    def windows_between(self, first: date, last: date) -> list[Window]:
        out: list[Window] = []
        day = first
        while day <= last:
            window = self.window(day)
            if window is not None:
                out.append(window)
            day += timedelta(days=1)
        return out
