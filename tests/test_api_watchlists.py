"""/watchlists: static lists, categories, merge, and movers computed from stored bars."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time

import httpx
import pytest

from market_bridge.kite.models import IST
from market_bridge.watchlists import (
    by_category,
    categories,
    get_watchlist,
    merge_watchlists,
    watchlist_names,
)

from .test_api_support import SeedBar, insert_bars, running_api

MON, TUE = date(2024, 1, 29), date(2024, 1, 30)


def _bar(symbol: str, day: date, hhmm: tuple[int, int], close: float, volume: int) -> SeedBar:
    ts = datetime.combine(day, time(*hhmm), IST)
    return SeedBar("NSE", symbol, 1, ts, "1m", close, close, close, close, volume, None, None,
                   None, "live")


# previous close (Monday 15:29) -> latest (Tuesday), Tuesday volume = sum of its bars
SEED = [
    _bar("RELIANCE", MON, (15, 29), 100.0, 10), _bar("RELIANCE", TUE, (9, 15), 102.0, 300),
    _bar("RELIANCE", TUE, (9, 16), 105.0, 300),                      # +5%, volume 600
    _bar("TCS", MON, (15, 29), 200.0, 10), _bar("TCS", TUE, (9, 16), 190.0, 5000),  # -5%
    _bar("INFY", MON, (15, 29), 300.0, 10), _bar("INFY", TUE, (9, 16), 303.0, 100),  # +1%
    _bar("HDFCBANK", TUE, (9, 16), 1500.0, 2000),      # no previous close: volume only
    _bar("WIPRO", MON, (15, 28), 400.0, 1), _bar("WIPRO", MON, (15, 29), 480.0, 99999),  # stale
    _bar("IDEA", MON, (15, 29), 10.0, 1), _bar("IDEA", TUE, (9, 16), 20.0, 10**7),  # not in universe
]


@pytest.fixture(scope="module")
def client(module_db_url: str) -> Iterator[httpx.Client]:
    insert_bars(module_db_url, SEED)
    with running_api(module_db_url) as server, server.client() as c:
        yield c


def test_all_watchlists(client: httpx.Client) -> None:
    body = client.get("/watchlists").json()
    assert body["count"] == len(watchlist_names())
    assert [w["name"] for w in body["watchlists"]] == watchlist_names()
    nifty = next(w for w in body["watchlists"] if w["name"] == "NIFTY50")
    assert nifty["category"] == "index" and nifty["count"] == 50
    assert nifty["symbols"] == list(get_watchlist("NIFTY50").symbols)
    assert nifty["index_symbol"] == "NSE:NIFTY 50" and nifty["dynamic"] is False
    gainers = next(w for w in body["watchlists"] if w["name"] == "TOP_GAINERS")
    assert gainers["dynamic"] is True and gainers["symbols"] == ["RELIANCE", "INFY"]
    assert body["as_of"] == "2025-10-31"


def test_names_and_categories(client: httpx.Client) -> None:
    assert client.get("/watchlists/names").json() == {
        "count": len(watchlist_names()), "names": watchlist_names()
    }
    body = client.get("/watchlists/categories").json()
    assert body["categories"] == categories() == ["index", "movers", "sectors"]
    assert body["watchlists"]["movers"] == ["TOP_GAINERS", "TOP_LOSERS", "MOST_ACTIVE"]


def test_category_any_case(client: httpx.Client) -> None:
    body = client.get("/watchlists/category/SECTORS").json()
    assert body["category"] == "sectors"
    assert [w["name"] for w in body["watchlists"]] == [w.name for w in by_category("sectors")]


def test_unknown_category_is_404_listing_valid_ones(client: httpx.Client) -> None:
    r = client.get("/watchlists/category/crypto")
    assert r.status_code == 404
    assert r.json()["error"] == "unknown category"
    assert "index, movers, sectors" in r.json()["detail"]


def test_one_watchlist_any_case(client: httpx.Client) -> None:
    body = client.get("/watchlists/banknifty").json()
    assert body["name"] == "BANKNIFTY"
    assert body["symbols"] == list(get_watchlist("BANKNIFTY").symbols)


def test_unknown_watchlist_is_404_listing_names(client: httpx.Client) -> None:
    r = client.get("/watchlists/NIFTY5O")
    assert r.status_code == 404 and r.json()["error"] == "unknown watchlist"
    assert "'NIFTY5O'" in r.json()["detail"] and "NIFTY50" in r.json()["detail"]


def test_top_gainers_from_latest_bars_vs_previous_close(client: httpx.Client) -> None:
    body = client.get("/watchlists/TOP_GAINERS").json()
    assert body["symbols"] == ["RELIANCE", "INFY"]
    assert body["movers"][0] == {
        "symbol": "RELIANCE", "last_price": 105.0, "change_percent": pytest.approx(5.0),
        "volume": 600,
    }
    assert body["universe"] == ["NIFTY50", "NIFTYNEXT50"]
    assert client.get("/watchlists/TOP_GAINERS", params={"limit": 1}).json()["symbols"] == [
        "RELIANCE"
    ]


def test_top_losers_and_most_active(client: httpx.Client) -> None:
    assert client.get("/watchlists/top_losers").json()["symbols"] == ["TCS"]
    # WIPRO's big volume is Monday's (stale); IDEA is outside the universe.
    assert client.get("/watchlists/MOST_ACTIVE").json()["symbols"] == [
        "TCS", "HDFCBANK", "RELIANCE", "INFY"
    ]


def test_movers_limit_out_of_range_is_400(client: httpx.Client) -> None:
    r = client.get("/watchlists/TOP_GAINERS", params={"limit": 0})
    assert r.status_code == 400 and r.json()["error"] == "invalid limit"


@pytest.mark.parametrize("key", ["watchlists", "names"])
def test_merge(client: httpx.Client, key: str) -> None:
    r = client.post("/watchlists/merge", json={key: ["IT", "energy", "IT"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["watchlists"] == ["IT", "ENERGY"]
    assert body["symbols"] == merge_watchlists(["IT", "ENERGY"])
    assert body["count"] == len(body["symbols"])


def test_merge_with_a_movers_list(client: httpx.Client) -> None:
    body = client.post("/watchlists/merge", json={"watchlists": ["TOP_LOSERS", "IT"]}).json()
    assert body["symbols"] == ["TCS", *[s for s in get_watchlist("IT").symbols if s != "TCS"]]


def test_merge_unknown_names_are_404_listing_valid(client: httpx.Client) -> None:
    r = client.post("/watchlists/merge", json={"watchlists": ["IT", "NOPE", "ALSO_NOPE"]})
    assert r.status_code == 404
    assert "'NOPE', 'ALSO_NOPE'" in r.json()["detail"] and "NIFTY50" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, got an array"),
        (b"", "a JSON object body is required"),
        (b'{"watchlists": "IT"}', "watchlists must be a list of strings, got a string"),
        (b'{"watchlists": ["IT", 5]}', "watchlists[1] must be a string, got a number"),
        (b'{"watchlists": []}', "non-empty"),
        (b'{"watchlists": ["IT"], "names": ["IT"]}', "not both"),
        (b'{"lists": ["IT"]}', "unknown field(s) 'lists'"),
        (b'{"watchlists": ["IT"], "limit": "3"}', "limit must be an integer"),
    ],
)
def test_merge_bad_bodies_are_400(client: httpx.Client, body: bytes, fragment: str) -> None:
    r = client.post("/watchlists/merge", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error", "detail"}
    assert fragment in r.json()["detail"]
