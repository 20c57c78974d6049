"""/collectors: desired state + NOTIFY in one transaction, status from heartbeats, secrets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from .test_api_support import execute, insert_instruments, running_api

API_KEY = "kiteapikey1234yz"
ACCESS_TOKEN = "SECRET-access-token-0123456789"
SECRETS = (API_KEY, ACCESS_TOKEN, API_KEY[2:-2])


def _no_secrets(response: httpx.Response) -> None:
    response.read()
    for secret in SECRETS:
        assert secret not in response.text, f"secret leaked by {response.request.url}"


@pytest.fixture(scope="module")
def dsn(module_db_url: str) -> str:
    insert_instruments(
        module_db_url,
        [("NSE", "RELIANCE", 738561, "EQ"), ("NSE", "TCS", 2953217, "EQ"),
         ("NSE", "INFY", 408065, "EQ"), ("NSE", "NIFTY 50", 256265, "EQ")],
    )
    return module_db_url


@pytest.fixture(scope="module")
def client(dsn: str) -> Iterator[httpx.Client]:
    # Every response of this module is checked for the secrets.
    with running_api(dsn) as server, server.client(event_hooks={"response": [_no_secrets]}) as c:
        yield c


@pytest.fixture
def listener(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("LISTEN mb_control")
        yield conn


def _notified(conn: psycopg.Connection[Any], expected: int = 0) -> list[str]:
    """Notifications received: waits for ``expected`` of them (briefly for more/none)."""
    got = [n.payload for n in conn.notifies(timeout=2.0, stop_after=expected)] if expected else []
    return got + [n.payload for n in conn.notifies(timeout=0.1)]


def _create(client: httpx.Client, name: str, **extra: Any) -> httpx.Response:
    body = {"name": name, "api_key": API_KEY, "access_token": ACCESS_TOKEN} | extra
    return client.post("/collectors", json=body)


def _row(dsn: str, name: str) -> tuple[Any, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT desired_state, generation, symbols, watchlists, mode, api_key, access_token"
            " FROM md.collectors WHERE name = %s", (name,)
        ).fetchone()
    assert row is not None
    return tuple(row)


# ---- create --------------------------------------------------------------------------


def test_create_stores_credentials_but_never_returns_them(
    client: httpx.Client, dsn: str, listener: psycopg.Connection[Any]
) -> None:
    r = _create(client, "primary")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["api_key"] == "ki****yz" and body["access_token"] == "****"
    assert (body["name"], body["mode"], body["desired_state"]) == ("primary", "quote", "stopped")
    assert body["status"]["running"] is False and body["status"]["state"] == "unknown"
    assert body["created_at"].endswith("+05:30")
    assert _row(dsn, "primary")[5:] == (API_KEY, ACCESS_TOKEN)
    assert _notified(listener, 1) == ["primary"]


def test_create_with_everything(client: httpx.Client, dsn: str) -> None:
    r = _create(client, "full.one", mode="full", symbols=["reliance", "NSE:NIFTY 50"],
                watchlists=["nifty50", "TOP_GAINERS"], auto_start=True)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["symbols"] == ["RELIANCE", "NIFTY 50"]
    assert body["watchlists"] == ["NIFTY50", "TOP_GAINERS"]
    assert body["desired_state"] == "running" and body["auto_start"] is True
    assert _row(dsn, "full.one")[:2] == ("running", 1)


def test_duplicate_name_is_409(client: httpx.Client) -> None:
    _create(client, "dup")
    r = _create(client, "dup")
    assert r.status_code == 409 and r.json()["error"] == "collector exists"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"name": "x", "api_key": "k"}, 400, "missing field(s): access_token"),
        ({"name": "bad name!", "api_key": "k", "access_token": "t"}, 400, "letters, digits"),
        ({"name": "metrics", "api_key": "k", "access_token": "t"}, 400, "reserved"),
        ({"name": "x", "api_key": 5, "access_token": "t"}, 400, "api_key must be a string"),
        ({"name": "x", "api_key": "k", "access_token": "t", "mode": "fast"}, 400, "valid modes"),
        ({"name": "x", "api_key": "k", "access_token": "t", "auto_start": "yes"}, 400,
         "auto_start must be true or false"),
        ({"name": "x", "api_key": "k", "access_token": "t", "symbol": ["TCS"]}, 400,
         "unknown field(s) 'symbol'"),
        ({"name": "x", "api_key": "k", "access_token": "t", "symbols": ["NOPE"]}, 404,
         "NSE:NOPE"),
        ({"name": "x", "api_key": "k", "access_token": "t", "symbols": ["BAD$"]}, 400,
         "invalid symbol"),
        ({"name": "x", "api_key": "k", "access_token": "t", "watchlists": ["NOPE"]}, 404,
         "valid watchlists"),
    ],
)
def test_create_bad_input(
    client: httpx.Client, body: dict[str, Any], status: int, fragment: str
) -> None:
    r = client.post("/collectors", json=body)
    assert r.status_code == status, r.text
    assert fragment in str(r.json()["detail"])


# ---- start / stop -----------------------------------------------------------------------


def test_start_and_stop_bump_generation_and_notify(
    client: httpx.Client, dsn: str, listener: psycopg.Connection[Any]
) -> None:
    _create(client, "cycler")
    _notified(listener, 1)
    r = client.post("/collectors/cycler/start")
    assert r.status_code == 200, r.text
    assert (r.json()["desired_state"], r.json()["changed"]) == ("running", True)
    assert _row(dsn, "cycler")[:2] == ("running", 2)
    assert _notified(listener, 1) == ["cycler"]
    again = client.post("/collectors/cycler/start").json()
    assert again["changed"] is False and again["generation"] == 2
    assert _notified(listener) == []  # nothing changed, nothing announced
    r = client.post("/collectors/cycler/stop")
    assert r.json()["desired_state"] == "stopped"
    assert _row(dsn, "cycler")[:2] == ("stopped", 3)
    assert _notified(listener, 1) == ["cycler"]


def test_unknown_collector_is_404_listing_existing(client: httpx.Client) -> None:
    _create(client, "known")
    for method, path in [("GET", ""), ("POST", "/start"), ("POST", "/stop"),
                         ("DELETE", ""), ("POST", "/mode")]:
        r = client.request(method, f"/collectors/ghost{path}", json={"mode": "ltp"})
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"] == "unknown collector"
        assert "'ghost'" in r.json()["detail"] and "known" in r.json()["detail"]
    r = client.post("/collectors/ghost/subscribe", json={"symbols": ["TCS"]})
    assert r.status_code == 404 and r.json()["error"] == "unknown collector"


# ---- subscribe / unsubscribe ----------------------------------------------------------


def test_subscribe_body_forms(
    client: httpx.Client, dsn: str, listener: psycopg.Connection[Any]
) -> None:
    _create(client, "subs")
    _notified(listener, 1)
    r = client.post("/collectors/subs/subscribe", json={"symbols": ["RELIANCE", "TCS", "tcs"]})
    assert r.status_code == 200, r.text
    assert r.json()["added"] == {"symbols": ["RELIANCE", "TCS"], "watchlists": []}
    assert _notified(listener, 1) == ["subs"]
    r = client.post("/collectors/subs/subscribe", json={"watchlist": "nifty50"})
    assert r.json()["added"]["watchlists"] == ["NIFTY50"]
    r = client.post("/collectors/subs/subscribe", json={"watchlists": ["IT", "PHARMA", "IT"]})
    body = r.json()
    assert body["watchlists"] == ["NIFTY50", "IT", "PHARMA"]
    assert body["symbols"] == ["RELIANCE", "TCS"]
    desired, generation, symbols, watchlists = _row(dsn, "subs")[:4]
    assert generation == 4 and symbols == ["RELIANCE", "TCS"]
    assert watchlists == ["NIFTY50", "IT", "PHARMA"]
    # Subscribing again changes nothing.
    again = client.post("/collectors/subs/subscribe", json={"symbols": ["TCS"]}).json()
    assert again["changed"] is False and again["generation"] == 4


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"symbols": ["RELIANCE", "NOPE", "ALSONOPE"]}, 404, "NSE:NOPE, NSE:ALSONOPE"),
        ({"symbols": ["NSE:RELIANCE:X"]}, 400, "more than one ':'"),
        ({"watchlist": "NOPE"}, 404, "'NOPE'"),
        ({"watchlists": ["IT", "NOPE"]}, 404, "valid watchlists"),
        ({"symbols": "RELIANCE"}, 400, "symbols must be a list"),
        ({"watchlist": ["IT"]}, 400, "watchlist must be a string"),
        ({}, 400, '"symbols": [...]'),
        ({"symbols": []}, 400, '"watchlist": "..."'),
        ({"tickers": ["TCS"]}, 400, "unknown field(s) 'tickers'"),
    ],
)
def test_subscribe_bad_input(
    client: httpx.Client, dsn: str, body: dict[str, Any], status: int, fragment: str
) -> None:
    _create(client, "strict")
    before = _row(dsn, "strict")
    r = client.post("/collectors/strict/subscribe", json=body)
    assert r.status_code == status, r.text
    assert fragment in str(r.json()["detail"])
    assert _row(dsn, "strict") == before


def test_unsubscribe_reports_what_changed(client: httpx.Client, dsn: str) -> None:
    _create(client, "unsubs", symbols=["RELIANCE", "TCS"], watchlists=["NIFTY50", "IT"])
    r = client.post("/collectors/unsubs/unsubscribe", json={"symbols": ["TCS", "INFY"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["symbols"] == ["RELIANCE"]
    assert body["removed"] == {"symbols": ["TCS"], "watchlists": []}
    assert body["not_subscribed"] == {"symbols": ["INFY"], "watchlists": []}
    # Both are still subscribed through the watchlists.
    assert body["still_subscribed_via"] == {"TCS": ["NIFTY50", "IT"], "INFY": ["NIFTY50", "IT"]}
    r = client.post("/collectors/unsubs/unsubscribe", json={"watchlist": "it"})
    assert r.json()["watchlists"] == ["NIFTY50"]
    r = client.post("/collectors/unsubs/unsubscribe", json={"watchlists": ["NIFTY50"]})
    assert r.json()["watchlists"] == [] and r.json()["changed"] is True
    assert _row(dsn, "unsubs")[1] == 4


# ---- status, metrics ------------------------------------------------------------------


def _status(dsn: str, name: str, age_seconds: float, **values: Any) -> None:
    execute(
        dsn,
        """INSERT INTO md.collector_status (name, owner, state, running, subscribed_tokens,
               ticks_received, bars_created, errors, reconnects, last_error, lag_ms,
               applied_generation, metrics, heartbeat_at)
           VALUES (%(name)s, 'host:1:1', 'running', true, %(tokens)s, 125430, 2150, 0, 3,
                   %(last_error)s, 12.5, 1, %(metrics)s,
                   now() - make_interval(secs => %(age)s))""",
        {"name": name, "tokens": values.get("tokens", 50), "age": age_seconds,
         "last_error": values.get("last_error"),
         "metrics": Jsonb(values.get("metrics", {}))},
    )


def test_metrics_in_the_seed_shape_and_staleness(client: httpx.Client, dsn: str) -> None:
    for name in ("live", "stale", "silent"):
        _create(client, name)
    _status(dsn, "live", 0.5)
    _status(dsn, "stale", 30)
    r = client.get("/collectors/metrics")
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"live", "stale", "silent"} <= set(body)
    live = body["live"]
    assert {k: live[k] for k in ("running", "subscribed_tokens", "ticks_received",
                                 "bars_created", "errors")} == {
        "running": True, "subscribed_tokens": 50, "ticks_received": 125430,
        "bars_created": 2150, "errors": 0,
    }
    assert live["reconnects"] == 3 and live["lag_ms"] == 12.5 and live["state"] == "running"
    assert (body["stale"]["running"], body["stale"]["state"]) == (False, "stale")
    assert (body["silent"]["running"], body["silent"]["state"]) == (False, "unknown")
    assert body["silent"]["ticks_received"] == 0


def test_get_one_and_list(client: httpx.Client, dsn: str) -> None:
    _create(client, "shown", symbols=["INFY"])
    _status(dsn, "shown", 0.1, last_error=f"token {ACCESS_TOKEN} rejected",
            metrics={"note": f"key={API_KEY}", "ws_url": "wss://x"})
    body = client.get("/collectors/shown").json()
    assert body["symbols"] == ["INFY"] and body["status"]["running"] is True
    assert body["status"]["last_error"] == "token **** rejected"
    assert body["status"]["metrics"] == {"note": "key=****", "ws_url": "wss://x"}
    assert body["status"]["in_sync"] is True
    listed = client.get("/collectors").json()
    assert listed["count"] == len(listed["collectors"])
    assert "shown" in [c["name"] for c in listed["collectors"]]


def test_mode_credentials_and_delete(
    client: httpx.Client, dsn: str, listener: psycopg.Connection[Any]
) -> None:
    _create(client, "misc")
    _notified(listener, 1)
    r = client.post("/collectors/misc/mode", json={"mode": "full"})
    assert r.json()["mode"] == "full" and _row(dsn, "misc")[4] == "full"
    assert client.post("/collectors/misc/mode", json={"mode": "turbo"}).status_code == 400
    r = client.put("/collectors/misc/credentials", json={"access_token": "new-token-value-xyz"})
    assert r.status_code == 200 and r.json()["access_token"] == "****"
    assert _row(dsn, "misc")[5:] == (API_KEY, "new-token-value-xyz")
    assert client.put("/collectors/misc/credentials", json={}).status_code == 400
    r = client.delete("/collectors/misc")
    assert r.json() == {"deleted": "misc"}
    assert client.get("/collectors/misc").status_code == 404
    assert _notified(listener, 3) == ["misc", "misc", "misc"]
