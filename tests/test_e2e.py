"""The whole platform, started the way `make run` starts it, on the simulator.

One `market-bridge run` in a throwaway MB_HOME on free ports: its own embedded database,
simulator, Prefect server and deployments, streaming service and API. Then what a
newcomer does: the seed's curl examples, the seed's JavaScript WebSocket client in a real
browser, a backfill through Prefect, completeness of a collected session, and a clean stop.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from market_bridge.market.calendar import TradingCalendar
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


@dataclass
class System:
    home: Path
    env: dict[str, str]
    api: str
    ws: str
    prefect_api: str
    proc: subprocess.Popen[bytes]
    log: Path

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "market_bridge.cli.main", *args],
                              capture_output=True, text=True, env=self.env, timeout=timeout,
                              check=False)

    def dsn(self) -> str:
        return self.cli("db", "url").stdout.strip()


def wait(what: str, probe: Callable[[], Any], timeout: float, system: System | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = probe()
        except (httpx.HTTPError, OSError, ValueError, KeyError):
            value = None
        if value:
            return value
        if system is not None and system.proc.poll() is not None:
            break
        time.sleep(0.5)
    tail = system.log.read_text()[-4000:] if system else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    base = Path(tempfile.mkdtemp(prefix="mb-e2e-"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(os.environ.get("MB_DB_OS_USER", "marketbridge"))
        base.chmod(0o755)
        os.chown(base, 0, entry.pw_gid)
    home = base / "home"
    ports = {k: str(free_port()) for k in ("MB_API_PORT", "MB_SIM_PORT", "MB_PREFECT_PORT",
                                           "MB_DB_PORT")}
    env = dict(os.environ, MB_HOME=str(home), **ports)
    for key in ("DATABASE_URL", "ZERODHA_API_KEY", "ZERODHA_ACCESS_TOKEN", "KITE_API_ROOT",
                "KITE_WS_ROOT", "PREFECT_API_URL", "MB_COLLECTORS_CONFIG", "API_TOKEN"):
        env.pop(key, None)
    log = base / "run.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "market_bridge.cli.main", "run"],
                                stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    sys_ = System(home, env, f"http://127.0.0.1:{ports['MB_API_PORT']}",
                  f"ws://localhost:{ports['MB_API_PORT']}/stream/ws",
                  f"http://127.0.0.1:{ports['MB_PREFECT_PORT']}/api", proc, log)
    try:
        wait("make run to report live ticks", lambda: "live ticks are flowing" in log.read_text(),
             240, sys_)
        yield sys_
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        sys_.cli("db", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_status_json_names_every_component(system: System) -> None:
    out = json.loads(system.cli("status", "--json").stdout)
    assert set(out) == {"api", "database", "prefect", "simulator", "streaming"}
    for name, comp in out.items():
        assert comp["state"] == "running", (name, comp)
        assert comp["pid"], (name, comp)
    assert out["api"]["url"] == system.api
    assert "SIMULATED DATA" in system.log.read_text()


def test_live_ticks_become_bars_in_the_db_and_over_rest(system: System) -> None:
    def latest() -> dict[str, Any] | None:
        r = httpx.get(f"{system.api}/intraday/latest/RELIANCE", params={"timeframe": "1m"})
        return r.json() if r.status_code == 200 else None

    body = wait("a live RELIANCE bar", latest, 120, system)
    assert body["bar"]["provenance"] == "live"
    with psycopg.connect(system.dsn()) as conn:
        n = conn.execute("SELECT count(*) FROM md.tick_data WHERE symbol = 'RELIANCE'").fetchone()
    assert n is not None and n[0] > 0
    # the seed's Query examples, as written
    today = httpx.get(f"{system.api}/intraday/today/RELIANCE?timeframe=1m").json()
    assert today["count"] >= 1 and today["bars"][0]["timestamp"].endswith("+05:30")
    assert httpx.get(f"{system.api}/intraday/bars/TCS?timeframe=5m&limit=100").status_code == 200
    vwap = httpx.get(f"{system.api}/intraday/vwap/HDFCBANK?timeframe=1m")
    assert vwap.status_code == 200


def test_seed_collector_examples_reflected_in_metrics(system: System) -> None:
    api = system.api
    created = httpx.post(f"{api}/collectors", json={
        "name": "e2e", "api_key": "mb_sim_key", "access_token": "mb_sim_token"})
    assert created.status_code in (200, 201), created.text
    assert "mb_sim_token" not in created.text
    for body in ({"symbols": ["RELIANCE", "TCS", "INFY"]}, {"watchlist": "NIFTY50"},
                 {"watchlists": ["IT", "PHARMA", "AUTO"]}):
        r = httpx.post(f"{api}/collectors/e2e/subscribe", json=body)
        assert r.status_code == 200, r.text
    assert httpx.post(f"{api}/collectors/e2e/start").status_code == 200

    def running() -> dict[str, Any] | None:
        m = httpx.get(f"{api}/collectors/metrics").json().get("e2e", {})
        return m if m.get("running") and m.get("ticks_received", 0) > 0 else None

    metrics = wait("collector e2e collecting", running, 60, system)
    assert metrics["subscribed_tokens"] >= 50
    assert {"running", "subscribed_tokens", "ticks_received", "bars_created", "errors"} <= set(
        metrics)
    assert httpx.post(f"{api}/collectors/e2e/stop").status_code == 200
    wait("collector e2e stopped",
         lambda: not httpx.get(f"{api}/collectors/metrics").json()["e2e"]["running"], 30, system)


def test_seed_javascript_client_in_a_real_browser(system: System, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `market-bridge setup` (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    # Wrapped in a function: Playwright invokes a string that evaluates to a function, and
    # the snippet's last statement (the onmessage assignment) is one.
    seed_client = """() => {
    const ws = new WebSocket('WS_URL');
    ws.onopen = () => {
      ws.send(JSON.stringify({type: 'subscribe', symbols: ['RELIANCE', 'TCS']}));
    };
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === 'tick') {
        console.log(`${message.symbol}: ${message.data.price}`);
      } else if (message.type === 'bar') {
        console.log(`New candle: ${message.symbol}`, JSON.stringify(message.data));
      }
    };
    }""".replace("WS_URL", system.ws)
    lines: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-background-networking",
                  "--disable-component-update", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page()
            page.on("console", lambda msg: lines.append(msg.text))
            page.goto(f"{system.api}/docs")
            page.evaluate(seed_client)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not (
                any(ln.startswith("New candle:") for ln in lines)
                and any(ln.startswith(("RELIANCE:", "TCS:")) for ln in lines)
            ):
                page.wait_for_timeout(250)
        finally:
            browser.close()
    ticks = [ln for ln in lines if ln.startswith(("RELIANCE:", "TCS:"))]
    candles = [ln for ln in lines if ln.startswith("New candle:")]
    assert ticks and candles, lines[-20:]
    float(ticks[0].split(": ")[1])  # a price, as the seed prints it


def test_backfill_through_prefect_then_full_completeness(system: System) -> None:
    cal = TradingCalendar()
    day = cal.previous_trading_day(date.today() - timedelta(days=1))
    params = {"symbols": ["INFY"], "from_date": day.isoformat(), "to_date": day.isoformat(),
              "timeframe": "1m", "concurrent": 2}
    api = system.prefect_api
    dep = wait("the backfill deployment",
               lambda: httpx.get(f"{api}/deployments/name/backfill/backfill").json()["id"], 120,
               system)
    for _ in range(20):  # a busy Prefect server (SQLite) answers 503 now and then
        run = httpx.post(f"{api}/deployments/{dep}/create_flow_run", json={"parameters": params})
        if run.status_code != 503:
            break
        time.sleep(1)
    assert run.status_code in (200, 201), run.text
    run_id = run.json()["id"]

    def finished() -> str | None:
        state = httpx.get(f"{api}/flow_runs/{run_id}").json()["state"]["type"]
        return state if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

    assert wait("the backfill flow run", finished, 180, system) == "COMPLETED"
    start = f"{day.isoformat()}T09:15:00+05:30"
    end = f"{day.isoformat()}T15:30:00+05:30"
    q = httpx.get(f"{system.api}/intraday/completeness/INFY",
                  params={"timeframe": "1m", "from": start, "to": end}).json()
    assert q["completeness"] == 100.0 and q["quality"] == "excellent", q
    assert q["expected"] == 375 or q["expected"] > 0
    gaps = httpx.get(f"{system.api}/intraday/gaps/INFY",
                     params={"timeframe": "1m", "from": start, "to": end}).json()
    assert gaps.get("gaps") == [], gaps
    # the seed's CLI example, dry run: plans, writes nothing
    dry = system.cli("backfill", "-symbols", "INFY", "-from", day.isoformat(), "-to",
                     day.isoformat(), "-dry-run")
    assert dry.returncode == 0, dry.stderr


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a parent (or init) to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_clean_shutdown_leaves_nothing_running(system: System) -> None:
    status = json.loads(system.cli("status", "--json").stdout)
    assert all(c.get("pid") for c in status.values()), status
    stop = system.cli("stop")
    assert stop.returncode == 0, stop.stderr
    system.proc.wait(60)
    deadline = time.monotonic() + 10  # the database's postmaster exits just after pg_ctl
    while time.monotonic() < deadline and any(alive(c["pid"]) for c in status.values()):
        time.sleep(0.2)
    left = {name: c["pid"] for name, c in status.items() if c.get("pid") and alive(c["pid"])}
    assert not left, f"still running after stop: {left}"
    after = json.loads(system.cli("status", "--json").stdout)
    assert all(c["state"] in ("stopped", "external") for c in after.values()), after
