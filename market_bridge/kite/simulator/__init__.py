"""A local Zerodha Kite Connect simulator: Ticker WebSocket and REST API on one port.

Deterministic market data (same seed, token and day give the same ticks and candles),
real-protocol framing (the unmodified kiteconnect package works against it) and run-time
fault injection. See docs/simulator.md.

    async with running_simulator(port=0) as sim:
        kite = KiteConnect(sim.config.api_key, root=sim.url)

    with simulator_thread(port=0) as sim:  # for synchronous code and tests
        ...
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from market_bridge.kite.simulator.config import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_HOST,
    DEFAULT_PORT,
    SimConfig,
)
from market_bridge.kite.simulator.server import Simulator

__all__ = [
    "DEFAULT_ACCESS_TOKEN",
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "SimConfig",
    "Simulator",
    "running_simulator",
    "simulator_thread",
]


@asynccontextmanager
async def running_simulator(
    config: SimConfig | None = None, **overrides: Any
) -> AsyncIterator[Simulator]:
    """A started simulator for the duration of the block (``port=0`` picks a free port)."""
    sim = Simulator(config, **overrides)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@contextmanager
def simulator_thread(config: SimConfig | None = None, **overrides: Any) -> Iterator[Simulator]:
    """A simulator running on its own event loop in a daemon thread.

    For synchronous callers (kiteconnect is blocking). Talk to it over HTTP/WebSocket; its
    Python methods belong to that loop (use ``call(sim, fn)`` style helpers, not direct calls).
    """
    sim = Simulator(config, **overrides)
    started = threading.Event()
    failure: list[BaseException] = []
    stop: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None

    async def main() -> None:
        nonlocal stop, loop
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        try:
            await sim.start()
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        try:
            await stop.wait()
        finally:
            await sim.stop()

    # asyncio.run also cancels whatever the server leaves behind (keep-alive connections).
    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True,
                              name="kite-simulator")  # fmt: skip
    thread.start()
    started.wait()
    if failure:
        thread.join()
        raise failure[0]
    try:
        yield sim
    finally:
        assert stop is not None and loop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
