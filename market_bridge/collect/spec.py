"""A collector's desired state (a ``md.collectors`` row) and what it resolves to. Pure.

Subscriptions are the watchlists' members then ``symbols``, de-duplicated, resolved
through the instruments index. A dynamic (movers) watchlist stands for its whole universe,
since its members are computed from live prices of those candidates. Unknown symbols and
unknown watchlists are reported, never fatal: the collector collects what it can and says
what it skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from market_bridge.collect.messages import display_symbol
from market_bridge.instruments import Instrument, InstrumentIndex
from market_bridge.kite.models import MODES, Mode
from market_bridge.watchlists import get_watchlist
from market_bridge.watchlists.registry import UnknownWatchlist


@dataclass(frozen=True, slots=True)
class CollectorSpec:
    name: str
    api_key: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    mode: Mode = "quote"
    symbols: tuple[str, ...] = ()
    watchlists: tuple[str, ...] = ()
    desired_state: str = "stopped"
    generation: int = 0

    @property
    def running(self) -> bool:
        return self.desired_state == "running"

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> CollectorSpec:
        """From ``(name, api_key, access_token, mode, symbols, watchlists, desired_state,
        generation)`` as control.sql's ``desired_collectors`` returns it."""
        name, api_key, access_token, mode, symbols, watchlists, desired, generation = row
        m = str(mode)
        return cls(
            name=str(name),
            api_key=str(api_key) if api_key else None,
            access_token=str(access_token) if access_token else None,
            mode=cast(Mode, m) if m in MODES else "quote",  # the DB checks it too
            symbols=tuple(symbols or ()),
            watchlists=tuple(watchlists or ()),
            desired_state=str(desired),
            generation=int(generation),
        )


@dataclass(frozen=True, slots=True)
class Subscription:
    instrument: Instrument
    symbol: str  # display form


@dataclass(frozen=True)
class Resolution:
    subscriptions: dict[int, Subscription]  # by instrument token, in subscription order
    unknown_symbols: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # watchlists we could not expand, with the reason

    @property
    def symbols(self) -> list[str]:
        return [s.symbol for s in self.subscriptions.values()]

    def describe_problems(self) -> str | None:
        parts = list(self.problems)
        if self.unknown_symbols:
            shown = ", ".join(self.unknown_symbols[:20])
            more = len(self.unknown_symbols) - 20
            parts.append(
                f"unknown symbols skipped: {shown}"
                + (f" (+{more} more)" if more > 0 else "")
                + " (not in md.instruments: run the instruments sync)"
            )
        return "; ".join(parts) or None


def wanted_symbols(spec: CollectorSpec) -> tuple[list[str], list[str]]:
    """Symbols to subscribe (watchlist members first) and problems with watchlists."""
    out: dict[str, None] = {}
    problems: list[str] = []
    for name in spec.watchlists:
        try:
            wl = get_watchlist(name)
        except UnknownWatchlist:
            problems.append(f"unknown watchlist {name!r} skipped")
            continue
        if wl.dynamic:
            # movers lists are computed from live prices of their universe: collect all of it
            for member in wl.universe:
                out.update(dict.fromkeys(get_watchlist(member).symbols))
            continue
        out.update(dict.fromkeys(wl.symbols))
    out.update(dict.fromkeys(spec.symbols))
    return list(out), problems


def resolve(spec: CollectorSpec, index: InstrumentIndex) -> Resolution:
    symbols, problems = wanted_symbols(spec)
    found, unknown = index.resolve(symbols)
    subs: dict[int, Subscription] = {}
    for inst in found:
        subs.setdefault(inst.instrument_token, Subscription(inst, display_symbol(inst)))
    return Resolution(subs, tuple(unknown), tuple(problems))
