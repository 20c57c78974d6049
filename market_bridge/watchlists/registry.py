"""The predefined watchlists, loaded once from the packaged YAML file.

Names and categories are case-insensitive; they are stored upper-case (names) and
lower-case (categories). Lookups of unknown names raise errors that list the valid ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

import yaml

from market_bridge.market.symbols import parse_symbol

DATA_FILE = "watchlists.yaml"


@dataclass(frozen=True, slots=True)
class Watchlist:
    name: str
    category: str
    description: str
    symbols: tuple[str, ...]  # display form: RELIANCE, BSE:SENSEX
    dynamic: bool = False  # members computed from live data (see movers.py)
    index_symbol: str | None = None  # the index this list mirrors, e.g. "NSE:NIFTY 50"
    universe: tuple[str, ...] = ()  # dynamic lists: watchlists whose members are candidates


@dataclass(frozen=True, slots=True)
class WatchlistCatalog:
    as_of: date
    source: str
    watchlists: Mapping[str, Watchlist]  # insertion order = file order


class UnknownWatchlist(ValueError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"unknown watchlist {name!r}; valid watchlists: {', '.join(watchlist_names())}"
        )


class UnknownCategory(ValueError):
    def __init__(self, category: str) -> None:
        self.category = category
        super().__init__(
            f"unknown watchlist category {category!r}; valid categories: {', '.join(categories())}"
        )


class DynamicWatchlistUnresolved(ValueError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"watchlist {name} is dynamic: its members depend on live prices. Compute them with "
            f"market_bridge.watchlists.compute_movers({name!r}, latest) and pass them as "
            f"resolved={{{name!r}: result.symbols}}"
        )


@cache
def catalog() -> WatchlistCatalog:
    text = resources.files(__package__).joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    return parse_catalog(yaml.safe_load(text))


def parse_catalog(data: Mapping[str, Any]) -> WatchlistCatalog:
    """Build the catalog from the YAML document; fails loudly on a malformed data file."""
    lists: dict[str, Watchlist] = {}
    for raw_name, spec in data["watchlists"].items():
        name = str(raw_name).upper()
        symbols = tuple(parse_symbol(s).display for s in spec.get("symbols") or ())
        dynamic = bool(spec.get("dynamic", False))
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"watchlist {name} in {DATA_FILE} lists a symbol twice")
        if dynamic == bool(symbols):
            raise ValueError(
                f"watchlist {name} in {DATA_FILE}: a list is either dynamic or has symbols"
            )
        lists[name] = Watchlist(
            name=name,
            category=str(spec["category"]).lower(),
            description=str(spec["description"]),
            symbols=symbols,
            dynamic=dynamic,
            index_symbol=spec.get("index_symbol"),
            universe=tuple(str(u).upper() for u in spec.get("universe") or ()),
        )
    for wl in lists.values():
        for member in wl.universe:
            if member not in lists or lists[member].dynamic:
                raise ValueError(f"watchlist {wl.name}: universe {member} is not a static list")
    return WatchlistCatalog(as_of=data["as_of"], source=str(data["source"]), watchlists=lists)


def _key(name: str) -> str:
    return name.strip().upper() if isinstance(name, str) else str(name)


def get_watchlist(name: str) -> Watchlist:
    """The watchlist called ``name`` (any case)."""
    found = catalog().watchlists.get(_key(name))
    if found is None:
        raise UnknownWatchlist(name)
    return found


def has_watchlist(name: str) -> bool:
    return _key(name) in catalog().watchlists


def all_watchlists() -> list[Watchlist]:
    return list(catalog().watchlists.values())


def watchlist_names() -> list[str]:
    return list(catalog().watchlists)


def categories() -> list[str]:
    """Categories in file order: index, movers, sectors."""
    return list(dict.fromkeys(wl.category for wl in catalog().watchlists.values()))


def by_category(category: str) -> list[Watchlist]:
    key = category.strip().lower() if isinstance(category, str) else str(category)
    found = [wl for wl in catalog().watchlists.values() if wl.category == key]
    if not found:
        raise UnknownCategory(category)
    return found


def merge_watchlists(
    names: Iterable[str], resolved: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """Symbols of several watchlists, in order of first appearance, without duplicates.

    Dynamic lists (movers) have no fixed members: pass their current members in
    ``resolved`` (keyed by name, any case), else ``DynamicWatchlistUnresolved`` is raised.
    """
    resolved_by_key = {_key(k): v for k, v in (resolved or {}).items()}
    merged: dict[str, None] = {}
    for name in names:
        wl = get_watchlist(name)
        if wl.dynamic:
            if wl.name not in resolved_by_key:
                raise DynamicWatchlistUnresolved(wl.name)
            members: Iterable[str] = (parse_symbol(s).display for s in resolved_by_key[wl.name])
        else:
            members = wl.symbols
        merged.update(dict.fromkeys(members))
    return list(merged)
