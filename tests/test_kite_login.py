"""`market-bridge kite login` against the simulator's session endpoint, and the REST client."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from market_bridge.kite import credentials
from market_bridge.kite.errors import KiteInputError, KiteTokenError
from market_bridge.kite.models import IST
from market_bridge.kite.rest import KiteRest, plan_requests
from market_bridge.kite.simulator import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    simulator_thread,
)
from market_bridge.market.timeframes import TIMEFRAMES


def test_login_stores_token_0600_and_never_prints_secrets(tmp_path: Path) -> None:
    with simulator_thread(port=0) as sim:
        env = dict(os.environ, MB_HOME=str(tmp_path), KITE_API_ROOT=sim.url,
                   ZERODHA_API_KEY=DEFAULT_API_KEY, ZERODHA_API_SECRET=DEFAULT_API_SECRET)
        env.pop("ZERODHA_ACCESS_TOKEN", None)
        proc = subprocess.run(
            [sys.executable, "-m", "market_bridge.cli.main", "kite", "login",
             "--request-token", "req-123"],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        stored = credentials.read_env_file(tmp_path / "kite.env")
        token = stored["ZERODHA_ACCESS_TOKEN"]
        assert (tmp_path / "kite.env").stat().st_mode & 0o777 == 0o600
        out = proc.stdout + proc.stderr
        for secret in (token, DEFAULT_API_SECRET):
            assert secret not in out
        assert "expires at" in out and "06:00 IST" in out
        # the stored token works against the REST API
        rest = KiteRest(DEFAULT_API_KEY, token, root=sim.url)
        assert rest.profile()


def test_token_expiry_is_next_six_am_ist() -> None:
    assert credentials.token_expiry(datetime(2026, 11, 25, 9, 0, tzinfo=IST)) == datetime(
        2026, 11, 26, 6, 0, tzinfo=IST)
    assert credentials.token_expiry(datetime(2026, 11, 25, 5, 0, tzinfo=IST)) == datetime(
        2026, 11, 25, 6, 0, tzinfo=IST)


def test_plan_requests_respects_span_limit_without_overlap() -> None:
    tf = TIMEFRAMES["1m"]
    start = datetime(2024, 1, 1, tzinfo=IST)
    end = datetime(2024, 12, 31, 23, 59, tzinfo=IST)
    windows = plan_requests(tf, start, end)
    assert windows[0].start == start and windows[-1].end == end
    for a, b in zip(windows, windows[1:], strict=False):
        assert b.start - a.end == timedelta(seconds=1)
    assert all(w.end - w.start < timedelta(days=tf.max_days_per_request) for w in windows)
    assert len(windows) == 7  # 366 days / 60


def test_rest_errors_are_classified() -> None:
    with simulator_thread(port=0) as sim:
        rest = KiteRest(DEFAULT_API_KEY, DEFAULT_ACCESS_TOKEN, root=sim.url, max_retries=1,
                        backoff_base=0.01)
        instruments = rest.instruments("NSE")
        infy = next(i for i in instruments if i.tradingsymbol == "INFY")
        tf = TIMEFRAMES["1m"]
        day = datetime(2026, 11, 20, 9, 15, tzinfo=IST)
        window = plan_requests(tf, day, day + timedelta(minutes=10))[0]
        candles = rest.historical(infy.instrument_token, tf, window)
        assert [c.start for c in candles][:2] == [day, day + timedelta(minutes=1)]
        from market_bridge.kite.rest import RequestWindow

        with pytest.raises(KiteInputError, match="interval exceeds max limit"):
            rest.historical(infy.instrument_token, tf,
                            RequestWindow(day, day + timedelta(days=90)))
        bad = KiteRest(DEFAULT_API_KEY, "expired", root=sim.url)
        with pytest.raises(KiteTokenError, match="market-bridge kite login"):
            bad.historical(infy.instrument_token, tf, window)
