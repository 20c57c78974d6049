"""The web dashboard in headless Chromium (Playwright) against a real server and database.

History is seeded into the ephemeral database, live data is a real NOTIFY on mb_live
(packed as the streaming service packs it), collectors are rows of md.collectors and the
Prefect API is a small fake on a loopback port. Screenshots go to test-artifacts/; with
MB_UPDATE_SCREENSHOTS=1 one of each page is also copied to docs/screenshots/.

Chromium is Debian's (/usr/bin/chromium, installed by `market-bridge setup`); a missing
browser is a failure that says so, not a skip.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.dashboard import assets
from api.stream import StreamOptions
from market_bridge.kite.models import IST

from .test_api_stream_support import notify, wait_until
from .test_api_support import (
    ApiServer,
    SeedBar,
    execute,
    insert_bars,
    insert_instruments,
    make_options,
    make_settings,
    session_minutes,
)
from .test_dashboard_support import FakePrefect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-gpu", "--no-first-run", "--disable-sync", "--disable-quic"]  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
SCREENSHOTS = ROOT / "docs" / "screenshots"
TOKEN = "dash-secret"
# Seeded trading days (Friday 2024-01-26 is a holiday); the API's clock: 2024-01-30 12:00:30.
DAYS = [date(2024, 1, 23), date(2024, 1, 24), date(2024, 1, 25), date(2024, 1, 29)]
DAY1, DAY2 = date(2024, 1, 29), date(2024, 1, 30)
INFY_GAP = (datetime(2024, 1, 24, 13, 0, tzinfo=IST), 40)  # a poorer day for the heatmap
GAP_START = datetime(2024, 1, 29, 10, 0, tzinfo=IST)  # TCS misses 10:00..10:04 on DAY1
GAP_BARS = 5
LIVE = datetime(2024, 1, 30, 12, 0, tzinfo=IST)  # the forming bar after the stored ones
TOKENS = {"RELIANCE": 738561, "TCS": 2953217, "INFY": 408065}
HISTORY = 1000  # bars the chart loads (chart.js)
STREAM_OPTIONS = StreamOptions(listen_backoff_initial=0.1, listen_backoff_max=0.5,
                               listen_probe_interval=1.0, sweep_interval=0.2)  # fmt: skip


def walk(symbol: str, stamps: list[datetime], base: float, seed: int, drift: float) -> list[SeedBar]:
    """A deterministic wavy walk (looks like a market in the screenshots)."""
    bars, close = [], base
    for i, ts in enumerate(stamps):
        open_ = close
        close = round(open_ + drift + math.sin(i / 7.0 + seed) * 0.9
                      + math.sin(i / 29.0 + seed) * 0.6, 2)  # fmt: skip
        high = round(max(open_, close) + 0.3 + abs(math.sin(i * 1.3)) * 0.5, 2)
        low = round(min(open_, close) - 0.3 - abs(math.cos(i * 1.7)) * 0.5, 2)
        volume = 2000 + int(1500 * abs(math.sin(i / 5.0 + seed)))
        vwap = round((high + low + close) / 3, 2)
        bars.append(SeedBar("NSE", symbol, TOKENS[symbol], ts, "1m", open_, high, low, close,
                            volume, 20, vwap, None, "historical"))  # fmt: skip
    return bars


def stamps() -> list[datetime]:
    full = [ts for day in DAYS for ts in session_minutes(day)]
    return full + session_minutes(DAY2, last=dtime(11, 59))


def minutes(start: datetime, n: int) -> set[datetime]:
    return {start + timedelta(minutes=i) for i in range(n)}


SEEDED: dict[str, list[SeedBar]] = {}


# ---- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dsn(module_db_url: str) -> str:
    insert_instruments(module_db_url, [("NSE", s, t, "EQ") for s, t in TOKENS.items()])
    gaps = {"TCS": minutes(GAP_START, GAP_BARS), "INFY": minutes(*INFY_GAP)}
    walks = [("RELIANCE", 2540.0, 0.06), ("TCS", 3710.0, -0.02), ("INFY", 1650.0, 0.01)]
    for seed, (symbol, base, drift) in enumerate(walks):
        bars = walk(symbol, stamps(), base, seed, drift)
        bars = [b for b in bars if b.ts not in gaps.get(symbol, set())]
        insert_bars(module_db_url, bars)
        SEEDED[symbol] = bars
    execute(module_db_url, "INSERT INTO md.collectors (name, api_key, access_token, mode, "
            "symbols, watchlists, desired_state) VALUES ('primary', 'kitekey123', 'tok', "
            "'quote', '{RELIANCE}', '{IT}', 'running'), ('backup', 'k2', 't2', 'ltp', '{}', "
            "'{NIFTY50}', 'stopped')")  # fmt: skip
    return module_db_url


def fresh_heartbeat(dsn: str) -> None:
    execute(dsn, """INSERT INTO md.collector_status (name, owner, state, running,
                       subscribed_tokens, ticks_received, bars_created, reconnects, last_tick_at,
                       lag_ms, applied_generation, heartbeat_at)
                   VALUES ('primary', 'host:1:1', 'running', true, 11, 48210, 5320, 1, now(), 180,
                           1, now())
                   ON CONFLICT (name) DO UPDATE SET heartbeat_at = now(), last_tick_at = now()""")


@pytest.fixture(scope="module")
def prefect() -> Iterator[FakePrefect]:
    with FakePrefect() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(dsn: str, prefect: FakePrefect) -> Iterator[ApiServer]:
    srv = ApiServer(make_settings(dsn, api_token=TOKEN), make_options())
    srv.app.ctx.stream_options = STREAM_OPTIONS
    srv.app.ctx.prefect_api_url = f"{prefect.url}/api"
    srv.app.ctx.prefect_ui_url = "http://127.0.0.1:4200"
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser(server: ApiServer) -> Iterator[Any]:
    # Depends on the server so that it closes first: its idle keep-alive connections end
    # before the server stops.
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `market-bridge setup` (installs Debian's "
                    "chromium for the browser tests)", pytrace=False)  # fmt: skip
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def page(browser: Any, server: ApiServer) -> Iterator[Any]:
    # A fresh profile per module (Playwright's contexts are incognito-like).
    context = browser.new_context(viewport={"width": 1280, "height": 720}, base_url=server.url)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto("/#/chart?symbol=RELIANCE&tf=1m")
    pg.wait_for_selector("body[data-ready=true]", timeout=15000)
    try:
        yield pg
    finally:
        context.close()
        # Let the server finish the closing handshakes before it stops.
        wait_until(lambda: not server.app.ctx.stream_hub.clients, 5, "WebSocket clients gone")
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    if os.environ.get("MB_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / f"{name}.png")


def legend(page: Any, field: str) -> str:
    text: str = page.text_content(f"#chart-legend [data-field={field}]")
    return text


def price(value: float) -> str:
    return f"{value:,.2f}"  # the page formats with en-IN grouping; equal below 1,00,000


def bar_message(symbol: str, start: datetime, o: float, h: float, low: float, c: float,
                volume: int, final: bool = False) -> dict[str, Any]:  # fmt: skip
    data = {"instrument_token": TOKENS[symbol], "timeframe": "1m", "start": start.isoformat(),
            "timestamp": start.isoformat(), "open": o, "high": h, "low": low, "close": c,
            "volume": volume, "trades_count": 5, "vwap": round((h + low + c) / 3, 2),
            "oi": None, "final": final, "revision": 0, "source": "live"}  # fmt: skip
    return {"type": "bar", "symbol": symbol, "data": data}


def tick_message(symbol: str, at: datetime, price_: float, volume: int,
                 change_percent: float | None = None) -> dict[str, Any]:  # fmt: skip
    return {"type": "tick", "symbol": symbol, "data": {
        "instrument_token": TOKENS[symbol], "timestamp": at.isoformat(), "price": price_,
        "quantity": 1, "volume": volume, "change_percent": change_percent, "mode": "quote"}}


def wait_text(page: Any, selector: str, expected: str, timeout: float = 1000) -> float:
    """Seconds until ``selector``'s text is ``expected`` (fails after ``timeout`` ms)."""
    start = time.monotonic()
    page.wait_for_function(
        "([s, t]) => { const n = document.querySelector(s); return n && n.textContent.trim() === t; }",
        arg=[selector, expected], timeout=timeout,
    )
    return time.monotonic() - start


# ---- chart ---------------------------------------------------------------------------------


def test_chart_renders_history_with_legend_and_vwap(page: Any) -> None:
    page.wait_for_selector("#chart[data-state=ready]", timeout=10000)
    assert page.locator("#chart canvas").count() > 0
    bars = SEEDED["RELIANCE"]
    assert page.get_attribute("#chart", "data-bars-count") == str(HISTORY)  # the latest 1000
    last = bars[-1]
    assert legend(page, "close") == price(last.close)
    assert legend(page, "open") == price(last.open)
    assert legend(page, "high") == price(last.high)
    assert legend(page, "low") == price(last.low)
    assert legend(page, "symbol") == "RELIANCE · 1m"
    assert legend(page, "time") == "2024-01-30 11:59"
    assert legend(page, "vwap") not in ("", "–")
    shot(page, "dashboard-chart")


def test_live_bars_and_ticks_move_the_chart_within_a_second(page: Any, dsn: str) -> None:
    page.wait_for_selector("#chart[data-state=ready]", timeout=10000)
    count = int(page.get_attribute("#chart", "data-bars-count"))
    last_close = SEEDED["RELIANCE"][-1].close
    # A forming bar for the next minute: one more bar, its close in the legend.
    notify(dsn, [bar_message("RELIANCE", LIVE, last_close, last_close + 1, last_close - 1,
                             last_close + 0.5, 900)])  # fmt: skip
    took = wait_text(page, "#chart-legend [data-field=close]", price(last_close + 0.5))
    assert page.get_attribute("#chart", "data-bars-count") == str(count + 1)
    assert took < 1.0
    # A tick above the high moves the forming candle's close and high.
    notify(dsn, [tick_message("RELIANCE", LIVE + timedelta(seconds=20), last_close + 3.25, 10**6)])
    took = wait_text(page, "#chart-legend [data-field=close]", price(last_close + 3.25))
    assert legend(page, "high") == price(last_close + 3.25)
    assert page.get_attribute("#chart", "data-bars-count") == str(count + 1)
    assert took < 1.0
    # The final version, then the next minute's forming bar: one more bar.
    notify(dsn, [bar_message("RELIANCE", LIVE, last_close, last_close + 3.25, last_close - 1,
                             last_close + 2.0, 1500, final=True),
                 bar_message("RELIANCE", LIVE + timedelta(minutes=1), last_close + 2.0,
                             last_close + 2.5, last_close + 1.5, last_close + 2.2, 300)])  # fmt: skip
    wait_text(page, "#chart-legend [data-field=close]", price(last_close + 2.2))
    assert page.get_attribute("#chart", "data-bars-count") == str(count + 2)
    assert legend(page, "time") == "2024-01-30 12:01"


def test_switching_symbol_and_timeframe_without_reload(page: Any) -> None:
    page.evaluate("window.mbMarker = 1")  # survives only if the page is not reloaded
    page.fill("#chart-symbol", "tcs")
    page.click("#chart-form button[type=submit]")
    page.wait_for_function("document.querySelector('#chart-legend [data-field=symbol]')"
                           ".textContent === 'TCS · 1m'")  # fmt: skip
    page.wait_for_selector("#chart[data-state=ready]")
    assert page.get_attribute("#chart", "data-bars-count") == str(HISTORY)
    page.select_option("#chart-timeframe", "5m")
    page.wait_for_function("document.querySelector('#chart-legend [data-field=symbol]')"
                           ".textContent === 'TCS · 5m'")  # fmt: skip
    page.wait_for_selector("#chart[data-state=ready]")
    assert page.get_attribute("#chart", "data-bars-count") == "0"  # only 1m bars are stored
    assert "no 5m bars stored" in page.text_content("#chart-message")
    assert page.evaluate("window.mbMarker") == 1
    page.goto("/#/chart?symbol=RELIANCE&tf=1m")
    page.wait_for_selector("#chart[data-state=ready]")


# ---- watchlist -----------------------------------------------------------------------------


def test_watchlist_table_updates_from_ticks(page: Any, dsn: str) -> None:
    page.goto("/#/watchlist")
    page.select_option("#watchlist-name", "IT")
    row = "#watchlist-table tr[data-symbol=TCS]"
    page.wait_for_selector(row)
    # Starting values from the stored bars (GET /dashboard/snapshot).
    tcs = SEEDED["TCS"][-1]
    wait_text(page, f"{row} [data-field=ltp]", price(tcs.close), timeout=5000)
    assert page.text_content(f"{row} [data-field=change]") != "–"
    # Wait for the subscription (the snapshot arrives after the ack), then a live tick.
    time.sleep(0.3)
    notify(dsn, [tick_message("TCS", LIVE + timedelta(seconds=5), 3777.45, 2_345_678, 1.23)])
    took = wait_text(page, f"{row} [data-field=ltp]", price(3777.45))
    assert page.text_content(f"{row} [data-field=change]") == "+1.23%"
    assert page.text_content(f"{row} [data-field=volume]") == "23.46 L"
    assert took < 1.0
    notify(dsn, [{"type": "stats", "symbol": "INFY", "data": {
        "last_price": 1701.0, "change_percent": -0.5, "volume": 1234, "timestamp": LIVE.isoformat()}}])
    wait_text(page, "#watchlist-table tr[data-symbol=INFY] [data-field=change]", "-0.50%")
    # Unknown members (no instruments, no data) are marked, not fatal.
    page.wait_for_selector("#watchlist-table tr.unknown[data-symbol=WIPRO]", timeout=5000)
    page.wait_for_selector("[data-movers=TOP_GAINERS] li a")
    page.wait_for_selector("[data-movers=MOST_ACTIVE] li a")
    page.wait_for_timeout(900)  # let the update flash fade for the screenshot
    shot(page, "dashboard-watchlist")


# ---- collectors ----------------------------------------------------------------------------


def desired_state(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT desired_state FROM md.collectors WHERE name = 'primary'").fetchone()
    assert row is not None
    return str(row[0])


def test_collector_stop_and_start_from_the_page(page: Any, dsn: str) -> None:
    fresh_heartbeat(dsn)
    page.goto("/#/collectors")
    row = "#collectors-table tr[data-collector=primary]"
    page.wait_for_selector(f"{row}[data-state=running]")
    assert page.text_content(f"{row} [data-field=ticks_received]") == "48,210"
    # Without the token the API refuses, and the page says what to do.
    page.evaluate("localStorage.removeItem('mb.apiToken')")
    page.click(f"{row} button[data-action=stop]")
    page.wait_for_function("document.querySelector('#collectors-result').textContent.includes('401')"
                           " || document.querySelector('#collectors-result').textContent.includes('unauthorized')")  # fmt: skip
    assert "API token" in page.text_content("#collectors-result")
    assert desired_state(dsn) == "running"
    # Enter the token in the header form (kept in localStorage), then stop and start.
    page.click("#token-button")
    page.fill("#token-input", TOKEN)
    page.click("#token-form button[type=submit]")
    assert page.evaluate("localStorage.getItem('mb.apiToken')") == TOKEN
    page.click(f"{row} button[data-action=stop]")
    wait_until(lambda: desired_state(dsn) == "stopped", 5, "desired_state stopped")
    page.wait_for_selector(f"{row}[data-desired=stopped]")
    page.click(f"{row} button[data-action=start]")
    wait_until(lambda: desired_state(dsn) == "running", 5, "desired_state running")
    page.wait_for_selector(f"{row}[data-desired=running]")
    page.fill(f"{row} [data-field=subscribe-input]", "INFY")
    page.click(f"{row} button[data-action=subscribe]")
    page.wait_for_function("document.querySelector('#collectors-result').textContent.includes('added INFY')")
    fresh_heartbeat(dsn)
    page.wait_for_timeout(1600)  # one metrics poll with the fresh heartbeat
    shot(page, "dashboard-collectors")


# ---- data quality ----------------------------------------------------------------------------


def test_quality_page_shows_the_punched_gap_and_starts_a_gap_fill(
    page: Any, prefect: FakePrefect
) -> None:
    page.goto("/#/quality")
    page.fill("#quality-symbols", "RELIANCE,TCS,INFY")
    page.fill("#quality-from", DAYS[0].isoformat())
    page.fill("#quality-to", DAY2.isoformat())
    page.click("#quality-form button[type=submit]")
    page.wait_for_selector("#heatmap[data-state=ready] tr[data-symbol=TCS]")
    cell = f"#heatmap tr[data-symbol=TCS] td[data-day='{DAY1}']"
    assert page.get_attribute(cell, "data-missing") == str(GAP_BARS)
    assert page.text_content(cell) == f"{(375 - GAP_BARS) * 100 / 375:.1f}"
    assert "q-good" in (page.get_attribute(cell, "class") or "")
    assert page.get_attribute(f"#heatmap tr[data-symbol=RELIANCE] td[data-day='{DAY1}']",
                              "data-missing") == "0"  # fmt: skip
    # 2024-01-30 is due up to the API's clock (12:00:30): 165 bars, all stored.
    assert page.text_content(f"#heatmap tr[data-symbol=TCS] td[data-day='{DAY2}']") == "100"
    # Trading days only: the Republic Day holiday is no column.
    days = page.eval_on_selector_all("#heatmap td[data-day]", "ns => [...new Set(ns.map(n => n.dataset.day))]")
    assert days == [*(d.isoformat() for d in DAYS), DAY2.isoformat(), "range"]
    infy = f"#heatmap tr[data-symbol=INFY] td[data-day='{INFY_GAP[0].date()}']"
    assert page.get_attribute(infy, "data-missing") == str(INFY_GAP[1])
    page.click(cell)
    page.wait_for_selector("#gaps-table tr.gap")
    gap_row = page.locator("#gaps-table tr.gap").first
    assert gap_row.locator("td").nth(0).text_content() == "2024-01-29 10:00"
    assert gap_row.locator("td").nth(1).text_content() == "2024-01-29 10:05"
    assert gap_row.locator("td").nth(2).text_content() == str(GAP_BARS)
    assert page.get_attribute("#prefect-link", "href") == "http://127.0.0.1:4200"
    page.click("#gap-fill")
    page.wait_for_selector("#gap-fill-result a")
    assert page.get_attribute("#gap-fill-result a", "href") == "http://127.0.0.1:4200/runs/flow-run/run-1"
    assert prefect.runs[-1]["parameters"] == {
        "timeframe": "1m", "dry_run": False, "symbols": ["TCS"],
        "from_date": "2024-01-29", "to_date": "2024-01-29",
    }
    shot(page, "dashboard-quality")


# ---- degraded ----------------------------------------------------------------------------------


def test_page_says_how_to_install_a_missing_chart_library(
    browser: Any, server: ApiServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(assets, "LIBRARY_CANDIDATES", (tmp_path / "missing.mjs",))
    context = browser.new_context(viewport={"width": 1280, "height": 720}, base_url=server.url)
    try:
        pg = context.new_page()
        pg.goto("/#/chart?symbol=RELIANCE")
        pg.wait_for_selector("#chart[data-state=no-library]")
        assert "market-bridge setup" in pg.text_content("#chart-message")
        assert "market-bridge setup" in pg.text_content("#banner")
        pg.goto("/#/collectors")  # the rest of the dashboard works without it
        pg.wait_for_selector("#collectors-table[data-state=ready] tr[data-collector=primary]")
    finally:
        context.close()


# ---- stream and API down ----------------------------------------------------------------------------------


def test_banner_when_the_stream_or_the_api_is_down_and_recovery(page: Any, server: ApiServer) -> None:
    page.goto("/#/chart?symbol=RELIANCE&tf=1m")
    page.wait_for_selector("#chart[data-state=ready]")
    page.wait_for_selector("#pill-stream[data-state=ok]")
    connects = page.evaluate("window.mbDashboard.stream.connects")
    # The server drops every WebSocket client: banner, then an automatic reconnect.
    hub = server.app.ctx.stream_hub

    async def drop_all() -> None:
        for session in list(hub.clients):
            await session.ws.close(1012, "test: service restart")

    asyncio.run_coroutine_threadsafe(drop_all(), server._loop).result(5)
    page.wait_for_selector("#banner:not([hidden])", timeout=3000)
    assert "Live stream" in page.text_content("#banner")
    page.wait_for_function(f"window.mbDashboard.stream.connects > {connects}", timeout=5000)
    page.wait_for_selector("#banner", state="hidden", timeout=5000)
    page.wait_for_selector("#chart[data-state=ready]")  # history reloaded after the reconnect
    # The API unreachable (requests fail at the network level): banner, then recovery.
    page.route(f"{server.url}/**", lambda route: route.abort())
    page.evaluate("window.mbDashboard.checkHealth()")  # else the next poll, within 5 s
    page.wait_for_selector("#pill-api[data-state=bad]", timeout=7000)
    page.wait_for_function("document.querySelector('#banner').textContent.includes('API unreachable')")
    page.unroute(f"{server.url}/**")
    page.evaluate("window.mbDashboard.checkHealth()")
    page.wait_for_selector("#pill-api[data-state=ok]", timeout=7000)
    page.wait_for_selector("#banner", state="hidden")
