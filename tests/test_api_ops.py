"""OpenAPI document and docs page, /health, /metrics, CORS, HTTP-level errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, time
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.openapi import openapi_document
from market_bridge.kite.models import IST

from .test_api_support import (
    ApiServer,
    execute,
    insert_bars,
    insert_instruments,
    make_bars,
    running_api,
    session_minutes,
)

ORIGIN = "http://dash.local"
DOC = openapi_document()


@pytest.fixture(scope="module")
def api(module_db_url: str) -> Iterator[ApiServer]:
    dsn = module_db_url
    insert_instruments(dsn, [("NSE", "RELIANCE", 738561, "EQ")])
    insert_bars(dsn, make_bars("RELIANCE", 738561, session_minutes(date(2024, 1, 29)),
                               base=2500, step=0.1))
    insert_bars(dsn, make_bars("RELIANCE", 738561,
                               session_minutes(date(2024, 1, 30), last=time(11, 59)),
                               base=2540, step=0.1, provenance="live"))
    execute(
        dsn,
        """INSERT INTO md.tick_data (exchange, symbol, instrument_token, tick_timestamp, price,
               quantity) VALUES ('NSE', 'RELIANCE', 738561, %s, 2550.5, 3)""",
        (datetime(2024, 1, 30, 11, 0, tzinfo=IST),),
    )
    execute(
        dsn,
        """INSERT INTO md.order_book (exchange, symbol, instrument_token, snapshot_timestamp,
               bid_prices, bid_quantities, bid_orders, ask_prices, ask_quantities, ask_orders)
           VALUES ('NSE', 'RELIANCE', 738561, %s, '{2550.4}', '{5}', '{1}', '{2550.6}',
                   '{7}', '{2}')""",
        (datetime(2024, 1, 30, 11, 0, tzinfo=IST),),
    )
    execute(dsn, "INSERT INTO md.collectors (name, api_key, access_token) VALUES "
                 "('primary', 'k', 't'), ('secondary', 'k', 't')")
    execute(dsn, "INSERT INTO md.collector_status (name, state, running) "
                 "VALUES ('primary', 'running', true)")
    with running_api(dsn, cors_origins=(ORIGIN,)) as server:
        yield server


@pytest.fixture(scope="module")
def client(api: ApiServer) -> Iterator[httpx.Client]:
    with api.client() as c:
        yield c


@pytest.fixture(scope="module")
def dsn(api: ApiServer) -> str:
    return str(api.app.ctx.dsn)


# ---- OpenAPI ---------------------------------------------------------------------------


def _documented() -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, item in DOC["paths"].items() for m in item}


def test_openapi_documents_exactly_the_routes(api: ApiServer) -> None:
    routes = set()
    for route in api.app.router.routes:
        path = re.sub(r"<(\w+):str>", r"{\1}", "/" + route.path)
        routes |= {(m, path.rstrip("/") or "/") for m in route.methods if m not in ("HEAD", "OPTIONS")}
    assert routes == _documented()


def test_openapi_json_is_served_and_every_ref_resolves(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0"

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(doc):
        section, name = ref.split("/")[-2:]
        assert name in doc["components"][section], ref
    for schema in doc["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def _validate(path: str, response: httpx.Response, method: str = "get") -> None:
    responses = DOC["paths"][path][method]["responses"]
    spec = responses[str(response.status_code)]
    if "$ref" in spec:
        spec = DOC["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
    schema = spec["content"]["application/json"]["schema"]
    root = schema | {"components": DOC["components"]}
    jsonschema.Draft202012Validator(root).validate(response.json())


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("/intraday/bars/RELIANCE?limit=3", "/intraday/bars/{symbol}"),
        ("/intraday/latest/RELIANCE", "/intraday/latest/{symbol}"),
        ("/intraday/today/RELIANCE", "/intraday/today/{symbol}"),
        ("/intraday/stats/RELIANCE", "/intraday/stats/{symbol}"),
        ("/intraday/stats/RELIANCE?from=2024-01-01&to=2024-01-02", "/intraday/stats/{symbol}"),
        ("/intraday/vwap/RELIANCE", "/intraday/vwap/{symbol}"),
        ("/intraday/ticks/RELIANCE", "/intraday/ticks/{symbol}"),
        ("/intraday/orderbook/RELIANCE", "/intraday/orderbook/{symbol}"),
        ("/intraday/gaps/RELIANCE?from=2024-01-29", "/intraday/gaps/{symbol}"),
        ("/intraday/completeness/RELIANCE", "/intraday/completeness/{symbol}"),
        ("/intraday/bars/NOPE", "/intraday/bars/{symbol}"),
        ("/intraday/bars/RELIANCE?timeframe=2m", "/intraday/bars/{symbol}"),
        ("/watchlists", "/watchlists"),
        ("/watchlists/names", "/watchlists/names"),
        ("/watchlists/categories", "/watchlists/categories"),
        ("/watchlists/category/movers", "/watchlists/category/{category}"),
        ("/watchlists/TOP_GAINERS", "/watchlists/{name}"),
        ("/watchlists/IT", "/watchlists/{name}"),
        ("/collectors", "/collectors"),
        ("/collectors/metrics", "/collectors/metrics"),
        ("/collectors/primary", "/collectors/{name}"),
        ("/collectors/secondary", "/collectors/{name}"),
        ("/health", "/health"),
    ],
)
def test_responses_match_the_documented_schemas(client: httpx.Client, url: str, path: str) -> None:
    response = client.get(url)
    assert response.status_code in (200, 400, 404), response.text
    _validate(path, response)


def test_write_responses_match_the_documented_schemas(client: httpx.Client) -> None:
    created = client.post("/collectors", json={"name": "doc", "api_key": "k",
                                                "access_token": "t", "symbols": ["RELIANCE"]})
    _validate("/collectors", created, "post")
    _validate("/collectors/{name}/subscribe",
              client.post("/collectors/doc/subscribe", json={"watchlist": "IT"}), "post")
    _validate("/collectors/{name}/unsubscribe",
              client.post("/collectors/doc/unsubscribe", json={"symbols": ["TCS"]}), "post")
    _validate("/collectors/{name}/start", client.post("/collectors/doc/start"), "post")
    _validate("/watchlists/merge",
              client.post("/watchlists/merge", json={"watchlists": ["IT"]}), "post")
    _validate("/collectors/{name}", client.delete("/collectors/doc"), "delete")


def test_docs_page_is_self_contained_and_lists_every_operation(client: httpx.Client) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for path in DOC["paths"]:
        assert f"<code>{path}</code>" in page
    assert "<script" not in page and 'src="http' not in page and "href='http" not in page
    assert 'id="schema-Bar"' in page


# ---- health ----------------------------------------------------------------------------


def test_health_reports_streaming_freshness(client: httpx.Client, dsn: str) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "degraded"
    assert r.json()["components"]["database"] == {"status": "ok"}
    assert r.json()["components"]["streaming"]["status"] == "absent"
    assert client.get("/health", params={"strict": "true"}).status_code == 503
    execute(dsn, "INSERT INTO md.streaming_processes (process_id, host, pid) "
                 "VALUES ('h:1:1', 'h', 1)")
    try:
        body = client.get("/health").json()
        assert body["status"] == "ok"
        assert body["components"]["streaming"]["processes"][0]["fresh"] is True
        execute(dsn, "UPDATE md.streaming_processes SET heartbeat_at = now() - interval '1 min'")
        body = client.get("/health").json()
        assert (body["status"], body["components"]["streaming"]["status"]) == ("degraded", "stale")
    finally:
        execute(dsn, "DELETE FROM md.streaming_processes")


# ---- metrics ---------------------------------------------------------------------------


def _sample(text: str, prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {prefix} in\n{text}")


def test_metrics_count_requests_per_route_and_status(client: httpx.Client) -> None:
    for _ in range(3):
        client.get("/intraday/latest/RELIANCE")
    client.get("/intraday/latest/NOPE")
    text = client.get("/metrics").text
    route = 'route="/intraday/latest/<symbol:str>"'
    assert _sample(text, f'mb_http_requests_total{{{route},method="GET",status="200"}}') >= 3
    assert _sample(text, f'mb_http_requests_total{{{route},method="GET",status="404"}}') >= 1
    count = _sample(text, f'mb_http_request_duration_seconds_count{{{route},method="GET"}}')
    inf = _sample(text, f'mb_http_request_duration_seconds_bucket{{{route},method="GET",le="+Inf"}}')
    assert count == inf >= 4
    assert "# TYPE mb_http_request_duration_seconds histogram" in text
    assert _sample(text, "mb_db_pool_size") >= 1
    client.get("/no/such/route")
    assert 'route="<unmatched>"' in client.get("/metrics").text


def test_metrics_content_type(client: httpx.Client) -> None:
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")


# ---- CORS ------------------------------------------------------------------------------


def test_cors_for_an_allowed_origin(client: httpx.Client) -> None:
    r = client.get("/watchlists/names", headers={"Origin": ORIGIN})
    assert r.headers["access-control-allow-origin"] == ORIGIN
    pre = client.options(
        "/collectors/primary/start",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization"},
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "Authorization" in pre.headers["access-control-allow-headers"]


def test_cors_refuses_other_origins(client: httpx.Client) -> None:
    r = client.get("/watchlists/names", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = client.options("/watchlists/names", headers={"Origin": "http://evil.example",
                                                       "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 403


# ---- HTTP-level errors -------------------------------------------------------------------


def test_unknown_route_and_wrong_method_are_json(client: httpx.Client) -> None:
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["error"] == "not found"
    r = client.put("/watchlists/names")
    assert r.status_code == 405 and r.json()["error"] == "method not allowed"


def test_oversize_body_is_413_json(client: httpx.Client) -> None:
    big = b'{"watchlists": ["' + b"A" * (2 * 1024 * 1024) + b'"]}'
    r = client.post("/watchlists/merge", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {"error": "request body too large",
                        "detail": "the request body exceeds the limit of 1048576 bytes"}


def test_unexpected_errors_are_500_json_without_internals(client: httpx.Client, dsn: str) -> None:
    execute(dsn, "ALTER TABLE md.order_book RENAME TO order_book_moved")
    try:
        r = client.get("/intraday/orderbook/RELIANCE")
    finally:
        execute(dsn, "ALTER TABLE md.order_book_moved RENAME TO order_book")
    assert r.status_code == 500
    body = r.json()
    assert body["error"] == "internal error" and "request id" in body["detail"]
    assert "order_book" not in r.text and "Traceback" not in r.text
    assert client.get("/intraday/orderbook/RELIANCE").status_code == 200


# ---- bad input never makes a 500 --------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=40)
_param_values = st.one_of(
    _text,
    st.sampled_from(["2024-01-30", "2024-01-30T09:15:00+05:30", "2024-01-30T09:15:00Z",
                     "9999-12-31", "0001-01-01", "2024-02-30", "1m", "day", "-1", "0",
                     "10001", "1e3", "１２", "nan", "parquet", "csv"]),
    st.integers(-(10**20), 10**20).map(str),
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=10,
)
_ENDPOINTS = ["bars", "latest", "today", "stats", "vwap", "ticks", "orderbook", "gaps",
              "completeness"]


def _assert_clean_error(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.request.url, r.status_code, r.text)
    if r.status_code >= 400:
        assert set(r.json()) == {"error", "detail"}


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    endpoint=st.sampled_from(_ENDPOINTS),
    symbol=st.one_of(_text, st.just("RELIANCE")),
    params=st.dictionaries(
        st.sampled_from(["from", "to", "timeframe", "limit", "format", "strict"]),
        _param_values, max_size=4,
    ),
)
def test_fuzzed_intraday_queries_never_500(
    client: httpx.Client, endpoint: str, symbol: str, params: dict[str, str]
) -> None:
    path = f"/intraday/{endpoint}/{quote(symbol, safe='')}" if symbol else f"/intraday/{endpoint}/x"
    _assert_clean_error(client.get(path, params=params))


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.sampled_from(["/collectors", "/collectors/primary/subscribe",
                          "/collectors/primary/unsubscribe", "/collectors/primary/mode",
                          "/watchlists/merge"]),
    body=_json,
)
def test_fuzzed_bodies_never_500(client: httpx.Client, path: str, body: object) -> None:
    _assert_clean_error(client.post(path, json=body))
    assert client.put("/collectors/primary/credentials", json=body).status_code < 500
