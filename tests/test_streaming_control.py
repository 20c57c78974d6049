"""The control plane: desired state in md.collectors + NOTIFY, applied within a second;
ownership by advisory lock across processes; takeover and restart after kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from market_bridge.kite.simulator import Simulator, running_simulator

from .test_streaming_support import (
    change_collector,
    create_collector,
    fetch,
    load_sim_instruments,
    running_service,
    service_config,
    status_of,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]


async def ticks_of(dsn: str, symbol: str) -> int:
    rows = await fetch(dsn, "SELECT count(*) FROM md.tick_data WHERE symbol = %s", (symbol,))
    return int(rows[0][0])


async def generation(dsn: str, name: str) -> int:
    rows = await fetch(dsn, "SELECT generation FROM md.collectors WHERE name = %s", (name,))
    return int(rows[0][0])


def test_create_start_subscribe_mode_and_stop_apply_within_a_second(
    db_url: str, tmp_path: Path
) -> None:
    async def go() -> None:
        async with running_simulator(port=0, tick_rate=2) as sim:
            await load_sim_instruments(db_url, sim)
            async with running_service(service_config(db_url, sim, tmp_path / "spool")):

                async def applied(state: str, tokens: int) -> bool:
                    s = await status_of(db_url, "ctl")
                    return bool(s and s["state"] == state and s["subscribed_tokens"] == tokens
                                and s["applied_generation"] == await generation(db_url, "ctl"))

                # create + start (desired running): collecting within a second
                t0 = time.monotonic()
                await create_collector(db_url, "ctl", symbols=["INFY", "NOPE"], mode="quote")
                await wait_for(lambda: ticks_of(db_url, "INFY"), timeout=1.5, interval=0.02,
                               what="INFY ticks")  # fmt: skip
                assert time.monotonic() - t0 < 1.5
                status = await status_of(db_url, "ctl")
                assert status is not None and status["running"]
                assert "NOPE" in status["last_error"]  # unknown symbols reported, not fatal
                assert status["metrics"]["unknown_symbols"] == ["NOPE"]

                # subscribe: TCS added
                t0 = time.monotonic()
                await change_collector(db_url, "ctl", symbols=["INFY", "TCS"])
                await wait_for(lambda: ticks_of(db_url, "TCS"), timeout=1.0, interval=0.02,
                               what="TCS ticks after subscribe")  # fmt: skip
                assert time.monotonic() - t0 < 1.0

                # mode change: full mode brings order book snapshots
                t0 = time.monotonic()
                await change_collector(db_url, "ctl", mode="full")

                async def depth() -> int:
                    rows = await fetch(db_url, "SELECT count(DISTINCT symbol) FROM md.order_book")
                    return int(rows[0][0]) == 2

                await wait_for(depth, timeout=1.0, interval=0.02, what="depth after mode full")
                assert time.monotonic() - t0 < 1.0

                # unsubscribe: INFY removed
                await change_collector(db_url, "ctl", symbols=["TCS"])
                await wait_for(lambda: applied("running", 1), timeout=1.0, interval=0.02,
                               what="unsubscribe applied")  # fmt: skip

                # stop: collection ends within a second, the lock is released
                t0 = time.monotonic()
                await change_collector(db_url, "ctl", desired_state="stopped")
                await wait_for(lambda: applied("stopped", 1), timeout=1.0, interval=0.02,
                               what="collector stopped")  # fmt: skip
                assert time.monotonic() - t0 < 1.0
                before = await ticks_of(db_url, "TCS")
                await asyncio.sleep(0.5)
                assert await ticks_of(db_url, "TCS") == before
                status = await status_of(db_url, "ctl")
                assert status is not None and status["running"] is False
                locks = await fetch(db_url, "SELECT count(*) FROM pg_locks WHERE locktype = "
                                            "'advisory' AND granted")  # fmt: skip
                assert locks[0][0] == 0

    asyncio.run(go())


def test_without_credentials_a_collector_reports_no_credentials(
    db_url: str, tmp_path: Path
) -> None:
    async def go() -> None:
        config = service_config(db_url, None, tmp_path / "spool", credentials=None)
        async with running_service(config):
            await create_collector(db_url, "nocreds", symbols=["INFY"])

            async def reported() -> dict[str, Any] | None:
                s = await status_of(db_url, "nocreds")
                return s if s and s["state"] == "no_credentials" else None

            status = await wait_for(reported, timeout=2.0, what="no_credentials status")
        assert status is not None and status["running"] is False
        assert "api_key" in str(status["last_error"]) and "KITE_WS_ROOT" in str(status["last_error"])

    asyncio.run(go())


# -- several processes -----------------------------------------------------------------------


@contextmanager
def stream_process(dsn: str, sim: Simulator, home: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``market-bridge stream`` in a subprocess."""
    env = dict(os.environ, DATABASE_URL=dsn, KITE_WS_ROOT=sim.ws_url, MB_HOME=str(home))
    for name in ("MB_COLLECTORS_CONFIG", "ZERODHA_API_KEY", "ZERODHA_ACCESS_TOKEN"):
        env.pop(name, None)  # collectors.yaml from MB_HOME (if any), simulator credentials
    log = (home / "stream.log").open("ab")
    argv = [sys.executable, "-m", "market_bridge.cli.main", "stream"]  # = market-bridge stream
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


async def owner_pid(dsn: str, name: str) -> int | None:
    s = await status_of(dsn, name)
    if not s or not s["running"] or not s["owner"]:
        return None
    return int(str(s["owner"]).split(":")[1])


async def gaps(dsn: str) -> list[tuple[object, ...]]:
    return await fetch(dsn, "SELECT collector, symbols, gap_start, gap_end, reason "
                            "FROM md.feed_gaps ORDER BY id")  # fmt: skip


CONFIG = """\
collectors:
  - name: cfg
    auto_start: true
    symbols: [INFY, TCS]
    mode: quote
"""


def test_kill_9_then_restart_resumes_and_records_the_gap(db_url: str, tmp_path: Path) -> None:
    """collectors.yaml (auto_start) is synced and collected by `market-bridge stream`;
    kill -9; a restarted process takes the collector back and records the gap."""
    (tmp_path / "collectors.yaml").write_text(CONFIG)

    async def go() -> None:
        async with running_simulator(port=0, tick_rate=2) as sim:
            await load_sim_instruments(db_url, sim)
            with stream_process(db_url, sim, tmp_path) as first:
                pid = await wait_for(lambda: owner_pid(db_url, "cfg"), timeout=20,
                                     what="first process collecting")  # fmt: skip
                assert pid == first.pid
                origin = await fetch(db_url, "SELECT origin, desired_state FROM md.collectors")
                assert origin == [("config", "running")]
                await wait_for(lambda: ticks_of(db_url, "TCS"), what="ticks")
                first.send_signal(signal.SIGKILL)
                await asyncio.to_thread(first.wait)
            killed_at = await fetch(db_url, "SELECT now()")
            before = await ticks_of(db_url, "INFY")
            with stream_process(db_url, sim, tmp_path) as second:

                async def taken_back() -> bool:
                    return await owner_pid(db_url, "cfg") == second.pid

                await wait_for(taken_back, timeout=20, what="restarted process collecting")

                async def resumed() -> bool:
                    return await ticks_of(db_url, "INFY") > before

                await wait_for(resumed, what="ticks after the restart")
                second.send_signal(signal.SIGTERM)  # graceful: flush and mark shutdown
                # (waiting in a thread: the simulator shares this event loop)
                assert await asyncio.to_thread(second.wait, 15) == 0
        found = await gaps(db_url)
        assert len(found) == 1
        collector, symbols, start, end, reason = found[0]
        assert (collector, reason) == ("cfg", "process restart")
        assert symbols == ["INFY", "TCS"]
        assert start <= killed_at[0][0] <= end
        status = await status_of(db_url, "cfg")
        assert status is not None and status["state"] == "shutdown" and not status["running"]
        procs = await fetch(db_url, "SELECT count(*) FROM md.streaming_processes")
        assert procs[0][0] == 0  # a clean exit leaves the registry

    asyncio.run(go())


def test_two_processes_never_share_a_collector_and_one_takes_over(
    db_url: str, tmp_path: Path
) -> None:
    async def go() -> None:
        async with running_simulator(port=0, tick_rate=2) as sim:
            await load_sim_instruments(db_url, sim)
            await create_collector(db_url, "shared", symbols=["SBIN"], mode="quote")
            with stream_process(db_url, sim, tmp_path) as other:
                await wait_for(lambda: owner_pid(db_url, "shared"), timeout=20,
                               what="the subprocess collecting")  # fmt: skip
                config = service_config(db_url, sim, tmp_path / "spool-b")
                async with running_service(config) as here:
                    # several reconciles: the lock holder keeps it, this process stays idle
                    for _ in range(3):
                        await asyncio.sleep(0.5)
                        assert here.manager.owned == {}
                        assert await owner_pid(db_url, "shared") == other.pid
                    other.send_signal(signal.SIGKILL)
                    t0 = time.monotonic()
                    await wait_for(lambda: asyncio.sleep(0, "shared" in here.manager.owned),
                                   timeout=3, what="takeover")  # fmt: skip
                    took = time.monotonic() - t0
                    await wait_for(lambda: owner_pid(db_url, "shared"), what="status")
                    assert await owner_pid(db_url, "shared") == os.getpid()
        assert took < 2.5  # one reconcile after the dead session's locks are released
        found = await gaps(db_url)
        assert [(g[0], g[4]) for g in found] == [("shared", "takeover")]

    asyncio.run(go())
