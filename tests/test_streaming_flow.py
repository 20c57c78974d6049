"""The streaming service as a long-running Prefect deployment, and its graceful stops.

`market-bridge flows serve` against a real `prefect server` (the session's, shared with
other modules: see ``prefect_server`` in conftest); a flow run of the `streaming`
deployment created through the API (what the UI's Run button does) collects from the
simulator (replaying a trading day at 30x, so 1m bars close every 2 s) into the test
database; cancelling the run through the API (the UI's Cancel button) must flush every
tick and bar, leave nothing spooled, mark the collector stopped, release its lock (another
process takes it over) and end the run Cancelled. And SIGTERM of `market-bridge stream`
must flush everything the same way.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from market_bridge.kite.simulator import Simulator, simulator_thread
from market_bridge.market.calendar import TradingCalendar
from streaming.flow import SUMMARY_ARTIFACT, build_deployment, streaming_flow

from .conftest import registered_since, stop_group, wait_for
from .test_streaming_support import (
    load_sim_instruments,
    running_service,
    service_config,
)
from .test_streaming_support import wait_for as wait_async

ROOT = Path(__file__).resolve().parents[1]
REPLAY_DAY = date(2026, 11, 20)  # a Friday session
SYMBOLS = ["INFY", "TCS", "RELIANCE"]
CONFIG = f"""\
collectors:
  - name: sim
    auto_start: true
    symbols: [{", ".join(SYMBOLS)}]
    mode: full
"""


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    cal = TradingCalendar()
    with simulator_thread(port=0, replay=REPLAY_DAY, speed=30, tick_rate=2,
                          is_trading_day=cal.is_trading_day) as s:  # fmt: skip
        yield s


@pytest.fixture
def home(db_url: str, sim: Simulator, tmp_path: Path) -> Path:
    """MB_HOME with collectors.yaml; the simulator's instruments in the test database."""
    (tmp_path / "collectors.yaml").write_text(CONFIG)
    asyncio.run(load_sim_instruments(db_url, sim))
    return tmp_path


def child_env(db_url: str, sim: Simulator, home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=db_url, KITE_WS_ROOT=sim.ws_url, KITE_API_ROOT=sim.url,
               MB_HOME=str(home), **extra)  # fmt: skip
    for key in ("MB_COLLECTORS_CONFIG", "ZERODHA_API_KEY", "ZERODHA_ACCESS_TOKEN",
                "KITE_API_KEY", "KITE_ACCESS_TOKEN"):  # fmt: skip
        env.pop(key, None)  # the simulator's credentials
    return env


def query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def count(dsn: str, sql: str, params: Any = None) -> int:
    return int(query(dsn, sql, params)[0][0])


def status(dsn: str) -> dict[str, Any] | None:
    rows = query(dsn, "SELECT owner, state, running, ticks_received, bars_created "
                      "FROM md.collector_status WHERE name = 'sim'")  # fmt: skip
    if not rows:
        return None
    return dict(zip(("owner", "state", "running", "ticks", "bars"), rows[0], strict=True))


def collecting(dsn: str) -> dict[str, Any] | None:
    """The collector's status once it runs and both ticks and final 1m bars are stored."""
    s = status(dsn)
    if not (s and s["running"] and s["state"] == "running"):
        return None
    if not count(dsn, "SELECT count(*) FROM md.tick_data"):
        return None
    bars = count(dsn, "SELECT count(*) FROM md.intraday_bars WHERE timeframe = '1m' "
                      "AND provenance = 'live'")  # fmt: skip
    return s if bars >= len(SYMBOLS) else None


def assert_flushed(dsn: str, spool: Path) -> dict[str, Any]:
    """Everything the collector counted is stored; nothing is left spooled; it is no
    longer running and its advisory lock and process row are gone."""
    s = status(dsn)
    assert s is not None and s["state"] == "shutdown" and s["running"] is False, s
    ticks = count(dsn, "SELECT count(*) FROM md.tick_data")
    bars = count(dsn, "SELECT count(*) FROM md.intraday_bars WHERE provenance = 'live'")
    assert ticks == s["ticks"] > 0, (ticks, s)  # every received tick was written
    assert bars == s["bars"] > 0, (bars, s)  # every final bar was written
    assert not list(spool.glob("*.batch")), "spool files left"
    assert count(dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    assert count(dsn, "SELECT count(*) FROM md.streaming_processes") == 0
    return s


def assert_taken_over(dsn: str, sim: Simulator, spool: Path) -> None:
    """Another streaming process takes the collector (its lock is free) and collects."""

    async def go() -> None:
        config = service_config(dsn, sim, spool, max_tick_age=None)
        async with running_service(config) as other:

            async def taken() -> bool:
                return "sim" in other.manager.owned

            await wait_async(taken, timeout=20, what="the collector taken over")

    asyncio.run(go())
    gaps = query(dsn, "SELECT collector, reason FROM md.feed_gaps")
    assert len(gaps) == 1 and gaps[0][0] == "sim"  # the downtime, for the gap-fill flow
    assert gaps[0][1] in ("process restart", "takeover")


def test_streaming_deployment_is_module_importable() -> None:
    deployment = build_deployment()
    assert deployment.name == "streaming" and not deployment.schedules
    assert deployment.entrypoint == "streaming.flow.streaming_flow"
    assert set(streaming_flow.parameters.properties) == {"config_path", "instance",
                                                         "replay_feed"}  # fmt: skip


def api(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One Prefect API call; a busy server (SQLite, 2 shared cores) answers 503 now and then."""
    for _ in range(30):
        reply = httpx.request(method, url, timeout=30, **kwargs)
        if reply.status_code != 503:
            return reply
        time.sleep(1)
    return reply


@pytest.mark.slow
def test_deployment_run_collects_and_cancelling_it_flushes_everything(
    prefect_api: str,
    prefect_home: Path,
    db_url: str,
    sim: Simulator,
    home: Path,
) -> None:
    env = child_env(db_url, sim, home, PREFECT_API_URL=prefect_api,
                    PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                    PREFECT_RUNNER_POLL_FREQUENCY="1")  # fmt: skip
    log = home / "serve.log"
    since = time.time()
    with log.open("wb") as out:  # = market-bridge flows serve
        proc = subprocess.Popen([sys.executable, "-m", "market_bridge.cli.main", "flows", "serve"],
                                cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    try:
        dep = wait_for("the served streaming deployment",
                       lambda: registered_since(prefect_api, "streaming", "streaming", since),
                       60, proc, log)  # fmt: skip
        params = {"config_path": str(home / "collectors.yaml"), "instance": "flowtest",
                  "replay_feed": True}  # fmt: skip
        reply = api("POST", f"{prefect_api}/deployments/{dep}/create_flow_run",
                    json={"parameters": params})  # fmt: skip
        assert reply.status_code == 201, reply.text
        run_id = reply.json()["id"]

        def run_state() -> dict[str, Any]:
            return dict(api("GET", f"{prefect_api}/flow_runs/{run_id}").json()["state"])

        running = wait_for("ticks and final bars stored", lambda: collecting(db_url), 60, proc, log)
        assert run_state()["type"] == "RUNNING"
        flow_pid = int(str(running["owner"]).split(":")[1])
        assert flow_pid not in (os.getpid(), proc.pid)  # the runner's flow-run subprocess

        # the UI's Cancel button: the run goes Cancelling, the runner signals its process
        reply = api(
            "POST",
            f"{prefect_api}/flow_runs/{run_id}/set_state",
            json={"state": {"type": "CANCELLING", "message": "test"}, "force": True},
        )
        assert reply.status_code in (200, 201) and reply.json()["status"] == "ACCEPT", reply.text

        def final() -> dict[str, Any] | None:
            state = run_state()
            return state if state["type"] in ("CANCELLED", "COMPLETED", "FAILED",
                                               "CRASHED") else None  # fmt: skip

        state = wait_for("the run to end", final, 60, proc, log)
        assert state["type"] == "CANCELLED", f"{state}\n{log.read_text()[-3000:]}"
        assert "spool files 0" in state["message"]  # the summary, shown as the run's state
        wait_for("the flow-run process to exit", lambda: not pid_alive(flow_pid), 30, proc, log)
        assert proc.poll() is None  # the serving process goes on serving

        final_status = assert_flushed(db_url, home / "spool" / "streaming-flowtest")
        # what the run reports: a line per collector, a summary line and table
        logs = api(
            "POST",
            f"{prefect_api}/logs/filter",
            json={"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200},
        ).json()
        messages = "\n".join(entry["message"] for entry in logs)
        assert "collector sim: started running" in messages, messages
        ticks = final_status["ticks"]
        assert f"streaming stopped by SIGTERM: {ticks} ticks" in messages, messages
        assert "writer backlog 0, spool files 0" in messages, messages
        found = api("POST", f"{prefect_api}/artifacts/filter",
                    json={"artifacts": {"key": {"any_": [SUMMARY_ARTIFACT]},
                                        "flow_run_id": {"any_": [run_id]}}}).json()  # fmt: skip
        assert found and "shutdown" in found[0]["data"] and str(ticks) in found[0]["data"]
    finally:
        stop_group(proc, signal.SIGINT, 30)
    assert_taken_over(db_url, sim, home / "spool-b")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by the runner) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[-1].startswith("Z"))


def test_sigterm_of_market_bridge_stream_flushes_everything(
    db_url: str, sim: Simulator, home: Path
) -> None:
    env = child_env(db_url, sim, home)
    log = home / "stream.log"
    argv = [sys.executable, "-m", "market_bridge.cli.main", "stream", "--config",
            str(home / "collectors.yaml"), "--instance", "sigterm", "--replay-feed"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        s = wait_for("ticks and final bars stored", lambda: collecting(db_url), 60, proc, log)
        assert int(str(s["owner"]).split(":")[1]) == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "everything flushed" in log.read_text()
    assert_flushed(db_url, home / "spool" / "streaming-sigterm")
    assert_taken_over(db_url, sim, home / "spool-b")
