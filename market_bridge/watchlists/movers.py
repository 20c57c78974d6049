"""Members of the dynamic "movers" watchlists, computed from the latest prices.

Pure: give it the latest snapshot per symbol (last price, previous close, day volume, as
Kite's quote/full ticks carry them) and it ranks the universe.

- TOP_GAINERS: largest % change vs previous close, only symbols that are up.
- TOP_LOSERS: largest % fall vs previous close, only symbols that are down.
- MOST_ACTIVE: largest traded volume (shares) today, only symbols that traded.

Ties break by symbol so the result is deterministic. Symbols without a usable previous
close (missing or <= 0) are skipped for the % lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from market_bridge.market.symbols import InvalidSymbol, parse_symbol
from market_bridge.watchlists.registry import get_watchlist, merge_watchlists

DEFAULT_TOP_N = 10
MOVERS = ("TOP_GAINERS", "TOP_LOSERS", "MOST_ACTIVE")


class Snapshot(NamedTuple):
    last_price: float
    previous_close: float | None
    volume: int | None


@dataclass(frozen=True, slots=True)
class Mover:
    symbol: str
    last_price: float
    change_percent: float | None  # vs previous close
    volume: int | None


@dataclass(frozen=True, slots=True)
class Movers:
    name: str
    entries: tuple[Mover, ...]
    universe_size: int
    reason: str | None = None  # why the list is empty, when it is

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(m.symbol for m in self.entries)


def compute_movers(
    name: str,
    latest: Mapping[str, Snapshot | tuple[float, float | None, int | None]],
    *,
    universe: Iterable[str] | None = None,
    n: int = DEFAULT_TOP_N,
) -> Movers:
    """Rank ``latest`` (keys like ``RELIANCE`` or ``NSE:RELIANCE``) for one movers list.

    ``universe`` defaults to the list's configured universe (NIFTY50 + NIFTYNEXT50); symbols
    of ``latest`` outside it are ignored.
    """
    wl = get_watchlist(name)
    if wl.name not in MOVERS:
        raise ValueError(f"{wl.name} is not a movers list; movers lists: {', '.join(MOVERS)}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if universe is None:
        candidates = merge_watchlists(wl.universe)
    else:
        candidates = list(dict.fromkeys(parse_symbol(s).display for s in universe))
    snapshots: dict[str, Snapshot] = {}
    for key, value in latest.items():
        try:
            symbol = parse_symbol(key).display
        except InvalidSymbol:
            continue  # a feed key we cannot name cannot be in the universe either
        snapshots[symbol] = Snapshot(*value)

    data = [(s, snapshots[s]) for s in candidates if s in snapshots]
    if not data:
        return Movers(wl.name, (), len(candidates), reason="no latest prices for the universe yet")

    rows = [Mover(s, snap.last_price, _change_percent(snap), snap.volume) for s, snap in data]
    if wl.name == "MOST_ACTIVE":
        ranked = sorted((m for m in rows if m.volume), key=lambda m: (-(m.volume or 0), m.symbol))
        empty_reason = "no symbol in the universe has traded volume yet"
    else:
        sign = 1.0 if wl.name == "TOP_GAINERS" else -1.0
        ranked = sorted(
            (m for m in rows if m.change_percent is not None and m.change_percent * sign > 0),
            key=lambda m: (-(m.change_percent or 0.0) * sign, m.symbol),
        )
        direction = "up" if sign > 0 else "down"
        empty_reason = f"no symbol in the universe is {direction} vs previous close"
    entries = tuple(ranked[:n])
    return Movers(wl.name, entries, len(candidates), reason=None if entries else empty_reason)


def _change_percent(snap: Snapshot) -> float | None:
    if snap.previous_close is None or snap.previous_close <= 0:
        return None
    return (snap.last_price - snap.previous_close) * 100.0 / snap.previous_close
