"""The Prefect flows against a real `prefect server` (the session's, shared with other
modules: see ``prefect_server`` in conftest), the Kite simulator and a real TimescaleDB;
and a deployment run created the way the UI's Run button does.

Find the UI-path test with ``-k deployment``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prefect.client.schemas.schedules import CronSchedule

from flows.backfill import BackfillErrors, backfill_flow
from flows.completeness import completeness_flow
from flows.deployments import SCHEDULES, build_deployments
from flows.gap_fill import gap_fill_flow
from flows.housekeeping import instruments_sync_flow, maintenance_flow
from market_bridge.kite.models import IST
from market_bridge.kite.simulator import Simulator, simulator_thread
from market_bridge.market.calendar import TradingCalendar
from tests.conftest import registered_since, stamped_since, stop_group, wait_for

ROOT = Path(__file__).resolve().parents[1]
THU, FRI, HOLIDAY = date(2026, 11, 19), date(2026, 11, 20), date(2026, 11, 24)


def ist(d: date, hh: int = 0, mm: int = 0) -> datetime:
    return datetime.combine(d, clock_time(hh, mm), IST)


@pytest.fixture(scope="module")
def cal() -> TradingCalendar:
    return TradingCalendar()


@pytest.fixture(scope="module")
def sim(cal: TradingCalendar) -> Iterator[Simulator]:
    with simulator_thread(port=0, session="nse", is_trading_day=cal.is_trading_day) as s:
        yield s


@pytest.fixture
def flow_env(db_url: str, sim: Simulator, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What the flows read: the database, the simulator (no credentials: its defaults)."""
    values = {"DATABASE_URL": db_url, "KITE_API_ROOT": sim.url, "MB_HOME": str(tmp_path)}
    for key in ("ZERODHA_API_KEY", "KITE_API_KEY", "ZERODHA_ACCESS_TOKEN", "KITE_ACCESS_TOKEN",
                "MB_CALENDAR_OVERRIDES"):
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def bar_count(dsn: str, timeframe: str = "1m") -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM md.intraday_bars WHERE timeframe = %s",
                           (timeframe,)).fetchone()
    return int(row[0]) if row else 0


def artifact(api: str, key: str, since: float) -> dict[str, Any]:
    """The latest artifact ``key``, which must have been written at or after ``since``
    (``time.time()``): by this test, not an earlier one on the shared server (the latest
    of a key is its collection: ``created`` is the key's first artifact, ``updated`` the
    latest's)."""
    found = httpx.post(f"{api}/artifacts/latest/filter",
                       json={"artifacts": {"key": {"any_": [key]}}}).json()
    assert found, f"no artifact {key}"
    assert stamped_since(found[0]["updated"], since), f"no artifact {key} from this test"
    return dict(found[0])


def test_deployments_have_the_documented_schedules() -> None:
    deployments = {d.name: d for d in build_deployments()}
    assert set(deployments) == {"backfill", "gap-fill", "completeness", "instruments-sync",
                                "maintenance"}
    assert not deployments["backfill"].schedules  # manual: the UI's Run button
    for name, cron in SCHEDULES.items():
        (sched,) = deployments[name].schedules or []
        assert isinstance(sched.schedule, CronSchedule)
        assert sched.schedule.cron == cron and sched.schedule.timezone == "Asia/Kolkata"
    assert deployments["backfill"].entrypoint == "flows.backfill.backfill_flow"


def test_flow_functions_run_without_prefect_artifacts_skipped(flow_env: dict[str, str]) -> None:
    """Called directly (no flow run, no API): same work, artifacts silently skipped."""
    assert instruments_sync_flow.fn()["total"] > 100
    out = backfill_flow.fn(symbols=["TCS"], from_date=FRI, to_date=FRI, timeframe="15m")
    assert out["bars_written"] == 25 and bar_count(flow_env["DATABASE_URL"], "15m") == 25


def test_backfill_flow_writes_bars_and_shows_progress_and_a_table(
    prefect_api: str, flow_env: dict[str, str]
) -> None:
    since = time.time()
    out = instruments_sync_flow()
    assert out["total"] > 100
    result = backfill_flow(symbols=["TCS", "INFY"], from_date=THU, to_date=FRI)
    assert result["bars_written"] == 2 * 2 * 375 and result["status"] == "completed"
    assert bar_count(flow_env["DATABASE_URL"]) == 1500
    assert artifact(prefect_api, "backfill-progress", since)["data"] == 100.0
    table = artifact(prefect_api, "backfill-summary", since)
    assert "TCS" in table["data"] and "bars_written" in table["data"]
    again = backfill_flow(symbols=["TCS", "INFY"], from_date=THU, to_date=FRI)
    assert again["status"] == "nothing_to_do" and again["bars_written"] == 0
    dry = backfill_flow(symbols=["RELIANCE"], from_date=THU, to_date=FRI, dry_run=True)
    assert dry["requests"] == 1 and bar_count(flow_env["DATABASE_URL"]) == 1500


def test_backfill_flow_fails_naming_the_symbols_that_failed(
    prefect_api: str, flow_env: dict[str, str]
) -> None:
    instruments_sync_flow()
    with pytest.raises(BackfillErrors, match="NOSUCH"):
        backfill_flow(symbols=["TCS", "NOSUCH"], from_date=FRI, to_date=FRI)
    assert bar_count(flow_env["DATABASE_URL"]) == 375  # TCS was still written


def test_gap_fill_and_completeness_flows(prefect_api: str, flow_env: dict[str, str]) -> None:
    dsn = flow_env["DATABASE_URL"]
    since = time.time()
    instruments_sync_flow()
    backfill_flow(symbols=["TCS"], from_date=THU, to_date=FRI)
    with psycopg.connect(dsn) as conn:
        conn.execute("DELETE FROM md.intraday_bars WHERE bar_timestamp >= %s AND bar_timestamp < %s",
                     (ist(FRI, 12, 0), ist(FRI, 12, 10)))
    before = completeness_flow(from_date=FRI, to_date=FRI)  # symbols: those with bars
    assert before["status"] == "completed" and before["below_good"] == 0  # 365/375 = 97.3%
    table = artifact(prefect_api, "completeness", since)
    assert "97.3" in table["data"]
    filled = gap_fill_flow(from_date=THU, to_date=FRI)
    assert filled["missing_before"] == 10 and filled["bars_written"] == 10
    assert filled["gaps_after"] == 0 and bar_count(dsn) == 750
    assert "remain" in artifact(prefect_api, "gap-fill-remaining", since)["data"]


def test_flows_exit_early_on_a_holiday_and_a_weekend(
    prefect_api: str, flow_env: dict[str, str]
) -> None:
    out = gap_fill_flow(from_date=HOLIDAY, to_date=HOLIDAY)
    assert out["status"] == "skipped" and "no NSE trading day" in out["reason"]
    out = completeness_flow(from_date=date(2026, 11, 21), to_date=date(2026, 11, 22))
    assert out["status"] == "skipped"


def test_maintenance_flow_reports_tables(prefect_api: str, flow_env: dict[str, str]) -> None:
    out = maintenance_flow()
    assert {t["table"] for t in out["tables"]} >= {"md.intraday_bars", "md.tick_data"}


@pytest.mark.slow
def test_deployment_run_created_like_the_ui_run_button_completes(
    prefect_api: str, prefect_home: Path, flow_env: dict[str, str], tmp_path: Path
) -> None:
    """Serve the deployments in a subprocess, POST create_flow_run with custom parameters
    (what the UI does), and wait for the run to complete and its bars to land."""
    env = {**os.environ, **flow_env, "PREFECT_API_URL": prefect_api,
           "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    log = tmp_path / "serve.log"
    since = time.time()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.deployments"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        instruments_sync_flow()
        dep = wait_for("the served backfill deployment",
                       lambda: registered_since(prefect_api, "backfill", "backfill", since),
                       30, proc, log)  # fmt: skip
        params = {"symbols": ["TCS", "INFY"], "from_date": THU.isoformat(),
                  "to_date": FRI.isoformat(), "timeframe": "5m", "concurrent": 2}
        for _ in range(20):  # a busy Prefect server (SQLite) answers 503 now and then
            reply = httpx.post(f"{prefect_api}/deployments/{dep}/create_flow_run",
                               json={"parameters": params})
            if reply.status_code != 503:
                break
            time.sleep(1)
        assert reply.status_code == 201, reply.text
        run_id = reply.json()["id"]

        def finished() -> dict[str, Any] | None:
            state = httpx.get(f"{prefect_api}/flow_runs/{run_id}").json()["state"]
            return state if state["type"] in ("COMPLETED", "FAILED", "CRASHED") else None

        state = wait_for("the flow run", finished, 60, proc, log)
        assert state["type"] == "COMPLETED", f"{state}\n{log.read_text()[-3000:]}"
        assert bar_count(flow_env["DATABASE_URL"], "5m") == 2 * 2 * 75
    finally:
        stop_group(proc, signal.SIGINT, 15)
