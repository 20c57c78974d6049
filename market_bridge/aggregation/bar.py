"""The bar record the aggregator publishes, and the update envelope around it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

UpdateKind = Literal["forming", "final", "revised"]
Source = Literal["live"]


@dataclass(slots=True)
class Bar:
    """One OHLCV bar, labelled by its start (aware, IST).

    A published ``Bar`` is a snapshot: the aggregator never mutates it afterwards.
    ``revision`` is 0 for the first final version and +1 for each late-tick amendment;
    it stays 0 while the bar is forming.
    """

    instrument_token: int
    timeframe: str
    start: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    trades_count: int
    vwap: float | None
    oi: int | None
    final: bool
    revision: int
    source: Source = "live"

    def to_dict(self) -> dict[str, Any]:
        return {
            "instrument_token": self.instrument_token,
            "timeframe": self.timeframe,
            "start": self.start.isoformat(),  # aware → always carries "+05:30"
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
            "trades_count": self.trades_count,
            "vwap": self.vwap,
            "oi": self.oi,
            "final": self.final,
            "revision": self.revision,
            "source": self.source,
        }


class BarUpdate(NamedTuple):
    """What changed: ``forming`` (not final yet), ``final`` (period + grace over) or
    ``revised`` (a late tick amended a final bar; ``bar.revision`` was incremented)."""

    bar: Bar
    kind: UpdateKind
