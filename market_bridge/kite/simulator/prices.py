"""Day-level price anchors: each instrument's closing price on any day, in O(1).

Closes come from two slow waves plus daily noise around the instrument's base price, so
they neither drift to zero nor explode and no day depends on the days before it. A day's
intraday path is a bridge from its open to this close (see ``model``), which makes the
next session's "previous close" equal to the last traded price of this one.
"""

from __future__ import annotations

import math
from datetime import date

from market_bridge.kite.simulator.noise import stream_key, unit_int

STREAM_ANCHOR = 1
_YEAR_WAVE = 365.0
_MONTH_WAVE = 29.0


def anchor_close(seed: int, token: int, base_price: float, volatility: float, day: date) -> float:
    """The close on ``day`` (a price, not rounded to the tick)."""
    key = stream_key(seed, token, STREAM_ANCHOR)
    d = day.toordinal()
    phase1 = 2 * math.pi * unit_int(key, 0)
    phase2 = 2 * math.pi * unit_int(key, 1)
    # Sum of four uniforms: bell-shaped, sd 1 after scaling, no transcendental calls.
    z = (sum(unit_int(key, 16 + 4 * d + i) for i in range(4)) - 2.0) * math.sqrt(3.0)
    amplitude = min(0.15, 6 * volatility)
    level = (
        amplitude * math.sin(2 * math.pi * d / _YEAR_WAVE + phase1)
        + amplitude / 3 * math.sin(2 * math.pi * d / _MONTH_WAVE + phase2)
        + volatility / math.sqrt(2.0) * z  # day-to-day return sd ~ volatility
    )
    return base_price * math.exp(level)


def to_ticks(price: float, tick_size: float) -> int:
    """Nearest whole tick, at least one."""
    return max(1, round(price / tick_size))
