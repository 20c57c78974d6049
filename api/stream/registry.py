"""Who is subscribed to what: symbol → clients for the broadcaster, client → symbols for
the per-connection limit and clean-up. Pure; symbols are display strings (``RELIANCE``,
``BSE:SENSEX``), the form the streaming service publishes."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Set
from typing import Generic, TypeVar

C = TypeVar("C", bound=Hashable)


class SubscriptionLimit(Exception):
    def __init__(self, limit: int, current: int, requested: int, new: int) -> None:
        super().__init__(
            f"subscribing to {requested} symbols ({new} new) would make {current + new}; "
            f"at most {limit} per connection (unsubscribe some first)"
        )
        self.limit = limit


class SubscriptionRegistry(Generic[C]):
    def __init__(self) -> None:
        self._by_symbol: dict[str, set[C]] = {}
        self._by_client: dict[C, set[str]] = {}

    def check(self, client: C, symbols: Iterable[str], limit: int) -> None:
        """Raise ``SubscriptionLimit`` if adding ``symbols`` would exceed ``limit``."""
        current = self._by_client.get(client, set())
        wanted = list(dict.fromkeys(symbols))
        new = sum(1 for s in wanted if s not in current)
        if len(current) + new > limit:
            raise SubscriptionLimit(limit, len(current), len(wanted), new)

    def add(self, client: C, symbols: Iterable[str], limit: int) -> list[str]:
        """Subscribe (idempotent); returns the symbols that were not subscribed before.
        All or nothing: over the limit, nothing changes."""
        wanted = list(dict.fromkeys(symbols))
        self.check(client, wanted, limit)
        mine = self._by_client.setdefault(client, set())
        added = [s for s in wanted if s not in mine]
        for symbol in added:
            mine.add(symbol)
            self._by_symbol.setdefault(symbol, set()).add(client)
        return added

    def remove(self, client: C, symbols: Iterable[str]) -> list[str]:
        """Unsubscribe; returns the symbols that were subscribed."""
        mine = self._by_client.get(client)
        if not mine:
            return []
        removed = [s for s in dict.fromkeys(symbols) if s in mine]
        for symbol in removed:
            mine.discard(symbol)
            subscribers = self._by_symbol[symbol]
            subscribers.discard(client)
            if not subscribers:
                del self._by_symbol[symbol]
        return removed

    def drop(self, client: C) -> int:
        """Forget a client entirely; returns how many subscriptions it had."""
        mine = self._by_client.pop(client, set())
        for symbol in mine:
            subscribers = self._by_symbol[symbol]
            subscribers.discard(client)
            if not subscribers:
                del self._by_symbol[symbol]
        return len(mine)

    def subscribers(self, symbol: str) -> Set[C]:
        # The live set, not a copy: callers must not subscribe or drop while iterating.
        found = self._by_symbol.get(symbol)
        return found if found is not None else frozenset()

    def symbols_of(self, client: C) -> frozenset[str]:
        return frozenset(self._by_client.get(client, ()))

    def count(self, client: C) -> int:
        return len(self._by_client.get(client, ()))

    @property
    def total(self) -> int:
        """Subscriptions across all clients."""
        return sum(len(s) for s in self._by_client.values())

    @property
    def symbols(self) -> int:
        """Distinct symbols with at least one subscriber."""
        return len(self._by_symbol)
