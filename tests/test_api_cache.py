"""The bar cache through the real server (api.bar_cache, migration 0010): cached answers
are the uncached ones byte for byte, and every committed write of bars, by plain SQL on
another connection, shows in the very next request."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time as clock
from collections.abc import Iterator
from datetime import date, datetime, time
from typing import Any

import httpx
import psycopg
import pytest

from api.bar_cache import BarCache
from market_bridge.kite.models import IST

from .conftest import free_port
from .test_api_support import (
    ApiServer,
    execute,
    insert_bars,
    insert_instruments,
    make_bars,
    running_api,
    session_minutes,
)

MON, TUE = date(2024, 1, 29), date(2024, 1, 30)  # the fixed clock: Tue 2024-01-30 12:00:30
FORMATS = ("json", "csv", "parquet", "arrow")
PATHS = [
    "/intraday/bars/RELIANCE",
    "/intraday/bars/RELIANCE?limit=50",
    "/intraday/bars/RELIANCE?from=2024-01-29&to=2024-01-29T10:00:00%2B05:30&limit=7",
    "/intraday/bars/NSE:NIFTY%2050?timeframe=1m&from=2024-01-30",
    "/intraday/today/RELIANCE?limit=20",
    "/intraday/latest/RELIANCE",
    "/intraday/latest/BSE:SENSEX",
]


def _seed(dsn: str) -> None:
    insert_instruments(dsn, [("NSE", "RELIANCE", 738561, "EQ"), ("NSE", "NIFTY 50", 256265, "EQ"),
                             ("NSE", "TCS", 2953217, "EQ")])  # fmt: skip
    insert_bars(dsn, make_bars("RELIANCE", 738561, session_minutes(MON), base=2560, step=0.1))
    insert_bars(dsn, make_bars("RELIANCE", 738561, session_minutes(TUE, last=time(11, 59)),
                               base=2610, step=0.1, provenance="live"))  # fmt: skip
    insert_bars(dsn, make_bars("NIFTY 50", 256265, session_minutes(TUE, last=time(9, 20)),
                               base=21500, step=1))  # fmt: skip
    insert_bars(dsn, make_bars("SENSEX", 265, session_minutes(TUE, last=time(9, 16)),
                               base=71000, step=1, exchange="BSE"))  # fmt: skip


@pytest.fixture(scope="module")
def dsn(module_db_url: str) -> str:
    _seed(module_db_url)
    return module_db_url


@pytest.fixture(scope="module")
def api(dsn: str) -> Iterator[ApiServer]:
    with running_api(dsn) as server:
        yield server


@pytest.fixture
def client(api: ApiServer) -> Iterator[httpx.Client]:
    with api.client() as c:
        yield c


def cache_of(api: ApiServer) -> BarCache:
    cache: BarCache = api.app.ctx.bar_cache
    return cache


def metrics(client: httpx.Client) -> dict[str, float]:
    """``/metrics`` samples of the bar cache: name (with labels) -> value."""
    text = client.get("/metrics").text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^(mb_api_bar_cache\S*) (\S+)$", text, re.M)
    }


def hits(client: httpx.Client) -> float:
    return metrics(client).get("mb_api_bar_cache_hits_total", 0.0)


def close_of(client: httpx.Client, path: str = "/intraday/bars/RELIANCE?limit=5") -> float:
    r = client.get(path)
    assert r.status_code == 200, r.text
    return float(r.json()["bars"][-1]["close"])


LAST_RELIANCE = datetime(2024, 1, 30, 11, 59, tzinfo=IST)


def run_sql(dsn: str, statement: str, params: Any = ()) -> None:
    """A write on a connection of its own, committed before this returns."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement, params)


# ---- cached == uncached ------------------------------------------------------------


def test_cached_answers_are_the_uncached_ones_in_every_format(dsn: str, api: ApiServer) -> None:
    with running_api(dsn, bar_cache_bytes=0) as plain, plain.client() as uncached, \
            api.client() as client:  # fmt: skip
        assert not cache_of(plain).enabled and cache_of(plain).listener is None
        for path in PATHS:
            for fmt in FORMATS:
                if "latest" in path and fmt != "json":
                    continue
                url = f"{path}{'&' if '?' in path else '?'}format={fmt}"
                first = client.get(url)
                before = hits(client)
                second = client.get(url)
                assert hits(client) == before + 1, url  # the second one came from the cache
                reference = uncached.get(url)
                for r in (first, second):
                    assert r.status_code == reference.status_code == 200, (url, r.text)
                    assert r.content == reference.content, url
                    for header in ("content-type", "content-disposition", "vary"):
                        assert r.headers.get(header) == reference.headers.get(header), (url, header)
        # The Accept header picks the format too: a separate entry, the same bytes.
        accept = {"Accept": "text/csv"}
        client.get("/intraday/bars/RELIANCE?limit=3", headers=accept)
        cached = client.get("/intraday/bars/RELIANCE?limit=3", headers=accept)
        assert cached.headers["content-type"].startswith("text/csv")
        assert cached.content == uncached.get("/intraday/bars/RELIANCE?limit=3",
                                              headers=accept).content  # fmt: skip


def test_empty_answers_and_errors_are_not_cached(client: httpx.Client, api: ApiServer) -> None:
    before = len(cache_of(api))
    assert client.get("/intraday/bars/TCS").json()["count"] == 0  # listed, no bars
    assert client.get("/intraday/latest/TCS").status_code == 404
    assert client.get("/intraday/bars/NOPE").status_code == 404
    assert client.get("/intraday/bars/RELIANCE?limit=0").status_code == 400
    assert len(cache_of(api)) == before


# ---- writes show at once -------------------------------------------------------------


def test_insert_update_delete_show_in_the_next_request(dsn: str, client: httpx.Client) -> None:
    path = "/intraday/bars/RELIANCE?limit=5"
    for i in range(40):  # each round: the answer is cached, then a write must replace it
        close_of(client, path)
        assert close_of(client, path) == close_of(client, path)  # served from the cache
        run_sql(dsn, "UPDATE md.intraday_bars SET close = %s WHERE symbol = 'RELIANCE' "
                     "AND timeframe = '1m' AND bar_timestamp = %s", (1000.0 + i, LAST_RELIANCE))  # fmt: skip
        assert close_of(client, path) == 1000.0 + i

    later = datetime(2024, 1, 30, 12, 0, tzinfo=IST)
    run_sql(dsn, """INSERT INTO md.intraday_bars (exchange, symbol, instrument_token,
                        bar_timestamp, timeframe, open, high, low, close, provenance)
                    VALUES ('NSE', 'RELIANCE', 738561, %s, '1m', 1, 1, 1, 7.5, 'live')""",
            (later,))  # fmt: skip
    assert close_of(client, path) == 7.5
    assert client.get("/intraday/latest/RELIANCE").json()["bar"]["close"] == 7.5
    close_of(client, path)
    run_sql(dsn, "DELETE FROM md.intraday_bars WHERE symbol = 'RELIANCE' AND bar_timestamp = %s",
            (later,))  # fmt: skip
    assert close_of(client, path) == 1039.0
    assert client.get("/intraday/latest/RELIANCE").json()["bar"]["close"] == 1039.0


def test_read_your_writes_many_times(dsn: str, client: httpx.Client) -> None:
    """Commit, then ask at once: the notification may still be on its way to the worker
    when the request arrives. A hit waits for a round trip on the LISTEN connection, which
    comes back after it (without that round trip this fails within a few hundred rounds)."""
    path = "/intraday/latest/RELIANCE"
    original = client.get(path).json()["bar"]["close"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(300):
            assert client.get(path).status_code == 200  # cached (again)
            conn.execute("UPDATE md.intraday_bars SET close = %s WHERE symbol = 'RELIANCE' "
                         "AND timeframe = '1m' AND bar_timestamp = %s",
                         (2000.0 + i, LAST_RELIANCE))  # fmt: skip
            assert client.get(path).json()["bar"]["close"] == 2000.0 + i, f"round {i}"
        conn.execute("UPDATE md.intraday_bars SET close = %s WHERE symbol = 'RELIANCE' "
                     "AND timeframe = '1m' AND bar_timestamp = %s", (original, LAST_RELIANCE))  # fmt: skip


def test_writer_upsert_and_other_symbols(dsn: str, client: httpx.Client) -> None:
    nifty = "/intraday/bars/NSE:NIFTY%2050?limit=3"
    sensex = "/intraday/bars/BSE:SENSEX?limit=3"
    n0, s0 = close_of(client, nifty), close_of(client, sensex)
    h = hits(client)
    # INSERT ... ON CONFLICT DO UPDATE, as the streaming writer and the backfill write bars.
    run_sql(dsn, """INSERT INTO md.intraday_bars (exchange, symbol, instrument_token,
                        bar_timestamp, timeframe, open, high, low, close)
                    VALUES ('NSE', 'NIFTY 50', 256265, %s, '1m', 1, 1, 1, 42)
                    ON CONFLICT (exchange, symbol, bar_timestamp, timeframe)
                    DO UPDATE SET close = EXCLUDED.close""",
            (datetime(2024, 1, 30, 9, 20, tzinfo=IST),))  # fmt: skip
    assert close_of(client, nifty) == 42 != n0
    assert close_of(client, sensex) == s0  # another symbol's answer stays cached
    assert hits(client) == h + 1
    run_sql(dsn, "UPDATE md.intraday_bars SET close = %s WHERE symbol = 'NIFTY 50' "
                 "AND bar_timestamp = %s", (n0, datetime(2024, 1, 30, 9, 20, tzinfo=IST)))  # fmt: skip
    assert close_of(client, nifty) == n0


def test_truncate_empties_the_cache(db_url: str) -> None:
    dsn = db_url  # a database of its own: the TRUNCATE takes every bar
    _seed(dsn)
    with running_api(dsn) as api, api.client() as client:
        assert client.get("/intraday/bars/RELIANCE").json()["count"] == 375 + 165
        assert client.get("/intraday/bars/SENSEX").status_code == 404  # NSE:SENSEX
        client.get("/intraday/bars/BSE:SENSEX")
        assert len(cache_of(api)) == 2
        run_sql(dsn, "TRUNCATE md.intraday_bars")
        assert client.get("/intraday/bars/RELIANCE").json()["count"] == 0
        assert client.get("/intraday/bars/BSE:SENSEX").status_code == 404  # no data left
        assert metrics(client)['mb_api_bar_cache_invalidations_total{reason="truncate"}'] == 2


# ---- a write racing a request --------------------------------------------------------


def test_a_write_committed_during_the_query_is_not_cached(
    dsn: str, api: ApiServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request reads the bars, then (before its answer is stored) a write commits and
    its notification is applied: the answer read before it must not be stored."""
    from api.routes import intraday

    real = intraday.bar_queries.bars_in_range
    cache = cache_of(api)
    path = "/intraday/bars/RELIANCE?limit=4"
    close0 = close_of(client, "/intraday/bars/RELIANCE?limit=6")  # another key

    async def read_then_write(*args: Any, **kwargs: Any) -> Any:
        rows = await real(*args, **kwargs)  # the answer as of now
        await asyncio.to_thread(run_sql, dsn, "UPDATE md.intraday_bars SET close = 5.25 "
                                "WHERE symbol = 'RELIANCE' AND bar_timestamp = %s",
                                (LAST_RELIANCE,))  # fmt: skip
        assert cache.listener is not None
        assert await cache.listener.sync()  # its notification is in: the generation moved
        return rows

    monkeypatch.setattr(intraday.bar_queries, "bars_in_range", read_then_write)
    not_stored = metrics(client).get("mb_api_bar_cache_not_stored_total", 0.0)
    assert close_of(client, path) == close0  # read before the write
    monkeypatch.setattr(intraday.bar_queries, "bars_in_range", real)
    assert metrics(client)["mb_api_bar_cache_not_stored_total"] == not_stored + 1
    assert close_of(client, path) == 5.25
    run_sql(dsn, "UPDATE md.intraday_bars SET close = %s WHERE symbol = 'RELIANCE' "
                 "AND bar_timestamp = %s", (close0, LAST_RELIANCE))  # fmt: skip
    assert close_of(client, path) == close0


def test_a_write_committed_after_the_answer_was_stored_drops_it(
    dsn: str, client: httpx.Client
) -> None:
    """A transaction that updated a bar is still open while a request reads and caches the
    old answer; once it commits, the next request gets the new one."""
    path = "/intraday/bars/RELIANCE?limit=3"
    close0 = close_of(client, path)
    updated, go = threading.Event(), threading.Event()

    def writer() -> None:
        with psycopg.connect(dsn) as conn:  # one transaction
            conn.execute("UPDATE md.intraday_bars SET close = 6.5 WHERE symbol = 'RELIANCE' "
                         "AND bar_timestamp = %s", (LAST_RELIANCE,))  # fmt: skip
            updated.set()
            go.wait(10)
        # committed by the context manager

    thread = threading.Thread(target=writer)
    thread.start()
    assert updated.wait(10)
    try:
        h = hits(client)
        assert close_of(client, path) == close0  # uncommitted: invisible
        assert close_of(client, path) == close0
        assert hits(client) == h + 2  # the old answer, cached before the write, is served
    finally:
        go.set()
    thread.join(10)
    assert close_of(client, path) == 6.5
    execute(dsn, "UPDATE md.intraday_bars SET close = %s WHERE symbol = 'RELIANCE' "
                 "AND bar_timestamp = %s", (close0, LAST_RELIANCE))  # fmt: skip
    assert close_of(client, path) == close0


# ---- LISTEN connection ---------------------------------------------------------------


def _listener_pids(dsn: str) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("""SELECT pid FROM pg_stat_activity WHERE datname = current_database()
                               AND application_name LIKE 'market-bridge-api-cache:%'""").fetchall()  # fmt: skip
    return [r[0] for r in rows]


def _wait(what: str, probe: Any, timeout: float = 10.0) -> None:
    deadline = clock.monotonic() + timeout
    while not probe():
        if clock.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        clock.sleep(0.02)


def test_losing_the_listen_connection_turns_the_cache_off(
    dsn: str, api: ApiServer, client: httpx.Client
) -> None:
    cache = cache_of(api)
    listener = cache.listener
    assert listener is not None and cache.listening
    path = "/intraday/bars/RELIANCE?limit=2"
    close0 = close_of(client, path)
    close_of(client, path)
    assert len(cache) > 0
    good_dsn = listener.dsn
    listener.dsn = re.sub(r":\d+/", ":1/", good_dsn)  # nothing listens on port 1
    assert listener.dsn != good_dsn
    pid = listener.backend_pid
    assert pid in _listener_pids(dsn)
    run_sql(dsn, "SELECT pg_terminate_backend(%s)", (pid,))
    h = hits(client)
    # Whether or not the worker has noticed yet, nothing is served from the cache...
    assert close_of(client, path) == close0
    _wait("the loss to be noticed", lambda: not cache.listening)
    assert len(cache) == 0
    assert metrics(client)["mb_api_bar_cache_listening"] == 0
    # ... nor stored while it cannot listen: writes now would go unnoticed.
    for _ in range(3):
        assert close_of(client, path) == close0
    assert hits(client) == h and len(cache) == 0
    run_sql(dsn, "UPDATE md.intraday_bars SET close = 8.75 WHERE symbol = 'RELIANCE' "
                 "AND bar_timestamp = %s", (LAST_RELIANCE,))  # fmt: skip
    assert close_of(client, path) == 8.75
    # Back: listening again, empty, and caching.
    listener.dsn = good_dsn
    _wait("LISTEN again", lambda: cache.listening)
    assert listener.backend_pid != pid
    assert close_of(client, path) == 8.75
    assert close_of(client, path) == 8.75
    assert hits(client) == h + 1
    run_sql(dsn, "UPDATE md.intraday_bars SET close = %s WHERE symbol = 'RELIANCE' "
                 "AND bar_timestamp = %s", (close0, LAST_RELIANCE))  # fmt: skip
    assert close_of(client, path) == close0


# ---- size bound ------------------------------------------------------------------------


def test_the_size_bound_evicts_least_recently_used(dsn: str) -> None:
    bound = 256 * 1024
    with running_api(dsn, bar_cache_bytes=bound) as api, api.client() as client:
        cache = cache_of(api)
        sizes = []
        for limit in range(100, 301, 25):  # 19-57 KB of JSON each, 9 answers
            r = client.get(f"/intraday/bars/RELIANCE?limit={limit}")
            sizes.append(len(r.content))
            assert cache.bytes <= bound
        assert sum(sizes) > bound
        m = metrics(client)
        assert m["mb_api_bar_cache_evictions_total"] > 0
        assert m["mb_api_bar_cache_bytes"] == cache.bytes <= bound
        assert m["mb_api_bar_cache_entries"] == len(cache) < len(sizes)
        # The newest answer is still there, the oldest is gone.
        h = hits(client)
        client.get("/intraday/bars/RELIANCE?limit=300")
        assert hits(client) == h + 1
        client.get("/intraday/bars/RELIANCE?limit=100")
        assert hits(client) == h + 1
        # An answer over a quarter of the bound is not kept at all.
        before = len(cache)
        big = client.get("/intraday/bars/RELIANCE?limit=500")
        assert len(big.content) > bound // 4
        client.get("/intraday/bars/RELIANCE?limit=500")
        assert len(cache) == before and hits(client) == h + 1


def test_disabled_cache_has_no_listen_connection(dsn: str) -> None:
    before = len(_listener_pids(dsn))
    with running_api(dsn, bar_cache_bytes=0) as api, api.client() as client:
        assert len(_listener_pids(dsn)) == before
        client.get("/intraday/bars/RELIANCE")
        client.get("/intraday/bars/RELIANCE")
        assert hits(client) == 0
        assert "mb_api_bar_cache_bytes" not in metrics(client)


# ---- several workers -------------------------------------------------------------------


def test_every_worker_drops_what_a_write_made_stale(
    dsn: str, tmp_path: Any, api: ApiServer
) -> None:
    """``market-bridge api`` with 2 workers: each has its cache and its LISTEN session."""
    ours = set(_listener_pids(dsn))  # the module's in-process server
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env |= {"DATABASE_URL": dsn, "MB_API_HOST": "127.0.0.1", "MB_API_PORT": str(port)}
    log = tmp_path / "api.log"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from api.server import serve; serve(workers=2)"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    path = "/intraday/bars/RELIANCE?limit=5"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the API exited: {log.read_text()[-2000:]}")
        try:
            ok = httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
        return ok and len(set(_listener_pids(dsn)) - ours) == 2

    def fresh() -> float:  # a new connection: either worker may take it
        with httpx.Client(base_url=base, timeout=10, trust_env=False) as c:
            return close_of(c, path)

    close0: float | None = None
    try:
        _wait("2 workers listening", up, timeout=60)
        close0 = fresh()
        for i in range(8):
            for _ in range(6):
                fresh()  # cached by whichever workers take these
            run_sql(dsn, "UPDATE md.intraday_bars SET close = %s WHERE symbol = 'RELIANCE' "
                         "AND bar_timestamp = %s", (3000.0 + i, LAST_RELIANCE))  # fmt: skip
            for _ in range(6):
                assert fresh() == 3000.0 + i
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if close0 is not None:
            run_sql(dsn, "UPDATE md.intraday_bars SET close = %s WHERE symbol = 'RELIANCE' "
                         "AND bar_timestamp = %s", (close0, LAST_RELIANCE))  # fmt: skip
