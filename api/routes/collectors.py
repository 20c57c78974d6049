"""``/collectors``: the control plane. Writes desired state, reads reported status.

Every write changes ``md.collectors`` (bumping ``generation``) and sends
``NOTIFY mb_control, '<name>'`` in the same transaction; streaming processes reconcile.
Status comes from ``md.collector_status`` heartbeats: no row means state ``unknown``, a
heartbeat older than ``collector_stale_after`` (5 s) means ``stale``; both report
``running: false``.

Secrets: ``api_key`` is shown masked (``ab****yz``), ``access_token`` only as ``****``, and
both are scrubbed from any status text a streaming process reported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from psycopg import AsyncConnection
from sanic import Blueprint, HTTPResponse, Request

from api.body import bool_field, check_keys, json_object, string_field, string_list
from api.db import connection
from api.errors import ApiError, bad_request, not_found
from api.responses import json_response
from api.symbols import parse_or_400, resolve_symbols
from market_bridge.config.collectors import masked
from market_bridge.kite.models import MODES
from market_bridge.queries import collectors as queries
from market_bridge.queries.collectors import CollectorRow, DesiredState, NewCollector
from market_bridge.watchlists import UnknownWatchlist, get_watchlist, watchlist_names

bp = Blueprint("collectors", url_prefix="/collectors")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # as md.collectors' CHECK
RESERVED_NAMES = frozenset({"metrics"})  # GET /collectors/metrics is the metrics route
HIDDEN = "****"
_CREATE_FIELDS = {"name", "api_key", "access_token", "mode", "symbols", "watchlists", "auto_start"}
_SUBSCRIPTION_FIELDS = {"symbols", "watchlist", "watchlists"}


# ---- views -------------------------------------------------------------------------


def _scrub(value: Any, secrets: list[str]) -> Any:
    """Replace any secret inside reported status (error texts, metrics) with ****."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, HIDDEN)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


def _secrets(row: CollectorRow) -> list[str]:
    return [s for s in (row.access_token, row.api_key) if s]


def _observed(row: CollectorRow, stale_after: float) -> tuple[str, bool]:
    if not row.has_status:
        return "unknown", False
    age = row.heartbeat_age_seconds
    if age is None or age > stale_after:
        return "stale", False
    return row.state or "unknown", bool(row.running)


def metrics_view(row: CollectorRow, stale_after: float) -> dict[str, Any]:
    state, running = _observed(row, stale_after)
    return {
        "running": running,
        "subscribed_tokens": row.subscribed_tokens or 0,
        "ticks_received": row.ticks_received or 0,
        "bars_created": row.bars_created or 0,
        "errors": row.errors or 0,
        "reconnects": row.reconnects or 0,
        "state": state,
        "desired_state": row.desired_state,
        "last_tick_at": row.last_tick_at,
        "lag_ms": row.lag_ms,
        "heartbeat_at": row.heartbeat_at,
    }


def status_view(row: CollectorRow, stale_after: float) -> dict[str, Any]:
    secrets = _secrets(row)
    return metrics_view(row, stale_after) | {
        "heartbeat_age_seconds": row.heartbeat_age_seconds,
        "owner": row.owner,
        "applied_generation": row.applied_generation,
        "in_sync": row.applied_generation == row.generation,
        "last_error": _scrub(row.last_error, secrets),
        "metrics": _scrub(row.metrics or {}, secrets),
    }


def collector_view(row: CollectorRow, stale_after: float) -> dict[str, Any]:
    return {
        "name": row.name,
        "mode": row.mode,
        "symbols": row.symbols,
        "watchlists": row.watchlists,
        "desired_state": row.desired_state,
        "auto_start": row.auto_start,
        "origin": row.origin,
        "generation": row.generation,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "api_key": masked(row.api_key) if row.api_key else None,
        "access_token": HIDDEN if row.access_token else None,
        "status": status_view(row, stale_after),
    }


# ---- helpers -----------------------------------------------------------------------


def _stale_after(request: Request) -> float:
    return float(request.app.ctx.options.collector_stale_after)


async def _fetch(conn: AsyncConnection[Any], name: str) -> CollectorRow:
    row = await queries.get_collector(conn, name)
    if row is None:
        existing = [r.name for r in await queries.list_collectors(conn)]
        raise not_found(
            "unknown collector",
            f"no collector named {name!r}; existing collectors: {', '.join(existing) or 'none'}",
        )
    return row


def _canonical_watchlists(names: Iterable[str]) -> list[str]:
    found: list[str] = []
    unknown: list[str] = []
    for name in names:
        try:
            found.append(get_watchlist(name).name)
        except UnknownWatchlist:
            unknown.append(name)
    if unknown:
        raise not_found(
            "unknown watchlist",
            f"unknown watchlist(s) {', '.join(map(repr, unknown))}; "
            f"valid watchlists: {', '.join(watchlist_names())}",
        )
    return list(dict.fromkeys(found))


def _subscription_body(request: Request) -> tuple[list[str], list[str]]:
    """``{"symbols": [...]}``, ``{"watchlist": "..."}``, ``{"watchlists": [...]}`` (or a mix)."""
    body = json_object(request)
    check_keys(body, _SUBSCRIPTION_FIELDS)
    symbols = string_list(body, "symbols") or []
    single = string_field(body, "watchlist")
    lists = [*([single] if single else []), *(string_list(body, "watchlists") or [])]
    if not symbols and not lists:
        raise bad_request(
            "invalid body", 'give "symbols": [...], "watchlist": "..." or "watchlists": [...]'
        )
    return symbols, _canonical_watchlists(lists)


def _still_subscribed_via(symbols: Iterable[str], watchlists: Iterable[str]) -> dict[str, list[str]]:
    static = [get_watchlist(n) for n in watchlists]
    via: dict[str, list[str]] = {}
    for symbol in symbols:
        lists = [wl.name for wl in static if symbol in wl.symbols]
        if lists:
            via[symbol] = lists
    return via


async def _change(
    request: Request, name: str, change: Callable[[DesiredState], DesiredState]
) -> tuple[CollectorRow, queries.StateChange]:
    async with connection(request) as conn:
        result = await queries.change_desired_state(conn, name, change)
        row = await _fetch(conn, name)  # 404 when result is None
    assert result is not None
    return row, result


# ---- endpoints ---------------------------------------------------------------------
# /metrics is registered before /<name>; Sanic also prefers static segments, and the name
# "metrics" is reserved, so a collector can never shadow it.


@bp.get("/metrics")
async def all_metrics(request: Request) -> HTTPResponse:
    stale_after = _stale_after(request)
    async with connection(request) as conn:
        rows = await queries.list_collectors(conn)
    return json_response({row.name: metrics_view(row, stale_after) for row in rows})


@bp.get("/")
async def list_collectors(request: Request) -> HTTPResponse:
    stale_after = _stale_after(request)
    async with connection(request) as conn:
        rows = await queries.list_collectors(conn)
    return json_response(
        {"count": len(rows), "collectors": [collector_view(r, stale_after) for r in rows]}
    )


@bp.post("/")
async def create(request: Request) -> HTTPResponse:
    body = json_object(request)
    check_keys(body, _CREATE_FIELDS, required=("name", "api_key", "access_token"))
    name = string_field(body, "name", required=True)
    assert name is not None
    if not NAME_PATTERN.match(name):
        raise bad_request(
            "invalid body", f"name {name!r}: 1-64 characters of letters, digits, _ . -"
        )
    if name.lower() in RESERVED_NAMES:
        raise bad_request("invalid body", f"name {name!r} is reserved; choose another")
    mode = string_field(body, "mode") or "quote"
    if mode not in MODES:
        raise bad_request("invalid body", f"mode {mode!r}; valid modes: {', '.join(MODES)}")
    raw_symbols = string_list(body, "symbols") or []
    watchlists = _canonical_watchlists(string_list(body, "watchlists") or [])
    new_collector = NewCollector(
        name=name,
        api_key=string_field(body, "api_key", required=True),
        access_token=string_field(body, "access_token", required=True),
        mode=mode,
        watchlists=tuple(watchlists),
        auto_start=bool(bool_field(body, "auto_start")),
    )
    async with connection(request) as conn:
        symbols = await resolve_symbols(conn, raw_symbols)
        new_collector = replace(new_collector, symbols=tuple(s.display for s in symbols))
        if not await queries.create_collector(conn, new_collector):
            raise ApiError(
                409, "collector exists", f"a collector named {name!r} exists; pick another name"
            )
        row = await _fetch(conn, name)
    return json_response(collector_view(row, _stale_after(request)), status=201)


@bp.get("/<name>", unquote=True)
async def get_one(request: Request, name: str) -> HTTPResponse:
    async with connection(request) as conn:
        row = await _fetch(conn, name)
    return json_response(collector_view(row, _stale_after(request)))


@bp.delete("/<name>", unquote=True)
async def delete(request: Request, name: str) -> HTTPResponse:
    async with connection(request) as conn:
        await _fetch(conn, name)
        deleted = await queries.delete_collector(conn, name)
    return json_response({"deleted": name if deleted else None})


@bp.post("/<name>/start", unquote=True)
async def start(request: Request, name: str) -> HTTPResponse:
    row, result = await _change(request, name, lambda s: replace(s, desired_state="running"))
    return json_response(collector_view(row, _stale_after(request)) | {"changed": result.changed})


@bp.post("/<name>/stop", unquote=True)
async def stop(request: Request, name: str) -> HTTPResponse:
    row, result = await _change(request, name, lambda s: replace(s, desired_state="stopped"))
    return json_response(collector_view(row, _stale_after(request)) | {"changed": result.changed})


@bp.post("/<name>/subscribe", unquote=True)
async def subscribe(request: Request, name: str) -> HTTPResponse:
    raw_symbols, watchlists = _subscription_body(request)
    async with connection(request) as conn:
        await _fetch(conn, name)  # unknown collector before unknown symbols
        symbols = [s.display for s in await resolve_symbols(conn, raw_symbols)]

    def add(state: DesiredState) -> DesiredState:
        return replace(
            state,
            symbols=tuple(dict.fromkeys([*state.symbols, *symbols])),
            watchlists=tuple(dict.fromkeys([*state.watchlists, *watchlists])),
        )

    row, result = await _change(request, name, add)
    added = {
        "symbols": [s for s in result.after.symbols if s not in result.before.symbols],
        "watchlists": [w for w in result.after.watchlists if w not in result.before.watchlists],
    }
    body = collector_view(row, _stale_after(request)) | {"changed": result.changed, "added": added}
    return json_response(body)


@bp.post("/<name>/unsubscribe", unquote=True)
async def unsubscribe(request: Request, name: str) -> HTTPResponse:
    raw_symbols, watchlists = _subscription_body(request)
    symbols = list(dict.fromkeys(parse_or_400(s).display for s in raw_symbols))

    def remove(state: DesiredState) -> DesiredState:
        return replace(
            state,
            symbols=tuple(s for s in state.symbols if s not in symbols),
            watchlists=tuple(w for w in state.watchlists if w not in watchlists),
        )

    row, result = await _change(request, name, remove)
    before, after = result.before, result.after
    body = collector_view(row, _stale_after(request)) | {
        "changed": result.changed,
        "removed": {
            "symbols": [s for s in before.symbols if s not in after.symbols],
            "watchlists": [w for w in before.watchlists if w not in after.watchlists],
        },
        "not_subscribed": {
            "symbols": [s for s in symbols if s not in before.symbols],
            "watchlists": [w for w in watchlists if w not in before.watchlists],
        },
        # Removing RELIANCE does not remove it from a subscribed NIFTY50: say so.
        "still_subscribed_via": _still_subscribed_via(symbols, after.watchlists),
    }
    return json_response(body)


@bp.put("/<name>/credentials", unquote=True)
async def credentials(request: Request, name: str) -> HTTPResponse:
    """Replace the api_key and/or access_token (Kite access tokens expire daily)."""
    body = json_object(request)
    check_keys(body, {"api_key", "access_token"})
    api_key = string_field(body, "api_key")
    access_token = string_field(body, "access_token")
    if api_key is None and access_token is None:
        raise bad_request("invalid body", "give api_key and/or access_token")
    async with connection(request) as conn:
        await _fetch(conn, name)
        await queries.update_credentials(conn, name, api_key, access_token)
        row = await _fetch(conn, name)
    return json_response(collector_view(row, _stale_after(request)))


@bp.post("/<name>/mode", unquote=True)
async def set_mode(request: Request, name: str) -> HTTPResponse:
    """Switch the streaming mode: ``{"mode": "ltp" | "quote" | "full"}``."""
    body = json_object(request)
    check_keys(body, {"mode"}, required=("mode",))
    mode = string_field(body, "mode", required=True)
    if mode not in MODES:
        raise bad_request("invalid body", f"mode {mode!r}; valid modes: {', '.join(MODES)}")
    row, result = await _change(request, name, lambda s: replace(s, mode=mode))
    return json_response(collector_view(row, _stale_after(request)) | {"changed": result.changed})
