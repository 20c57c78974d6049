"""One limiter for Kite's historical API (3 requests/s per API key), shared by every caller
in the process: threads (kiteconnect is synchronous) and asyncio tasks alike.

Requests are spaced evenly (a little over 1/rate apart) rather than let through in bursts: Kite counts
per second and a burst at a second boundary can exceed it.
"""

from __future__ import annotations

import asyncio
import threading
import time


class RateLimiter:
    def __init__(self, rate_per_s: float = 3.0) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate must be positive")
        # 4% margin: requests spaced exactly 1/rate apart land 4 in one second as soon as
        # the network adds any jitter, and Kite answers 429.
        self.interval = 1.04 / rate_per_s
        self._next = 0.0
        self._lock = threading.Lock()
        self.acquired = 0

    def _reserve(self) -> float:
        """Reserve the next slot; return how long the caller must wait for it."""
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
            self.acquired += 1
            return slot - now

    def acquire(self) -> None:
        wait = self._reserve()
        if wait > 0:
            time.sleep(wait)

    async def acquire_async(self) -> None:
        wait = self._reserve()
        if wait > 0:
            await asyncio.sleep(wait)


_shared: dict[str, RateLimiter] = {}
_shared_lock = threading.Lock()


def historical_limiter(api_key: str, rate_per_s: float = 3.0) -> RateLimiter:
    """The process-wide limiter for one API key."""
    with _shared_lock:
        limiter = _shared.get(api_key)
        if limiter is None:
            limiter = _shared[api_key] = RateLimiter(rate_per_s)
        return limiter
