"""The OpenAPI 3.1 document, written by hand (no sanic-ext), served at /openapi.json.

Schemas use JSON Schema 2020-12 (OpenAPI 3.1): nullable fields are ``["number", "null"]``.
A test checks that every route the app registers is documented here and vice versa.
"""

from __future__ import annotations

from typing import Any

from api.dashboard.openapi import DASHBOARD_PATHS
from api.dashboard.openapi import TAG_INFO as DASHBOARD_TAG
from api.formats import MEDIA_TYPES
from api.params import DEFAULT_LIMIT, MAX_LIMIT
from market_bridge.kite.models import MODES
from market_bridge.market.timeframes import TIMEFRAMES

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(type_: str, **extra: Any) -> Schema:
    return {"type": [type_, "null"], **extra}


def obj(properties: dict[str, Schema], required: list[str] | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, **extra}
    schema["required"] = list(properties) if required is None else required
    return schema


TIMESTAMP: Schema = {
    "type": "string",
    "format": "date-time",
    "description": "RFC 3339, always with an explicit offset (+05:30)",
    "examples": ["2024-01-30T09:15:00+05:30"],
}
NULL_TIMESTAMP: Schema = nullable("string", format="date-time")
NUMBER: Schema = {"type": "number"}
INTEGER: Schema = {"type": "integer"}
STRING: Schema = {"type": "string"}
STRINGS: Schema = {"type": "array", "items": STRING}
HEAD: dict[str, Schema] = {
    "symbol": {"type": "string", "description": "tradingsymbol", "examples": ["RELIANCE"]},
    "exchange": {"type": "string", "examples": ["NSE"]},
}
HEAD_TF: dict[str, Schema] = HEAD | {"timeframe": {"type": "string", "enum": list(TIMEFRAMES)}}
RANGE: dict[str, Schema] = {
    "from": NULL_TIMESTAMP | {"description": "inclusive lower bound; null = unbounded"},
    "to": NULL_TIMESTAMP | {"description": "inclusive upper bound; null = unbounded"},
}

SCHEMAS: dict[str, Schema] = {
    "Error": obj(
        {
            "error": {"type": "string", "description": "short, stable error name"},
            "detail": {"description": "human-readable detail: what was wrong and what to do"},
        },
        examples=[{"error": "unknown timeframe", "detail": "timeframe='2m'; valid timeframes: "
                   "1m, 3m, 5m, 10m, 15m, 30m, 1h, day"}],
    ),
    "Bar": obj(
        {
            "timestamp": TIMESTAMP | {"description": "bar start (label), IST"},
            "open": NUMBER,
            "high": NUMBER,
            "low": NUMBER,
            "close": NUMBER,
            "volume": INTEGER,
            "trades_count": nullable("integer"),
            "vwap": nullable("number"),
            "oi": nullable("integer", description="open interest (F&O)"),
            "provenance": {
                "type": "string",
                "enum": ["live", "historical"],
                "description": "live = aggregated from ticks; historical = Kite's official "
                "candles (replace live ones for closed periods)",
            },
            "revision": {"type": "integer", "description": "late-tick amendments of the bar"},
        }
    ),
    "BarsResponse": obj(
        HEAD_TF | RANGE | {
            "limit": INTEGER,
            "count": INTEGER,
            "bars": {"type": "array", "items": ref("Bar")},
        }
    ),
    "TodayResponse": obj(
        HEAD_TF | {"date": {"type": "string", "format": "date"}} | RANGE | {
            "count": INTEGER,
            "bars": {"type": "array", "items": ref("Bar")},
        }
    ),
    "LatestResponse": obj(HEAD_TF | {"bar": ref("Bar")}),
    "StatsResponse": obj(
        HEAD_TF | RANGE | {
            "date": {"type": "string", "format": "date",
                     "description": "the trading day, when the range was defaulted"},
            "bar_count": INTEGER,
            "open": nullable("number"),
            "high": nullable("number"),
            "low": nullable("number"),
            "close": nullable("number"),
            "volume": INTEGER,
            "vwap": nullable("number", description="volume-weighted over the range"),
            "previous_close": nullable(
                "number",
                description="close of the last bar before IST midnight of the range's first day",
            ),
            "change": nullable("number", description="close - previous_close"),
            "change_percent": nullable("number"),
            "first_bar_at": NULL_TIMESTAMP,
            "last_bar_at": NULL_TIMESTAMP,
        },
        required=["symbol", "exchange", "timeframe", "from", "to", "bar_count", "open", "high",
                  "low", "close", "volume", "vwap", "previous_close", "change",
                  "change_percent", "first_bar_at", "last_bar_at"],
    ),
    "VwapPoint": obj(
        {
            "timestamp": TIMESTAMP,
            "vwap": nullable("number", description="cumulative since IST midnight"),
            "close": NUMBER,
            "volume": INTEGER,
            "cumulative_volume": INTEGER,
        }
    ),
    "VwapResponse": obj(
        HEAD_TF | RANGE | {
            "date": {"type": "string", "format": "date"},
            "vwap": nullable("number", description="the latest cumulative VWAP"),
            "as_of": NULL_TIMESTAMP,
            "count": INTEGER,
            "series": {"type": "array", "items": ref("VwapPoint")},
        },
        required=["symbol", "exchange", "timeframe", "from", "to", "vwap", "as_of", "count",
                  "series"],
    ),
    "Tick": obj(
        {
            "timestamp": TIMESTAMP,
            "price": NUMBER,
            "quantity": INTEGER,
            "trade_type": nullable("string"),
            "volume_traded": nullable("integer", description="cumulative day volume (Kite)"),
            "volume_delta": nullable("integer"),
            "average_price": nullable("number"),
            "total_buy_quantity": nullable("integer"),
            "total_sell_quantity": nullable("integer"),
            "bid_price": nullable("number"),
            "bid_quantity": nullable("integer"),
            "ask_price": nullable("number"),
            "ask_quantity": nullable("integer"),
            "oi": nullable("integer"),
            "last_trade_time": NULL_TIMESTAMP,
            "received_at": NULL_TIMESTAMP,
            "mode": nullable("string"),
        }
    ),
    "TicksResponse": obj(
        HEAD | RANGE | {
            "limit": INTEGER,
            "count": INTEGER,
            "ticks": {"type": "array", "items": ref("Tick")},
        }
    ),
    "DepthLevel": obj({"price": NUMBER, "quantity": INTEGER, "orders": INTEGER}),
    "OrderBookResponse": obj(
        HEAD | {
            "timestamp": TIMESTAMP,
            "bids": {"type": "array", "items": ref("DepthLevel"), "description": "best first"},
            "asks": {"type": "array", "items": ref("DepthLevel"), "description": "best first"},
            "total_buy_quantity": nullable("integer"),
            "total_sell_quantity": nullable("integer"),
            "best_bid": nullable("number"),
            "best_ask": nullable("number"),
            "spread": nullable("number"),
            "mid": nullable("number"),
        }
    ),
    "Gap": obj(
        {
            "start": TIMESTAMP | {"description": "first missing bar's label"},
            "end": TIMESTAMP | {"description": "exclusive end of the last missing bar"},
            "missing_bars": INTEGER,
        }
    ),
    "QualityHead": obj(
        HEAD_TF | RANGE | {
            "calendar_known_until": {"type": "string", "format": "date"},
            "beyond_known_holidays": {
                "type": "boolean",
                "description": "the range ends after the last year the holiday calendar "
                "knows; weekdays there are assumed to trade",
            },
        }
    ),
    "GapsResponse": {
        "allOf": [
            ref("QualityHead"),
            obj(
                {
                    "expected_bars": INTEGER,
                    "actual_bars": INTEGER,
                    "missing_bars": INTEGER,
                    "gap_count": INTEGER,
                    "gaps": {"type": "array", "items": ref("Gap")},
                }
            ),
        ]
    },
    "CompletenessResponse": {
        "allOf": [
            ref("QualityHead"),
            obj(
                {
                    "completeness": {"type": "number", "minimum": 0, "maximum": 100,
                                     "examples": [99.7]},
                    "quality": {
                        "type": "string",
                        "enum": ["excellent", "good", "fair", "poor", "no_session"],
                        "description": "excellent >= 99.0, good >= 95.0, fair >= 80.0, else "
                        "poor; no_session when no bar was due",
                    },
                    "expected": INTEGER,
                    "actual": INTEGER,
                    "missing": INTEGER,
                    "quality_thresholds": {"type": "object",
                                           "additionalProperties": {"type": "number"}},
                }
            ),
        ]
    },
    "Mover": obj(
        {
            "symbol": STRING,
            "last_price": NUMBER,
            "change_percent": nullable("number"),
            "volume": nullable("integer"),
        }
    ),
    "Watchlist": obj(
        {
            "name": STRING,
            "category": STRING,
            "description": STRING,
            "dynamic": {"type": "boolean"},
            "index_symbol": nullable("string"),
            "symbols": STRINGS | {"description": "NSE symbols bare, others EXCHANGE:SYMBOL"},
            "count": INTEGER,
            "universe": STRINGS | {"description": "dynamic lists: candidate watchlists"},
            "universe_size": nullable("integer"),
            "movers": {"type": "array", "items": ref("Mover")},
            "reason": nullable("string", description="why a dynamic list is empty"),
        },
        required=["name", "category", "description", "dynamic", "index_symbol", "symbols",
                  "count"],
    ),
    "WatchlistsResponse": obj(
        {
            "as_of": {"type": "string", "format": "date"},
            "source": STRING,
            "count": INTEGER,
            "watchlists": {"type": "array", "items": ref("Watchlist")},
        }
    ),
    "NamesResponse": obj({"count": INTEGER, "names": STRINGS}),
    "CategoriesResponse": obj(
        {
            "count": INTEGER,
            "categories": STRINGS,
            "watchlists": {"type": "object", "additionalProperties": STRINGS},
        }
    ),
    "CategoryResponse": obj(
        {
            "category": STRING,
            "count": INTEGER,
            "watchlists": {"type": "array", "items": ref("Watchlist")},
        }
    ),
    "MergeRequest": {
        "type": "object",
        "properties": {
            "watchlists": STRINGS | {"minItems": 1},
            "names": STRINGS | {"minItems": 1, "description": "alias of watchlists"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100,
                      "description": "members per movers list (default 10)"},
        },
        "additionalProperties": False,
        "oneOf": [{"required": ["watchlists"]}, {"required": ["names"]}],  # one, not both
        "examples": [{"watchlists": ["IT", "PHARMA"]}],
    },
    "MergeResponse": obj({"watchlists": STRINGS, "count": INTEGER, "symbols": STRINGS}),
    "CollectorCreate": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
            "api_key": {"type": "string", "minLength": 1},
            "access_token": {"type": "string", "minLength": 1, "writeOnly": True},
            "mode": {"type": "string", "enum": list(MODES), "default": "quote"},
            "symbols": STRINGS,
            "watchlists": STRINGS,
            "auto_start": {"type": "boolean", "default": False,
                           "description": "true: desired state 'running' right away"},
        },
        "required": ["name", "api_key", "access_token"],
        "additionalProperties": False,
    },
    "CollectorMetrics": obj(
        {
            "running": {"type": "boolean"},
            "subscribed_tokens": INTEGER,
            "ticks_received": INTEGER,
            "bars_created": INTEGER,
            "errors": INTEGER,
            "reconnects": INTEGER,
            "state": {"type": "string",
                      "description": "reported state, or unknown (no status) / stale "
                      "(heartbeat older than 5 s)"},
            "desired_state": {"type": "string", "enum": ["running", "stopped"]},
            "last_tick_at": NULL_TIMESTAMP,
            "lag_ms": nullable("number"),
            "heartbeat_at": NULL_TIMESTAMP,
        }
    ),
    "CollectorStatus": {
        "allOf": [
            ref("CollectorMetrics"),
            obj(
                {
                    "heartbeat_age_seconds": nullable("number"),
                    "owner": nullable("string"),
                    "applied_generation": nullable("integer"),
                    "in_sync": {"type": "boolean"},
                    "last_error": nullable("string"),
                    "metrics": {"type": "object"},
                }
            ),
        ]
    },
    "Collector": obj(
        {
            "name": STRING,
            "mode": {"type": "string", "enum": list(MODES)},
            "symbols": STRINGS,
            "watchlists": STRINGS,
            "desired_state": {"type": "string", "enum": ["running", "stopped"]},
            "auto_start": {"type": "boolean"},
            "origin": {"type": "string", "enum": ["api", "config"]},
            "generation": INTEGER,
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "api_key": nullable("string", description="masked, e.g. ab****yz"),
            "access_token": nullable("string", description="never returned: **** when set"),
            "status": ref("CollectorStatus"),
            "changed": {"type": "boolean", "description": "write endpoints only"},
        },
        required=["name", "mode", "symbols", "watchlists", "desired_state", "auto_start",
                  "origin", "generation", "created_at", "updated_at", "api_key",
                  "access_token", "status"],
    ),
    "CollectorsResponse": obj(
        {"count": INTEGER, "collectors": {"type": "array", "items": ref("Collector")}}
    ),
    "CollectorMetricsMap": {
        "type": "object",
        "additionalProperties": ref("CollectorMetrics"),
        "examples": [{"primary": {"running": True, "subscribed_tokens": 50,
                                  "ticks_received": 125430, "bars_created": 2150,
                                  "errors": 0}}],
    },
    "Subscription": {
        "type": "object",
        "description": 'any of {"symbols": [...]}, {"watchlist": "..."}, {"watchlists": [...]}',
        "properties": {"symbols": STRINGS, "watchlist": {"type": "string", "minLength": 1},
                       "watchlists": STRINGS},
        "anyOf": [  # at least one symbol or watchlist
            {"required": ["symbols"], "properties": {"symbols": {"minItems": 1}}},
            {"required": ["watchlist"]},
            {"required": ["watchlists"], "properties": {"watchlists": {"minItems": 1}}},
        ],
        "additionalProperties": False,
        "examples": [{"symbols": ["RELIANCE", "TCS"]}, {"watchlist": "NIFTY50"},
                     {"watchlists": ["IT", "PHARMA"]}],
    },
    "SubscriptionLists": obj({"symbols": STRINGS, "watchlists": STRINGS}),
    "SubscribeResponse": {
        "allOf": [ref("Collector"), obj({"added": ref("SubscriptionLists")})]
    },
    "UnsubscribeResponse": {
        "allOf": [
            ref("Collector"),
            obj(
                {
                    "removed": ref("SubscriptionLists"),
                    "not_subscribed": ref("SubscriptionLists"),
                    "still_subscribed_via": {
                        "type": "object",
                        "additionalProperties": STRINGS,
                        "description": "symbols still subscribed through a watchlist",
                    },
                }
            ),
        ]
    },
    "Credentials": {
        "type": "object",
        "properties": {"api_key": {"type": "string", "minLength": 1},
                       "access_token": {"type": "string", "minLength": 1, "writeOnly": True}},
        "minProperties": 1,
        "additionalProperties": False,
    },
    "ModeRequest": obj({"mode": {"type": "string", "enum": list(MODES)}},
                       additionalProperties=False),
    "Deleted": obj({"deleted": nullable("string")}),
    "Health": obj(
        {
            "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"]},
            "components": obj(
                {
                    "database": obj({"status": {"type": "string", "enum": ["ok", "down"]},
                                     "detail": STRING}, required=["status"]),
                    "streaming": obj(
                        {
                            "status": {"type": "string",
                                       "enum": ["ok", "stale", "absent", "unknown"]},
                            "processes": {"type": "array", "items": {"type": "object"}},
                        }
                    ),
                }
            ),
        }
    ),
}


# ---- parameters and responses --------------------------------------------------------

PARAMETERS: dict[str, Schema] = {
    "symbol": {
        "name": "symbol", "in": "path", "required": True,
        "description": "RELIANCE (= NSE:RELIANCE) or EXCHANGE:TRADINGSYMBOL, URL-encoded "
        "(NSE:NIFTY%2050). Must be a known instrument or have stored data, else 404.",
        "schema": STRING,
    },
    "timeframe": {
        "name": "timeframe", "in": "query", "description": "bar timeframe",
        "schema": {"type": "string", "enum": list(TIMEFRAMES), "default": "1m"},
    },
    "from": {
        "name": "from", "in": "query",
        "description": "inclusive start: RFC 3339 with offset, or a date (IST midnight)",
        "schema": {"type": "string", "examples": ["2024-01-30T09:15:00+05:30", "2024-01-30"]},
    },
    "to": {
        "name": "to", "in": "query",
        "description": "inclusive end: RFC 3339 with offset, or a date (through its end, IST)",
        "schema": {"type": "string", "examples": ["2024-01-30T15:30:00+05:30", "2024-01-30"]},
    },
    "limit": {
        "name": "limit", "in": "query", "description": "most recent N rows of the range",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                   "default": DEFAULT_LIMIT},
    },
    "format": {
        "name": "format", "in": "query",
        "description": "response format; overrides the Accept header",
        "schema": {"type": "string", "enum": list(MEDIA_TYPES), "default": "json"},
    },
    "moversLimit": {
        "name": "limit", "in": "query", "description": "members per movers list",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
    },
    "name": {"name": "name", "in": "path", "required": True, "schema": STRING},
    "category": {"name": "category", "in": "path", "required": True, "schema": STRING},
    "strict": {
        "name": "strict", "in": "query",
        "description": "503 unless every component is ok",
        "schema": {"type": "boolean", "default": False},
    },
}


def p(name: str) -> Schema:
    return {"$ref": f"#/components/parameters/{name}"}


def _error(description: str) -> Schema:
    return {"description": description,
            "content": {"application/json": {"schema": ref("Error")}}}


RESPONSES: dict[str, Schema] = {
    "BadRequest": _error("bad input: date, range, timeframe, limit, body"),
    "Unauthorized": _error("API_TOKEN is set and the bearer token is missing or wrong"),
    "NotFound": _error("unknown symbol, watchlist, category or collector (named in detail)"),
    "Conflict": _error("a collector of that name exists"),
    "TooLarge": _error("request body over 1 MiB"),
    "Unavailable": _error("database unavailable (detail gives the reason)"),
}


def r(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


def ok(schema: str, description: str = "OK", status: str = "200") -> dict[str, Schema]:
    return {status: {"description": description,
                     "content": {"application/json": {"schema": ref(schema)}}}}


READ_ERRORS = {"400": r("BadRequest"), "404": r("NotFound"), "503": r("Unavailable")}
WRITE_ERRORS = READ_ERRORS | {"401": r("Unauthorized"), "413": r("TooLarge")}


def get(summary: str, description: str, params: list[str], responses: dict[str, Schema],
        tag: str) -> Schema:
    return {"get": {"tags": [tag], "summary": summary, "description": description,
                    "parameters": [p(x) for x in params], "responses": responses}}


def post(summary: str, description: str, params: list[str], body: str | None,
         responses: dict[str, Schema], tag: str, method: str = "post",
         secure: bool = True) -> Schema:
    op: Schema = {"tags": [tag], "summary": summary, "description": description,
                  "parameters": [p(x) for x in params], "responses": responses}
    if secure:  # only enforced when API_TOKEN is set
        op["security"] = [{"bearer": []}, {}]
    if body:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": ref(body)}}}
    return {method: op}


def _bars_content(schema: str = "BarsResponse") -> Schema:
    content: Schema = {"application/json": {"schema": ref(schema)}}
    described = {
        "csv": "header row, timestamps as RFC 3339 with +05:30",
        "parquet": "typed columns (timestamp[us, tz=Asia/Kolkata]); symbol, exchange and "
        "timeframe in the schema metadata",
        "arrow": "Arrow IPC stream, same schema as Parquet",
    }
    for fmt, text in described.items():
        content[MEDIA_TYPES[fmt]] = {"schema": {"type": "string", "format": "binary"},
                                     "x-description": text}
    return content


T_INTRADAY = "intraday"
T_WATCH = "watchlists"
T_COLL = "collectors"
T_OPS = "operations"

PATHS: dict[str, Schema] = {
    "/intraday/bars/{symbol}": get(
        "Bars in a range",
        "The most recent `limit` bars whose label (bar start) is in [from, to], oldest "
        "first. Without from/to: the most recent `limit` bars. Formats: JSON (default), "
        "CSV, Parquet, Arrow IPC via `format=` or Accept.",
        ["symbol", "timeframe", "from", "to", "limit", "format"],
        {"200": {"description": "bars", "content": _bars_content()}} | READ_ERRORS, T_INTRADAY,
    ),
    "/intraday/latest/{symbol}": get(
        "Newest bar", "The newest stored bar; 404 `no data` when the symbol has none.",
        ["symbol", "timeframe"], ok("LatestResponse") | READ_ERRORS, T_INTRADAY,
    ),
    "/intraday/today/{symbol}": get(
        "Bars of the current trading day",
        "Bars of the current IST trading day: today, or the last trading day on a "
        "weekend/holiday. Same formats as /bars.",
        ["symbol", "timeframe", "limit", "format"],
        {"200": {"description": "bars", "content": _bars_content("TodayResponse")}} | READ_ERRORS,
        T_INTRADAY,
    ),
    "/intraday/stats/{symbol}": get(
        "OHLCV statistics",
        "OHLC, volume, VWAP, bar count and change vs the previous close over the range "
        "(default: the current trading day).",
        ["symbol", "timeframe", "from", "to"], ok("StatsResponse") | READ_ERRORS, T_INTRADAY,
    ),
    "/intraday/vwap/{symbol}": get(
        "Cumulative intraday VWAP",
        "Per bar: cumulative sum(bar VWAP, else typical price, x volume) / cumulative volume, "
        "reset at each IST midnight; `vwap` is the latest value. Default range: the current "
        "trading day.",
        ["symbol", "timeframe", "from", "to", "limit"], ok("VwapResponse") | READ_ERRORS, T_INTRADAY,
    ),
    "/intraday/ticks/{symbol}": get(
        "Raw ticks", "The most recent `limit` ticks in [from, to], oldest first.",
        ["symbol", "from", "to", "limit"], ok("TicksResponse") | READ_ERRORS, T_INTRADAY,
    ),
    "/intraday/orderbook/{symbol}": get(
        "Latest order book", "The latest L2 depth snapshot (5 levels a side).",
        ["symbol"], ok("OrderBookResponse") | READ_ERRORS, T_INTRADAY,
    ),
    "/intraday/gaps/{symbol}": get(
        "Missing bars",
        "Runs of missing bars, counting only NSE trading minutes (holidays and weekends are "
        "never gaps) and only bars closed by now. Default range: the current trading day; "
        "at most 366 days for intraday timeframes.",
        ["symbol", "timeframe", "from", "to"], ok("GapsResponse") | READ_ERRORS, T_INTRADAY,
    ),
    "/intraday/completeness/{symbol}": get(
        "Completeness and quality label",
        "Share of expected bars present (NSE trading minutes only) and its quality label.",
        ["symbol", "timeframe", "from", "to"], ok("CompletenessResponse") | READ_ERRORS, T_INTRADAY,
    ),
    "/watchlists": get(
        "All watchlists", "Every predefined watchlist; movers lists computed from the latest "
        "stored bars.", ["moversLimit"], ok("WatchlistsResponse") | {"400": r("BadRequest")}, T_WATCH,
    ),
    "/watchlists/names": get(
        "Watchlist names", "", [], ok("NamesResponse"), T_WATCH,
    ),
    "/watchlists/categories": get(
        "Watchlist categories", "", [], ok("CategoriesResponse"), T_WATCH,
    ),
    "/watchlists/category/{category}": get(
        "Watchlists of a category", "", ["category", "moversLimit"],
        ok("CategoryResponse") | {"400": r("BadRequest"), "404": r("NotFound")}, T_WATCH,
    ),
    "/watchlists/{name}": get(
        "One watchlist",
        "A watchlist by name (any case). TOP_GAINERS, TOP_LOSERS and MOST_ACTIVE are computed "
        "from the latest stored 1m bars vs the previous IST day's close.",
        ["name", "moversLimit"], ok("Watchlist") | READ_ERRORS, T_WATCH,
    ),
    "/watchlists/merge": post(
        "Merge watchlists",
        "Symbols of several watchlists, first appearance order, no duplicates. Changes "
        "nothing, so no bearer token is needed.",
        [], "MergeRequest", ok("MergeResponse") | READ_ERRORS | {"413": r("TooLarge")}, T_WATCH,
        secure=False,
    ),
    "/collectors": {
        **get("List collectors", "", [], ok("CollectorsResponse") | {"503": r("Unavailable")},
              T_COLL),
        **post("Create a collector",
               "Stores desired state (credentials are never returned) and notifies streaming.",
               [], "CollectorCreate",
               ok("Collector", "created", "201") | WRITE_ERRORS | {"409": r("Conflict")}, T_COLL),
    },
    "/collectors/metrics": get(
        "Metrics of all collectors", "Keyed by collector name (the seed's shape).", [],
        ok("CollectorMetricsMap") | {"503": r("Unavailable")}, T_COLL,
    ),
    "/collectors/{name}": {
        **get("One collector with status", "", ["name"], ok("Collector") | READ_ERRORS, T_COLL),
        **post("Delete a collector", "", ["name"], None, ok("Deleted") | WRITE_ERRORS, T_COLL,
               method="delete"),
    },
    "/collectors/{name}/start": post(
        "Start collecting", "Sets desired state to running.", ["name"], None,
        ok("Collector") | WRITE_ERRORS, T_COLL,
    ),
    "/collectors/{name}/stop": post(
        "Stop collecting", "Sets desired state to stopped.", ["name"], None,
        ok("Collector") | WRITE_ERRORS, T_COLL,
    ),
    "/collectors/{name}/subscribe": post(
        "Subscribe to symbols or watchlists",
        "Unknown symbols or watchlists: 404 naming them; malformed symbols: 400.",
        ["name"], "Subscription", ok("SubscribeResponse") | WRITE_ERRORS, T_COLL,
    ),
    "/collectors/{name}/unsubscribe": post(
        "Unsubscribe", "Removes symbols and/or watchlists from the subscription.",
        ["name"], "Subscription", ok("UnsubscribeResponse") | WRITE_ERRORS, T_COLL,
    ),
    "/collectors/{name}/mode": post(
        "Switch the streaming mode", "", ["name"], "ModeRequest",
        ok("Collector") | WRITE_ERRORS, T_COLL,
    ),
    "/collectors/{name}/credentials": post(
        "Replace credentials", "Kite access tokens expire daily: update them here.",
        ["name"], "Credentials", ok("Collector") | WRITE_ERRORS, T_COLL, method="put",
    ),
    "/health": get(
        "Health", "Database ping and streaming heartbeat freshness. 503 when the database is "
        "unreachable; streaming problems give `degraded` (503 with strict=true).",
        ["strict"],
        ok("Health") | {"503": {"description": "unavailable",
                                "content": {"application/json": {"schema": ref("Health")}}}},
        T_OPS,
    ),
    "/metrics": {"get": {
        "tags": [T_OPS], "summary": "Prometheus metrics",
        "description": "This worker's request counts, latency histograms and pool stats.",
        "responses": {"200": {"description": "Prometheus text format 0.0.4",
                              "content": {"text/plain": {"schema": STRING}}}},
    }},
    "/openapi.json": {"get": {
        "tags": [T_OPS], "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.1",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }},
    "/stream/ws": {"get": {
        "tags": [T_OPS], "summary": "Live stream (WebSocket upgrade)",
        "description": (
            "Upgrade to a WebSocket. Client messages: `{\"type\": \"subscribe\", "
            "\"symbols\": [...]}`, `unsubscribe`, `{\"type\": \"get_latest\", "
            "\"symbol\": ...}`, `ping`. Server messages: `tick`, `bar`, `stats`, "
            "`orderbook`, `status` (`{type, symbol, data}`), plus `subscribed`, `latest`, "
            "`pong` and `error`. See docs/websocket.md for snapshots, limits and the "
            "slow-client policy."),
        "responses": {"101": {"description": "Switching Protocols (WebSocket)"},
                      "400": {"description": "Not a WebSocket upgrade request"}},
    }},
    "/docs": {"get": {
        "tags": [T_OPS], "summary": "Human-readable API documentation (HTML)",
        "responses": {"200": {"description": "HTML",
                              "content": {"text/html": {"schema": STRING}}}},
    }},
}


def openapi_document(version: str = "0.1.0") -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Market Bridge API",
            "version": version,
            "description": (
                "Real-time and historical market data for Indian markets (Zerodha Kite). "
                "Times: requests accept RFC 3339 with an offset or plain dates (IST); "
                "responses always carry explicit offsets (+05:30). Errors are JSON "
                '{"error", "detail"}. When API_TOKEN is set, POST/PUT/DELETE need '
                "`Authorization: Bearer <token>` (except /watchlists/merge). "
                "WebSocket streaming is at /stream/ws."
            ),
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": T_INTRADAY, "description": "bars, ticks, order book, data quality"},
            {"name": T_WATCH, "description": "predefined and dynamic watchlists"},
            {"name": T_COLL, "description": "collector control plane"},
            {"name": T_OPS, "description": "health, metrics, documentation"},
            DASHBOARD_TAG,
        ],
        "paths": PATHS | DASHBOARD_PATHS,
        "components": {
            "schemas": SCHEMAS,
            "parameters": PARAMETERS,
            "responses": RESPONSES,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
