"""Our asyncio ticker client against the Kite simulator: real sockets, injected faults."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from market_bridge.kite.errors import KiteTokenError, SubscriptionLimitError
from market_bridge.kite.models import Tick
from market_bridge.kite.simulator import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_API_KEY,
    Simulator,
    running_simulator,
)
from market_bridge.kite.ticker import KiteTickerClient

INFY, RELIANCE, NIFTY = 408065, 738561, 256265


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def client_for(sim: Simulator, ticks: list[Tick], **kw: float) -> KiteTickerClient:
    return KiteTickerClient(
        DEFAULT_API_KEY, DEFAULT_ACCESS_TOKEN, sim.ws_url, on_ticks=ticks.extend,
        backoff_initial=0.05, backoff_max=0.3, **kw,
    )


def test_full_mode_ticks_with_depth_and_index_packets() -> None:
    async def go() -> None:
        async with running_simulator(port=0) as sim:
            ticks: list[Tick] = []
            client = client_for(sim, ticks)
            await client.subscribe([INFY, RELIANCE, NIFTY], "full")
            runner = asyncio.create_task(client.run())
            # Kite applies quote mode to a new subscription until the mode message lands
            await wait_for(lambda: {t.instrument_token for t in ticks if t.mode == "full"}
                           >= {INFY, RELIANCE, NIFTY})
            full = next(t for t in ticks if t.instrument_token == INFY and t.mode == "full")
            assert len(full.depth_buy) == 5 and full.exchange_timestamp is not None
            index = next(t for t in ticks if t.instrument_token == NIFTY and t.mode == "full")
            assert not index.tradable and index.volume_traded is None
            # mode changes at any time, on the live connection
            await client.set_mode("ltp", [RELIANCE])
            n = len(ticks)
            await wait_for(lambda: any(t.mode == "ltp" and t.instrument_token == RELIANCE
                                       for t in ticks[n:]))
            await client.unsubscribe([INFY])
            await asyncio.sleep(0.3)
            n = len(ticks)
            await asyncio.sleep(1.5)
            assert INFY not in {t.instrument_token for t in ticks[n:]}
            assert client.metrics.ticks >= len(ticks) and client.metrics.errors == 0
            await client.close()
            await runner

    asyncio.run(go())


@pytest.mark.parametrize("fault", ["drop", "stall", "garbage"])
def test_reconnects_and_resubscribes_after_fault(fault: str) -> None:
    async def go() -> None:
        async with running_simulator(port=0) as sim:
            ticks: list[Tick] = []
            client = client_for(sim, ticks, stall_timeout=1.0)
            await client.subscribe([INFY, RELIANCE], "full")
            runner = asyncio.create_task(client.run())
            await wait_for(lambda: len(ticks) > 2)
            sim.fault(fault, 2.0)  # type: ignore[arg-type]
            if fault == "garbage":
                await wait_for(lambda: client.metrics.decode_errors > 0)
            else:
                await wait_for(lambda: client.metrics.reconnects > 0)
            await asyncio.sleep(2.2)
            n = len(ticks)
            # after the fault: ticks of both instruments again, i.e. it resubscribed
            await wait_for(lambda: {t.instrument_token for t in ticks[n:]} >= {INFY, RELIANCE})
            assert client.metrics.errors > 0
            await client.close()
            await runner

    asyncio.run(go())


def test_expired_token_stops_with_login_hint() -> None:
    async def go() -> None:
        async with running_simulator(port=0) as sim:
            ticks: list[Tick] = []
            client = client_for(sim, ticks)
            await client.subscribe([INFY])
            runner = asyncio.create_task(client.run())
            await wait_for(lambda: len(ticks) > 0)
            sim.fault("expire_token")
            sim.fault("drop")
            with pytest.raises(KiteTokenError, match="market-bridge kite login"):
                await asyncio.wait_for(runner, 10)

    asyncio.run(go())


def test_bad_token_refused_at_handshake_without_retrying_forever() -> None:
    async def go() -> None:
        async with running_simulator(port=0) as sim:
            client = KiteTickerClient(DEFAULT_API_KEY, "wrong", sim.ws_url)
            await client.subscribe([INFY])
            with pytest.raises(KiteTokenError):
                await asyncio.wait_for(client.run(), 10)
            assert client.metrics.reconnects == 0

    asyncio.run(go())


def test_shards_7000_instruments_over_3_connections_and_refuses_10000() -> None:
    async def go() -> None:
        async with running_simulator(port=0) as sim:
            client = client_for(sim, [])
            tokens = list(range(1_000_001, 1_007_001))  # unknown to the simulator: fine
            await client.subscribe(tokens, "ltp")
            runner = asyncio.create_task(client.run())
            await wait_for(lambda: client.metrics.connected == 3)
            await wait_for(lambda: sim.state.status()["clients_connected"] == 3)
            with pytest.raises(SubscriptionLimitError, match="3 connections per API key"):
                await client.subscribe(range(2_000_000, 2_003_000))
            assert len(client.subscriptions) == 7000  # the refused request changed nothing
            await client.close()
            await runner
            fresh = client_for(sim, [])
            with pytest.raises(SubscriptionLimitError, match="9000"):
                await fresh.subscribe(range(3_000_000, 3_010_000))

    asyncio.run(go())
