"""OpenAPI 3.1 path items of the dashboard's routes, to merge into ``api.openapi.PATHS``
(``"paths": PATHS | DASHBOARD_PATHS``) and its tag into the document's tags.

Self-contained except for references to the main document's shared error responses
(``#/components/responses/...``) and the ``timeframe`` parameter.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

TAG = "dashboard"
TAG_INFO: Schema = {"name": TAG, "description": "the web dashboard at / and its helpers"}


def _resp(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


def _json(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _file(media: str, description: str) -> Schema:
    return {"description": description,
            "content": {media: {"schema": {"type": "string"}}}}  # fmt: skip


def _query(name: str, description: str, **schema: Any) -> Schema:
    return {"name": name, "in": "query", "description": description,
            "schema": {"type": "string", **schema}}  # fmt: skip


_CELL: Schema = {
    "type": "object",
    "properties": {
        "expected": {"type": "integer"},
        "actual": {"type": "integer"},
        "missing": {"type": "integer"},
        "percent": {"type": "number"},
        "quality": {"type": "string",
                    "enum": ["excellent", "good", "fair", "poor", "no_session"]},
    },
    "required": ["expected", "actual", "missing", "percent", "quality"],
}

_GAP_FILL_BODY: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "symbols": {"type": "array", "items": {"type": "string"}},
        "watchlist": {"type": "string"},
        "from_date": {"type": "string", "format": "date"},
        "to_date": {"type": "string", "format": "date"},
        "timeframe": {"type": "string", "default": "1m"},
        "dry_run": {"type": "boolean", "default": False},
    },
    "examples": [{"symbols": ["RELIANCE"], "from_date": "2024-01-30",
                  "to_date": "2024-01-30", "timeframe": "1m"}],
}

DASHBOARD_PATHS: dict[str, Schema] = {
    "/": {"get": {
        "tags": [TAG], "summary": "The dashboard (HTML page)",
        "description": "Live chart, watchlists, collectors and data quality; plain ES "
                       "modules served from local disk (docs/dashboard.md).",
        "responses": {"200": _file("text/html", "HTML")},
    }},
    "/dashboard": {"get": {
        "tags": [TAG], "summary": "Redirects to the dashboard at /",
        "responses": {"302": {"description": "to /"}},
    }},
    "/dashboard/static/{name}": {"get": {
        "tags": [TAG], "summary": "A file of the dashboard (JS module, CSS, HTML)",
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"200": _file("text/javascript", "the file"), "404": _resp("NotFound")},
    }},
    "/dashboard/vendor/lightweight-charts.mjs": {"get": {
        "tags": [TAG], "summary": "The chart library (lightweight-charts, ES module)",
        "description": "From local disk; 404 saying how to install it when it is missing.",
        "responses": {"200": _file("text/javascript", "the library"),
                      "404": _resp("NotFound")},
    }},
    "/dashboard/config": {"get": {
        "tags": [TAG], "summary": "What the page needs to start",
        "description": "Server time and trading day, timeframes, whether POSTs need a "
                       "token, the Prefect UI URL, the newest symbol, the chart library.",
        "responses": {"200": _json({"type": "object", "required": [
            "now", "trading_day", "timeframes", "auth_required", "prefect_ui_url",
            "default_symbol", "chart_library"]})},
    }},
    "/dashboard/quality": {"get": {
        "tags": [TAG], "summary": "Completeness per symbol and trading day",
        "description": "Expected (NSE trading minutes, closed bars only) vs stored bars for "
                       "every symbol and trading day in [from, to], in one query. Default: "
                       "the last 5 trading days. At most 200 symbols and 62 days "
                       "(intraday timeframes).",
        "parameters": [
            _query("symbols", "comma-separated symbols", examples=["RELIANCE,TCS"]),
            _query("watchlist", "a watchlist's members (a movers list: its universe)"),
            _query("from", "first day (IST date)", format="date"),
            _query("to", "last day, inclusive (IST date)", format="date"),
            {"$ref": "#/components/parameters/timeframe"},
        ],
        "responses": {
            "200": _json({"type": "object", "properties": {
                "days": {"type": "array", "items": {"type": "string", "format": "date"}},
                "symbols": {"type": "array", "items": {"type": "object", "properties": {
                    "symbol": {"type": "string"},
                    "days": {"type": "object", "additionalProperties": _CELL},
                    "total": _CELL}}},
            }, "required": ["timeframe", "from", "to", "days", "symbols"]}),
            "400": _resp("BadRequest"), "404": _resp("NotFound"), "503": _resp("Unavailable"),
        },
    }},
    "/dashboard/snapshot": {"get": {
        "tags": [TAG], "summary": "Latest close, change % and day volume per symbol",
        "description": "From the stored 1m bars (as the movers lists); the watchlist "
                       "table's starting values before live ticks arrive.",
        "parameters": [_query("symbols", "comma-separated symbols (at most 500)")],
        "responses": {
            "200": _json({"type": "object", "required": ["timeframe", "count", "symbols"]}),
            "400": _resp("BadRequest"), "503": _resp("Unavailable"),
        },
    }},
    "/dashboard/gap-fill": {"post": {
        "tags": [TAG], "summary": "Start a gap-fill flow run through Prefect",
        "description": "Looks up the `gap-fill/gap-fill` deployment and creates a flow run "
                       "with these parameters. 503 (with the reason) when Prefect is "
                       "unreachable or the deployment is not served.",
        "security": [{"bearer": []}, {}],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": _GAP_FILL_BODY}}},
        "responses": {
            "201": _json({"type": "object", "properties": {
                "flow_run_id": {"type": "string"}, "flow_run_name": {"type": "string"},
                "deployment_id": {"type": "string"}, "state": {"type": ["string", "null"]},
                "parameters": {"type": "object"}, "ui_url": {"type": "string"},
                "prefect_ui_url": {"type": "string"}},
                "required": ["flow_run_id", "ui_url", "parameters"]}, "flow run created"),
            "400": _resp("BadRequest"), "401": _resp("Unauthorized"),
            "404": _resp("NotFound"), "503": _json({"type": "object"}, "Prefect unavailable"),
        },
    }},
}
