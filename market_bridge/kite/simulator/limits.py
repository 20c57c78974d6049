"""Per-second request rate limits, as Kite enforces them (e.g. historical: 3 requests/s)."""

from __future__ import annotations

from collections import deque


class RateLimiter:
    """At most ``limit`` accepted requests in any ``window``-second span, per key."""

    def __init__(self, limit: int, window: float = 1.0) -> None:
        self.limit = limit
        self.window = window
        self._seen: dict[str, deque[float]] = {}

    def allow(self, key: str, now: float) -> bool:
        times = self._seen.setdefault(key, deque())
        while times and now - times[0] >= self.window:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True
