"""Faults: Kite feed faults injected into the real simulator (POST /sim/faults) are seen,
reconnected from, counted, recorded as feed gaps and announced live; a database outage
stops neither collection nor ownership and loses no tick."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from market_bridge.db.cluster import LocalCluster
from market_bridge.kite.simulator import running_simulator

from .conftest import private_cluster
from .test_streaming_support import (
    change_collector,
    create_collector,
    fetch,
    listening,
    load_sim_instruments,
    running_service,
    service_config,
    sim_fault,
    status_of,
    wait_for,
)

SYMBOLS = ["INFY", "TCS"]


def test_drop_stall_garbage_and_token_expiry(db_url: str, tmp_path: Path) -> None:
    async def go() -> None:
        async with running_simulator(port=0, tick_rate=4) as sim:
            await load_sim_instruments(db_url, sim)
            config = service_config(db_url, sim, tmp_path / "spool")
            async with listening(db_url) as live, running_service(config) as service:
                await create_collector(db_url, "faulty", symbols=SYMBOLS, mode="full")

                async def state(name: str) -> bool:
                    s = await status_of(db_url, "faulty")
                    return bool(s and s["state"] == name)

                await wait_for(lambda: state("running"), what="collector running")
                collector = service.manager.owned["faulty"]

                for fault, seconds, reason in (
                    ("drop", 0.5, "disconnect"),
                    ("stall", 1.5, "stall"),
                    ("garbage", 1.0, "garbage"),
                ):
                    seen = len(live.of("status"))
                    reconnects = collector.reconnects
                    await sim_fault(sim, fault, seconds)

                    def statuses(kind: str, seen: int = seen) -> list[dict[str, Any]]:
                        return [m for m in live.of("status")[seen:] if m["data"]["state"] == kind]

                    async def restored(seen: int = seen) -> bool:
                        return len(statuses("feed_restored", seen)) == len(SYMBOLS)

                    await wait_for(restored, timeout=8, what=f"feed restored after {fault}")
                    lost = statuses("feed_lost")
                    assert {m["symbol"] for m in lost} == set(SYMBOLS)
                    assert {m["data"]["reason"] for m in lost} == {reason}
                    assert all(m["data"]["collector"] == "faulty" for m in lost)
                    assert collector.reconnects > reconnects, fault  # reconnected, counted
                    ticks = collector.metrics.ticks_received

                    async def flowing(ticks: int = ticks) -> bool:
                        return collector.metrics.ticks_received > ticks

                    await wait_for(flowing, timeout=3, what=f"ticks again after {fault}")

                await wait_for(lambda: state("running"), what="running after the faults")
                status = await status_of(db_url, "faulty")
                assert status is not None and status["reconnects"] >= 3
                assert status["metrics"]["ticker"]["decode_errors"] > 0  # the garbage frames

                async def gap_reasons() -> list[str]:
                    rows = await fetch(db_url, "SELECT reason FROM md.feed_gaps ORDER BY id")
                    return [r[0] for r in rows] if len(rows) == 3 else []

                assert await wait_for(gap_reasons) == ["disconnect", "stall", "garbage"]

                # an expired access token: a clear state and message, no reconnect loop
                await sim_fault(sim, "expire_token")
                await sim_fault(sim, "drop")
                await wait_for(lambda: state("auth_failed"), timeout=5, what="auth_failed")
                status = await status_of(db_url, "faulty")
                assert status is not None and status["running"] is False
                assert "kite login" in str(status["last_error"])
                assert live.of("status")[-1]["data"]["reason"] == "auth_failed"
                attempts = collector.reconnects
                await asyncio.sleep(1.0)
                assert collector.reconnects == attempts
                # new credentials (here: the fault cleared, any change of desired state)
                async with httpx.AsyncClient() as client:
                    await client.delete(f"{sim.url}/sim/faults")
                await change_collector(db_url, "faulty", access_token=None)
                await wait_for(lambda: state("running"), timeout=5, what="running again")

                async def announced() -> bool:
                    last = live.of("status", "INFY")[-1]["data"]
                    return last["state"] == "feed_restored" and last["reason"] == "auth_failed"

                await wait_for(announced, timeout=3, what="feed_restored after auth_failed")
                rows = await fetch(db_url, "SELECT reason FROM md.feed_gaps ORDER BY id")
                assert rows[-1][0] == "auth_failed"

    asyncio.run(go())


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """Stopped and started cleanly ("fast"), so the fsync-off settings lose nothing that
    was committed."""
    with private_cluster("mb-test-stream-outage-", durable=False) as cluster:
        yield cluster


def test_database_outage_collection_goes_on_and_no_tick_is_lost(
    own_cluster: LocalCluster, tmp_path: Path
) -> None:
    dsn = own_cluster.dsn("mb")

    async def stored() -> int:
        rows = await fetch(dsn, "SELECT count(*) FROM md.tick_data")
        return int(rows[0][0])

    async def go() -> None:
        async with running_simulator(port=0, tick_rate=4) as sim:
            await load_sim_instruments(dsn, sim)
            async with running_service(service_config(dsn, sim, tmp_path / "spool")) as service:
                await create_collector(dsn, "steady", symbols=SYMBOLS, mode="full")
                await wait_for(stored, what="ticks stored")
                collector = service.manager.owned["steady"]
                await asyncio.to_thread(own_cluster.stop, "fast")
                received = collector.metrics.ticks_received
                await asyncio.sleep(2.0)
                # the feed is still collected; live messages are dropped, not queued
                assert collector.metrics.ticks_received > received + 10
                assert service.publisher.metrics.dropped > 0
                assert not service.writer.metrics.db_up
                await asyncio.to_thread(own_cluster.start)

                async def caught_up() -> bool:
                    return await stored() == collector.metrics.ticks_received

                await wait_for(caught_up, timeout=10, what="every received tick stored")
                assert service.manager.owned.keys() == {"steady"}  # ownership kept

                async def fresh_heartbeat() -> bool:
                    rows = await fetch(dsn, "SELECT now() - heartbeat_at < interval '1 second' "
                                            "FROM md.collector_status")  # fmt: skip
                    return bool(rows and rows[0][0])

                await wait_for(fresh_heartbeat, timeout=5, what="heartbeats again")
                assert service.publisher.metrics.db_up or await wait_for(
                    lambda: asyncio.sleep(0.1, service.publisher.metrics.db_up), timeout=3
                )

    asyncio.run(go())
