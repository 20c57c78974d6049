"""The dashboard blueprint over HTTP (no browser): files, config, the quality grid, the
watchlist snapshot and the gap-fill trigger (fake Prefect, unreachable Prefect, auth)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path

import httpx
import jsonschema
import pytest

from api.dashboard import assets
from api.dashboard.openapi import DASHBOARD_PATHS
from api.openapi import openapi_document
from market_bridge.kite.models import IST

from .conftest import free_port
from .test_api_support import (
    ApiServer,
    insert_bars,
    insert_instruments,
    make_bars,
    running_api,
    session_minutes,
)
from .test_dashboard_support import FakePrefect

TOKEN = "t0ken"
DAY1, DAY2 = date(2024, 1, 29), date(2024, 1, 30)  # the API's clock: 2024-01-30 12:00:30 IST
GAP = datetime(2024, 1, 29, 10, 0, tzinfo=IST)


@pytest.fixture(scope="module")
def api(module_db_url: str) -> Iterator[ApiServer]:
    dsn = module_db_url
    insert_instruments(dsn, [("NSE", "RELIANCE", 738561, "EQ"), ("NSE", "TCS", 2953217, "EQ")])
    insert_bars(dsn, make_bars("RELIANCE", 738561, session_minutes(DAY1), base=2500, step=0.1))
    insert_bars(dsn, make_bars("RELIANCE", 738561, session_minutes(DAY2, last=time(11, 59)),
                               base=2550, step=0.1, provenance="live"))  # fmt: skip
    gap = {GAP + timedelta(minutes=i) for i in range(5)}
    tcs = [ts for ts in session_minutes(DAY1) if ts not in gap]
    tcs.append(datetime(2024, 1, 29, 8, 0, tzinfo=IST))  # outside the session: not counted
    insert_bars(dsn, make_bars("TCS", 2953217, tcs, base=3700, step=0.1))
    with running_api(dsn, api_token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def client(api: ApiServer) -> Iterator[httpx.Client]:
    with api.client() as c:
        yield c


@pytest.fixture
def prefect(api: ApiServer) -> Iterator[FakePrefect]:
    with FakePrefect() as fake:
        api.app.ctx.prefect_api_url = f"{fake.url}/api"
        api.app.ctx.prefect_ui_url = "http://127.0.0.1:4200"
        try:
            yield fake
        finally:
            api.app.ctx.prefect_api_url = None


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def conforms(path: str, method: str, response: httpx.Response) -> None:
    """The answer matches the OpenAPI description in api/dashboard/openapi.py."""
    spec = DASHBOARD_PATHS[path][method]["responses"][str(response.status_code)]
    schema = spec["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator(schema).validate(response.json())


def test_openapi_items_resolve_against_the_main_document() -> None:
    components = openapi_document()["components"]

    def refs(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = list(refs(DASHBOARD_PATHS))
    assert found
    for ref in found:
        section, name = ref.split("/")[-2:]
        assert name in components[section], ref


# ---- page and files ------------------------------------------------------------------------


def test_page_and_files_are_served_and_nothing_else(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/dashboard/static/app.js" in page.text
    assert client.get("/dashboard").headers["location"] == "/"
    js = client.get("/dashboard/static/app.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")  # module scripts need it
    assert js.headers["cache-control"] == "no-cache"
    again = client.get("/dashboard/static/app.js",
                       headers={"If-Modified-Since": js.headers["last-modified"]})  # fmt: skip
    assert again.status_code == 304
    for name in ("..%2Fassets.py", "..%2F..%2Fapp.py", ".hidden.js", "vendor", "nope.js",
                 "index.py", "%2Fetc%2Fpasswd"):  # fmt: skip
        answer = client.get(f"/dashboard/static/{name}")
        assert answer.status_code == 404, name
        assert answer.json()["error"] == "not found"


def test_our_own_assets_stay_small() -> None:
    own = [p for p in assets.STATIC_DIR.iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in own) < 200_000


def test_chart_library_from_local_disk_or_an_install_hint(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if assets.library_path() is None:
        pytest.fail("the chart library is not installed: run `market-bridge setup` "
                    "(or bash market_bridge/setup/install_web.sh)", pytrace=False)  # fmt: skip
    lib = client.get("/dashboard/vendor/lightweight-charts.mjs")
    assert lib.status_code == 200
    assert lib.headers["content-type"].startswith("text/javascript")
    assert "createChart" in lib.text
    config = client.get("/dashboard/config").json()["chart_library"]
    assert config["available"] is True
    assert config["version"] == "5.2.1"  # as package-lock.json pins it
    monkeypatch.setattr(assets, "LIBRARY_CANDIDATES", (tmp_path / "absent.mjs",))
    missing = client.get("/dashboard/vendor/lightweight-charts.mjs")
    assert missing.status_code == 404
    assert "market-bridge setup" in missing.json()["detail"]
    config = client.get("/dashboard/config").json()["chart_library"]
    assert config["available"] is False
    assert "market-bridge setup" in config["install_hint"]


def test_config_follows_the_server_clock(client: httpx.Client) -> None:
    answer = client.get("/dashboard/config")
    conforms("/dashboard/config", "get", answer)
    config = answer.json()
    assert config["now"] == "2024-01-30T12:00:30+05:30"
    assert config["trading_day"] == "2024-01-30"
    assert config["auth_required"] is True
    assert config["timeframes"][0] == "1m"
    assert config["default_symbol"] in ("RELIANCE", "TCS")


# ---- quality and snapshot ------------------------------------------------------------------


def test_quality_grid_counts_trading_minutes_per_symbol_and_day(client: httpx.Client) -> None:
    answer = client.get("/dashboard/quality", params={
        "symbols": "RELIANCE,tcs", "from": "2024-01-25", "to": "2024-01-30"})
    conforms("/dashboard/quality", "get", answer)
    body = answer.json()
    # Friday 2024-01-26 is a holiday, the weekend does not trade: no columns.
    assert body["days"] == ["2024-01-25", "2024-01-29", "2024-01-30"]
    rows = {r["symbol"]: r for r in body["symbols"]}
    assert list(rows) == ["RELIANCE", "TCS"]
    tcs = rows["TCS"]["days"]["2024-01-29"]
    assert (tcs["expected"], tcs["actual"], tcs["missing"]) == (375, 370, 5)  # 08:00 not counted
    assert (tcs["percent"], tcs["quality"]) == (98.7, "good")
    today = rows["RELIANCE"]["days"]["2024-01-30"]
    assert (today["expected"], today["actual"]) == (165, 165)  # closed by 12:00:30
    assert rows["RELIANCE"]["days"]["2024-01-25"]["actual"] == 0
    assert rows["RELIANCE"]["days"]["2024-01-25"]["quality"] == "poor"
    assert rows["TCS"]["total"]["expected"] == 375 * 2 + 165


def test_quality_defaults_and_watchlists(client: httpx.Client) -> None:
    body = client.get("/dashboard/quality", params={"watchlist": "IT", "timeframe": "5m"}).json()
    # The last 5 trading days up to the API's trading day.
    assert body["days"] == ["2024-01-23", "2024-01-24", "2024-01-25", "2024-01-29", "2024-01-30"]
    assert body["timeframe"] == "5m"
    assert "TCS" in [r["symbol"] for r in body["symbols"]]
    assert body["symbols"][0]["days"]["2024-01-29"]["expected"] == 75


@pytest.mark.parametrize(("params", "status", "error"), [
    ({}, 400, "missing symbols"),
    ({"symbols": "RELIANCE", "timeframe": "2m"}, 400, "unknown timeframe"),
    ({"symbols": "RELIANCE", "from": "2024-01-30", "to": "2024-01-29"}, 400, "invalid range"),
    ({"symbols": "RELIANCE", "from": "2023-01-01", "to": "2024-01-29"}, 400, "range too long"),
    ({"symbols": "RELIANCE", "from": "yesterday"}, 400, "invalid date"),
    ({"symbols": "BAD SYMBOL!!"}, 400, "invalid symbol"),
    ({"watchlist": "NOPE"}, 404, "unknown watchlist"),
])  # fmt: skip
def test_quality_rejects_bad_input(
    client: httpx.Client, params: dict[str, str], status: int, error: str
) -> None:
    answer = client.get("/dashboard/quality", params=params)
    assert answer.status_code == status
    assert answer.json()["error"] == error


def test_snapshot_gives_latest_close_change_and_volume(client: httpx.Client) -> None:
    body = client.get("/dashboard/snapshot", params={"symbols": "RELIANCE,TCS,INFY"}).json()
    assert set(body["symbols"]) == {"RELIANCE", "TCS"}  # INFY has no bars
    rel = body["symbols"]["RELIANCE"]
    last_close = round(2550 + 0.1 * 164, 4)
    assert rel["last_price"] == pytest.approx(last_close)
    assert rel["previous_close"] == pytest.approx(round(2500 + 0.1 * 374, 4))
    assert rel["change_percent"] == pytest.approx(
        round((last_close - rel["previous_close"]) * 100 / rel["previous_close"], 4))
    assert rel["volume"] == sum(1000 + i for i in range(165))
    assert client.get("/dashboard/snapshot").status_code == 400


# ---- gap fill ------------------------------------------------------------------------------


GAP_FILL = {"symbols": ["tcs"], "from_date": "2024-01-29", "to_date": "2024-01-29"}


def test_gap_fill_creates_a_flow_run_through_prefect(
    client: httpx.Client, prefect: FakePrefect
) -> None:
    assert client.post("/dashboard/gap-fill", json=GAP_FILL).status_code == 401
    answer = client.post("/dashboard/gap-fill", json=GAP_FILL, headers=AUTH)
    assert answer.status_code == 201, answer.text
    conforms("/dashboard/gap-fill", "post", answer)
    body = answer.json()
    assert body["flow_run_id"] == "run-1"
    assert body["ui_url"] == "http://127.0.0.1:4200/runs/flow-run/run-1"
    assert body["state"] == "SCHEDULED"
    assert prefect.runs == [{"parameters": {
        "timeframe": "1m", "dry_run": False, "symbols": ["TCS"],
        "from_date": "2024-01-29", "to_date": "2024-01-29"}, "tags": ["dashboard"]}]
    watchlist = client.post("/dashboard/gap-fill", json={"watchlist": "it", "dry_run": True},
                            headers=AUTH)  # fmt: skip
    assert watchlist.json()["parameters"] == {"timeframe": "1m", "dry_run": True, "watchlist": "IT"}
    prefect.deployed = False
    missing = client.post("/dashboard/gap-fill", json=GAP_FILL, headers=AUTH)
    assert missing.status_code == 503
    assert "flows serve" in missing.json()["detail"]


def test_gap_fill_is_a_503_with_the_reason_when_prefect_is_down(
    api: ApiServer, client: httpx.Client
) -> None:
    api.app.ctx.prefect_api_url = f"http://127.0.0.1:{free_port()}/api"
    try:
        answer = client.post("/dashboard/gap-fill", json=GAP_FILL, headers=AUTH)
    finally:
        api.app.ctx.prefect_api_url = None
    assert answer.status_code == 503
    body = answer.json()
    assert body["error"] == "prefect unavailable"
    assert "cannot reach the Prefect API" in body["detail"]
    assert answer.headers["retry-after"] == "10"


@pytest.mark.parametrize(("body", "error"), [
    ({}, "invalid body"),
    ({"symbols": ["TCS"], "frm": "2024-01-29"}, "invalid body"),
    ({"symbols": ["TCS"], "from_date": "29/01/2024"}, "invalid body"),
    ({"symbols": ["TCS"], "from_date": "2024-01-30", "to_date": "2024-01-29"}, "invalid range"),
    ({"symbols": ["TCS"], "timeframe": "2m"}, "unknown timeframe"),
    ({"symbols": ["BAD SYMBOL!!"]}, "invalid symbol"),
    ({"symbols": "TCS"}, "invalid body"),
])  # fmt: skip
def test_gap_fill_rejects_bad_bodies(
    client: httpx.Client, body: dict[str, object], error: str
) -> None:
    answer = client.post("/dashboard/gap-fill", json=body, headers=AUTH)
    assert answer.status_code == 400
    assert answer.json()["error"] == error
