"""Database unreachable: 503 with the reason, never a traceback; bad input is still 400; after
a restart of the database no request fails."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from api import db as api_db
from market_bridge.db.cluster import LocalCluster

from .conftest import free_port
from .test_api_support import running_api


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    closed = f"postgresql://market_bridge:pw-not-shown@127.0.0.1:{free_port()}/market_bridge"
    with running_api(closed, pool_timeout=0.5) as server, server.client() as c:
        yield c


@pytest.mark.parametrize(
    "path",
    [
        "/intraday/bars/RELIANCE",
        "/intraday/latest/RELIANCE",
        "/intraday/gaps/RELIANCE",
        "/watchlists/TOP_GAINERS",
        "/collectors",
        "/collectors/metrics",
        "/collectors/primary",
    ],
)
def test_reads_are_503_with_the_reason(client: httpx.Client, path: str) -> None:
    started = time.monotonic()
    r = client.get(path)
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "5"
    body = r.json()
    assert body["error"] == "database unavailable"
    assert "refused" in body["detail"].lower() or "connection failed" in body["detail"]
    assert "pw-not-shown" not in r.text and "Traceback" not in r.text
    assert time.monotonic() - started < 10


def test_writes_are_503_too(client: httpx.Client) -> None:
    r = client.post("/collectors", json={"name": "x", "api_key": "k", "access_token": "t"})
    assert r.status_code == 503 and r.json()["error"] == "database unavailable"
    assert client.post("/collectors/x/start").status_code == 503


def test_bad_input_is_still_400(client: httpx.Client) -> None:
    r = client.get("/intraday/bars/RELIANCE", params={"timeframe": "2m"})
    assert r.status_code == 400 and r.json()["error"] == "unknown timeframe"
    r = client.post("/collectors", content=b"{oops")
    assert r.status_code == 400 and r.json()["error"] == "invalid JSON"


def test_health_is_503_naming_the_database(client: httpx.Client) -> None:
    r = client.get("/health")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unavailable"
    assert body["components"]["database"]["status"] == "down"
    assert body["components"]["database"]["detail"]
    assert body["components"]["streaming"]["status"] == "unknown"


def test_static_watchlists_still_work_and_movers_say_why(client: httpx.Client) -> None:
    assert client.get("/watchlists/NIFTY50").status_code == 200
    assert client.get("/watchlists/names").status_code == 200
    body = client.get("/watchlists").json()
    gainers = next(w for w in body["watchlists"] if w["name"] == "TOP_GAINERS")
    assert gainers["symbols"] == [] and gainers["reason"].startswith("database unavailable")
    merged = client.post("/watchlists/merge", json={"watchlists": ["IT", "PHARMA"]})
    assert merged.status_code == 200


@pytest.mark.parametrize("idle_check_after", [3600.0, 0.0])
def test_a_database_restart_fails_no_later_request(
    own_cluster: LocalCluster,
    monkeypatch: pytest.MonkeyPatch,
    idle_check_after: float,
) -> None:
    # 3600: every pooled connection counts as "recently released", so only the poll for a
    # shutdown notice / end-of-file stands between a broken connection and a request;
    # 0: every checkout runs the empty query. Either way broken connections are replaced
    # at once (the pool's own check loop would back off 1 s, 2 s, ... between them).
    monkeypatch.setattr(api_db, "CHECK_AFTER_IDLE_S", idle_check_after)
    with running_api(own_cluster.dsn("mb"), pool_max_size=4) as server:
        with server.client() as c, ThreadPoolExecutor(4) as pool:  # open all 4 connections
            assert set(pool.map(lambda _: c.get("/collectors").status_code, range(16))) == {200}
        own_cluster.stop("fast")
        own_cluster.start()
        with server.client() as c:
            codes = [c.get("/collectors").status_code for _ in range(12)]
    assert codes == [200] * 12
