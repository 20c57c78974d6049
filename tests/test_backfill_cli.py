"""The backfill CLI commands, seed spellings included, against the simulator and a real DB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from market_bridge.cli.flows_cli import normalize_single_dash, register
from market_bridge.kite.models import IST
from market_bridge.kite.simulator import Simulator, simulator_thread
from market_bridge.market.calendar import TradingCalendar

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    return app


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    cal = TradingCalendar()
    with simulator_thread(port=0, session="nse", is_trading_day=cal.is_trading_day) as s:
        yield s


@pytest.fixture
def env(db_url: str, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The database and the simulator, no Kite credentials: the simulator's are used."""
    for key in ("ZERODHA_API_KEY", "KITE_API_KEY", "ZERODHA_ACCESS_TOKEN", "KITE_ACCESS_TOKEN",
                "MB_CALENDAR_OVERRIDES"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("KITE_API_ROOT", sim.url)
    monkeypatch.setenv("MB_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")  # rich tables unwrapped in the captured output
    return db_url


def run(app: typer.Typer, *argv: str) -> tuple[int, str]:
    result = runner.invoke(app, normalize_single_dash(list(argv)))
    return result.exit_code, result.output


def bars(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM md.intraday_bars").fetchone()
    return int(row[0]) if row else 0


def test_normalize_single_dash_rewrites_only_known_long_options() -> None:
    argv = ["backfill", "-watchlist", "NIFTY50", "-from=2024-01-01", "-dry-run", "-c", "5",
            "-symbols", "-TCS", "--", "-to"]
    assert normalize_single_dash(argv) == [
        "backfill", "--watchlist", "NIFTY50", "--from=2024-01-01", "--dry-run", "-c", "5",
        "--symbols", "-TCS", "--", "-to"]
    other = ["kite", "login", "-from", "x"]  # other commands' arguments are left alone
    assert normalize_single_dash(other) == other


def test_seed_spelling_dry_run_then_real_run_then_nothing_to_do(
    app: typer.Typer, env: str
) -> None:
    code, out = run(app, "instruments", "sync")
    assert code == 0, out
    assert "instruments:" in out and "NSE" in out
    seed = ["backfill", "-symbols", "RELIANCE,TCS,INFY", "-from", "2026-11-16", "-to",
            "2026-11-20"]
    code, out = run(app, *seed, "-dry-run")
    assert code == 0, out
    assert "3 symbols, 3 requests, 5625 expected bars" in out and "nothing fetched" in out
    assert bars(env) == 0
    code, out = run(app, *seed, "-concurrent", "10")
    assert code == 0, out
    assert "5625 bars written" in out and "RELIANCE" in out
    assert bars(env) == 5625
    code, out = run(app, *seed)
    assert code == 0 and "nothing to do" in out


def test_gaps_and_completeness_commands(app: typer.Typer, env: str) -> None:
    run(app, "instruments", "sync")
    code, out = run(app, "backfill", "--symbols", "TCS", "--from", "2026-11-20", "--to",
                    "2026-11-20", "--timeframe", "5m")
    assert code == 0, out
    with psycopg.connect(env) as conn:
        conn.execute("DELETE FROM md.intraday_bars WHERE bar_timestamp >= %s AND bar_timestamp < %s",
                     (datetime.combine(date(2026, 11, 20), time(13, 0), IST),
                      datetime.combine(date(2026, 11, 20), time(13, 15), IST)))
    code, out = run(app, "gaps", "-s", "TCS", "--from", "2026-11-20", "--to", "2026-11-22",
                    "-t", "5m")  # Friday to Sunday
    assert code == 0, out
    assert "2026-11-20 13:00" in out and "2026-11-20 13:15" in out and "1 gaps, 3 missing" in out
    code, out = run(app, "completeness", "-s", "TCS", "--from", "2026-11-20", "--to",
                    "2026-11-24", "-t", "5m")
    assert code == 0, out
    assert "96.0" in out and "good" in out  # Friday: 72 of 75
    assert "2026-11-23" in out and "poor" in out  # Monday: nothing stored
    assert "2026-11-24" not in out and "2026-11-21" not in out  # holiday, weekend: no rows
    code, out = run(app, "gaps", "-s", "TCS", "--from", "2026-11-20", "--to", "2026-11-20",
                    "-t", "5m", "--fill")
    assert code == 0, out
    assert "0 gaps (0 bars) remain" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["backfill", "-symbols", "TCS", "-from", "2026-13-01"], "is not a date"),
        (["backfill", "-symbols", "TCS", "-from", "2026-11-20", "-to", "2026-11-01"],
         "is after --to"),
        (["backfill", "-symbols", "TCS", "-timeframe", "2m"], "unknown timeframe '2m'"),
        (["backfill", "-watchlist", "NIFTY5000"], "unknown watchlist 'NIFTY5000'"),
        (["backfill", "-symbols", "XX:TCS"], "unknown exchange 'XX'"),
        (["backfill", "-from", "2026-11-01"], "give a watchlist"),
        (["backfill", "-symbols", "TCS", "-concurrent", "0"], "--concurrent"),
        (["backfill", "-symbols", "TCS", "-frm", "2026-11-01"], "No such option"),
    ],
)
def test_bad_flags_name_the_problem(app: typer.Typer, argv: list[str], needle: str) -> None:
    code, out = run(app, *argv)
    assert code == 2
    assert needle in out


def test_no_credentials_and_no_simulator_is_a_clear_error(
    app: typer.Typer, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KITE_API_ROOT")
    code, out = run(app, "backfill", "-symbols", "TCS", "-from", "2026-11-20")
    assert code == 1
    assert "no Kite credentials" in out and "kite login" in out
