"""Property-based test of the REST API against its own served OpenAPI document.

Schemathesis loads ``/openapi.json`` from a real server (``running_api``: the app on a
loopback port, the module's test database seeded with instruments, bars, ticks, an order
book and collectors) and, per operation, sends generated requests: the document's
examples, boundary ("coverage") cases and a few random ("fuzzing") cases, valid and
invalid. Every response must

- not be a 5xx (``not_a_server_error``),
- have a documented status code (``status_code_conformance``) and content type
  (``content_type_conformance``),
- match the documented schema for that status (``response_schema_conformance``).

Path parameters are mostly replaced by names that exist (seeded symbols, watchlists,
categories, collectors), so the happy paths are exercised and not only 404s. The WebSocket
``/stream/ws`` and the dashboard's HTML routes are left out.

Bounded: a fixed seed and few examples per operation (about 20 s on 2 cores).
``MB_SCHEMATHESIS_EXAMPLES`` (fuzzing examples per operation, default 8) and
``MB_SCHEMATHESIS_SEED`` change that for a deeper or different run.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from datetime import date, datetime, time
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import TestPhase
from schemathesis.hooks import HookContext

from api.openapi import openapi_document
from market_bridge.kite.models import IST
from market_bridge.watchlists import categories, watchlist_names

from .test_api_support import (
    ApiServer,
    execute,
    insert_bars,
    insert_instruments,
    make_bars,
    running_api,
    session_minutes,
)

MON, TUE = date(2024, 1, 29), date(2024, 1, 30)  # the fixed clock is Tuesday 12:00:30 IST
EXAMPLES = int(os.environ.get("MB_SCHEMATHESIS_EXAMPLES", "8"))
SEED = int(os.environ.get("MB_SCHEMATHESIS_SEED", "20240130"))

# Path values that exist, so that generated requests reach the data and not only 404s.
SYMBOLS = ["RELIANCE", "NSE:TCS", "tcs", "BSE:SENSEX", "NSE:NIFTY 50", "INFY"]
COLLECTORS = ["primary", "backup"]  # (re)created before every collector request
KNOWN: dict[str, list[str]] = {
    "symbol": SYMBOLS,
    "category": [*categories(), "SECTORS"],
}


def _seed(dsn: str) -> None:
    insert_instruments(
        dsn,
        [("NSE", "RELIANCE", 738561, "EQ"), ("NSE", "TCS", 2953217, "EQ"),
         ("NSE", "INFY", 408065, "EQ"), ("NSE", "NIFTY 50", 256265, "INDEX"),
         ("BSE", "SENSEX", 265, "INDEX")],
    )  # fmt: skip
    insert_bars(dsn, make_bars("RELIANCE", 738561, session_minutes(MON), base=2560, step=0.1))
    insert_bars(dsn, make_bars("RELIANCE", 738561, session_minutes(TUE, last=time(11, 59)),
                               base=2610, step=0.1, provenance="live"))  # fmt: skip
    insert_bars(dsn, make_bars("TCS", 2953217, session_minutes(TUE, last=time(10, 0)),
                               base=3500, step=-0.5))  # fmt: skip
    insert_bars(dsn, make_bars("TCS", 2953217, [datetime.combine(MON, time(9, 15), IST)],
                               base=3400, step=0, timeframe="day"))  # fmt: skip
    insert_bars(dsn, make_bars("SENSEX", 265, session_minutes(TUE, last=time(9, 20)),
                               base=71000, step=1, exchange="BSE"))  # fmt: skip
    execute(
        dsn,
        """INSERT INTO md.tick_data (exchange, symbol, instrument_token, tick_timestamp, price,
               quantity, volume_traded, mode)
           SELECT 'NSE', 'TCS', 2953217, %s::timestamptz + g * interval '1 second',
                  3500 + g, 5, 1000 + 5 * g, 'full'
           FROM generate_series(0, 9) g""",
        (datetime(2024, 1, 30, 11, 0, tzinfo=IST),),
    )
    execute(
        dsn,
        """INSERT INTO md.order_book (exchange, symbol, instrument_token, snapshot_timestamp,
               bid_prices, bid_quantities, bid_orders, ask_prices, ask_quantities, ask_orders,
               total_buy_quantity, total_sell_quantity)
           VALUES ('NSE', 'RELIANCE', 738561, %s, '{2626.3,2626.2,2626.1,2626.0,2625.9}',
                   '{10,20,30,40,50}', '{1,2,3,4,5}', '{2626.5,2626.6,2626.7,2626.8,2626.9}',
                   '{15,25,35,45,55}', '{1,1,1,1,1}', 150, 175),
                  ('NSE', 'TCS', 2953217, %s, '{3500,0,0,0,0}', '{5,0,0,0,0}', '{1,0,0,0,0}',
                   '{0,0,0,0,0}', '{0,0,0,0,0}', '{0,0,0,0,0}', 5, 0)""",
        (datetime(2024, 1, 30, 11, 59, 59, tzinfo=IST), datetime(2024, 1, 30, 11, 0, tzinfo=IST)),
    )


def _ensure_collectors(conn: psycopg.Connection[Any]) -> None:
    """Put the known collectors back (a generated DELETE or bad write may have removed them)."""
    conn.execute(
        """INSERT INTO md.collectors (name, api_key, access_token, symbols, watchlists)
           SELECT n, 'kite-api-key', 'kite-access-token', ARRAY['RELIANCE'], ARRAY['IT']
           FROM unnest(%s::text[]) AS n
           ON CONFLICT (name) DO NOTHING""",
        (COLLECTORS,),
    )
    conn.execute(
        """INSERT INTO md.collector_status (name, state, running, heartbeat_at)
           VALUES ('primary', 'running', true, now())
           ON CONFLICT (name) DO UPDATE SET heartbeat_at = now()"""
    )


@pytest.fixture(scope="module")
def api(module_db_url: str) -> Iterator[ApiServer]:
    _seed(module_db_url)
    with running_api(module_db_url) as server:
        yield server


@pytest.fixture(scope="module")
def db(module_db_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(module_db_url, autocommit=True) as conn:
        yield conn


def _config() -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
            "generation": {
                "mode": "all",  # valid and invalid input
                "max-examples": EXAMPLES,
                "database": "none",  # no .hypothesis/ in the tree; the seed decides
            },
            "checks": {
                "enabled": False,
                "not_a_server_error": {"enabled": True},
                "status_code_conformance": {"enabled": True},
                "content_type_conformance": {"enabled": True},
                "response_schema_conformance": {"enabled": True},
            },
            "phases": {"stateful": {"enabled": False}},
            "operations": [
                {  # 503 is /health's documented answer to ?strict=true while no streaming
                    # process is running (none is, here); any other 5xx still fails.
                    "include-path": "/health",
                    "checks": {
                        "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}
                    },
                },
            ],
            "request-timeout": 20,
        }
    )


# Time ranges around the seeded days (generated from/to strings are almost never dates).
RANGES: list[dict[str, str]] = [
    {"from": "2024-01-30"},
    {"to": "2024-01-29"},
    {"from": "2024-01-29", "to": "2024-01-30"},
    {"from": "2024-01-29T09:15:00+05:30", "to": "2024-01-29T15:29:00+05:30"},
    {"from": "2024-01-30T04:00:00Z"},
    {"from": "2024-01-29T10:00:00", "to": "2024-01-30T10:00:00 05:30"},  # naive IST; '+' as ' '
    {"from": "2023-02-01", "to": "2024-01-30"},
]


def _known_ranges(
    context: HookContext, query: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    """Half the time, a real time range in place of the generated from/to."""
    operation = context.operation
    if operation is None or "from" not in operation.query:
        return st.just(query)
    base = {k: v for k, v in (query or {}).items() if k not in ("from", "to")}
    return st.one_of(st.just(query), st.sampled_from([base | r for r in RANGES]))


def _known_values(path: str, key: str) -> list[str]:
    if key == "name":
        return COLLECTORS if path.startswith("/collectors") else watchlist_names()
    return KNOWN.get(key, [])


def _known_path_values(
    context: HookContext, path_parameters: dict[str, Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """Fuzzing: three times in four, a path value that exists instead of the generated one."""
    if not path_parameters or context.operation is None:
        return st.just(path_parameters)
    path = context.operation.path
    options = [
        path_parameters | {key: value}
        for key in path_parameters
        for value in _known_values(path, key)
    ]
    if not options:
        return st.just(path_parameters)
    return st.one_of(st.just(path_parameters), *[st.sampled_from(options)] * 3)


_rotation = itertools.count()


def _use_known_path_values(case: Case) -> None:
    """Examples and coverage cases (which the hooks do not see): a path value that exists,
    unless the path value is what the case is about."""
    meta = case.meta
    if meta is None or meta.phase.name == TestPhase.FUZZING:
        return
    if meta.phase.data.parameter_location == ParameterLocation.PATH:
        return
    for key in list(case.path_parameters or {}):
        known = _known_values(case.operation.path, key)
        if known:
            assert case.path_parameters is not None
            case.path_parameters[key] = known[next(_rotation) % len(known)]


# The document is the one the server serves (test_served_document_is_the_tested_one): loaded
# here, at collection, so that every operation is a test item of its own.
DOCUMENT = openapi_document()
schema = (
    schemathesis.openapi.from_dict(DOCUMENT, config=_config())
    .exclude(path="/stream/ws")  # a WebSocket upgrade: tested in test_api_stream*.py
    .exclude(path_regex=r"^/(dashboard(/.*)?)?$")  # the dashboard's HTML and helpers
    .exclude(tag="dashboard")
)
schema.hook("flatmap_path_parameters")(_known_path_values)
schema.hook("flatmap_query")(_known_ranges)


def test_served_document_is_the_tested_one(api: ApiServer) -> None:
    with api.client() as client:
        served = client.get("/openapi.json").json()
    assert served == json.loads(json.dumps(DOCUMENT, default=str))


@schema.parametrize()
def test_api_conforms_to_its_openapi_document(
    case: Case, api: ApiServer, db: psycopg.Connection[Any]
) -> None:
    _use_known_path_values(case)
    if case.path.startswith("/collectors"):
        _ensure_collectors(db)
    case.call_and_validate(base_url=api.url)
