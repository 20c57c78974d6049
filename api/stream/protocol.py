"""The ``/stream/ws`` wire protocol, without I/O: client requests in, server messages out.

Client → server (JSON text; an optional ``"id"`` is echoed in the reply)::

    {"type": "subscribe", "symbols": ["RELIANCE", "TCS"]}
    {"type": "unsubscribe", "symbols": ["RELIANCE"]}
    {"type": "get_latest", "symbol": "RELIANCE"}
    {"type": "ping"}

Server → client: live messages exactly as the streaming service publishes them
(``{"type": "tick"|"bar"|"orderbook"|"stats"|"status", "symbol": ..., "data": {...}}``),
snapshots (the same shape plus ``"snapshot": true``), and the replies built here:
``subscribed``, ``unsubscribed``, ``latest``, ``pong`` and ``error``.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from api.responses import dumps
from api.stream.frames import text_frame
from market_bridge.market.symbols import InvalidSymbol, Symbol, parse_symbol

RequestId = str | int | None
REQUEST_TYPES = ("subscribe", "unsubscribe", "get_latest", "ping")
MAX_ID_LENGTH = 64

# Live message types whose newest value supersedes older ones (conflated for slow clients).
LATEST_WINS = frozenset({"tick", "orderbook", "stats"})


# ---- client requests ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subscribe:
    symbols: tuple[Symbol, ...]
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    symbols: tuple[Symbol, ...]
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class GetLatest:
    symbol: Symbol
    id: RequestId = None


@dataclass(frozen=True, slots=True)
class Ping:
    id: RequestId = None


Request = Subscribe | Unsubscribe | GetLatest | Ping


class RequestError(Exception):
    """A request the server refuses; becomes an ``error`` message (the connection stays)."""

    def __init__(
        self, error: str, detail: Any = None, *, id: RequestId = None, request: str | None = None
    ) -> None:
        super().__init__(f"{error}: {detail}")
        self.error = error
        self.detail = detail
        self.id = id
        self.request = request


def parse_request(raw: str | bytes, *, max_bytes: int, max_symbols: int) -> Request:
    """One client frame to a request, or ``RequestError`` saying what is wrong with it."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode())
    if size > max_bytes:
        raise RequestError(
            "message too large", f"{size} bytes; the limit is {max_bytes} bytes per message"
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestError("invalid json", str(exc)) from None
    if not isinstance(body, dict):
        raise RequestError(
            "invalid message", f"expected a JSON object with a 'type', got {type(body).__name__}"
        )
    request_id = _request_id(body.get("id"))
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in REQUEST_TYPES:
        raise RequestError(
            "unknown type" if isinstance(kind, str) else "invalid message",
            f"'type' must be one of {', '.join(REQUEST_TYPES)}; got {kind!r}",
            id=request_id,
        )
    try:
        if kind == "subscribe":
            return Subscribe(_symbols(body, max_symbols), request_id)
        if kind == "unsubscribe":
            return Unsubscribe(_symbols(body, max_symbols), request_id)
        if kind == "get_latest":
            return GetLatest(_symbol(body), request_id)
        return Ping(request_id)
    except RequestError as exc:
        exc.id, exc.request = request_id, kind
        raise


def _request_id(value: object) -> RequestId:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RequestError("invalid message", "'id' must be a string or an integer")
    if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
        raise RequestError("invalid message", f"'id' is longer than {MAX_ID_LENGTH} characters")
    return value


def _symbols(body: dict[str, Any], max_symbols: int) -> tuple[Symbol, ...]:
    raw = body.get("symbols")
    if not isinstance(raw, list) or not raw:
        raise RequestError(
            "invalid symbols", '\'symbols\' must be a non-empty list, e.g. ["RELIANCE", "TCS"]'
        )
    if len(raw) > max_symbols:
        raise RequestError(
            "subscription limit",
            f"{len(raw)} symbols in one message; at most {max_symbols} per connection",
        )
    parsed: list[Symbol] = []
    invalid: list[str] = []
    for item in raw:
        try:
            parsed.append(parse_symbol(item))
        except InvalidSymbol as exc:
            invalid.append(str(exc))
    if invalid:
        raise RequestError("invalid symbol", invalid if len(invalid) > 1 else invalid[0])
    return tuple(dict.fromkeys(parsed))  # duplicates (RELIANCE, NSE:reliance) count once


def _symbol(body: dict[str, Any]) -> Symbol:
    raw = body.get("symbol")
    if raw is None:
        raise RequestError("invalid symbol", "'symbol' is required, e.g. \"RELIANCE\"")
    try:
        return parse_symbol(raw)
    except InvalidSymbol as exc:
        raise RequestError("invalid symbol", str(exc)) from None


# ---- live messages from the streaming service -------------------------------------


@dataclass(frozen=True, slots=True)
class LiveMessage:
    """One published message, routed and encoded once for every subscriber."""

    type: str  # "tick", "bar", ...
    symbol: str  # display form, the subscription key
    series: str  # what a snapshot competes with: the type, or "bar:<timeframe>" for bars
    key: Hashable | None  # conflation key; None: must be delivered
    data: bytes  # the message as published (UTF-8 JSON)
    frame: bytes  # its WebSocket frame: built once, written to every subscriber


@lru_cache(maxsize=65_536)
def display_symbol(raw: str) -> str | None:
    """``RELIANCE``/``nse:reliance`` → ``RELIANCE``; ``None`` when it names no instrument."""
    try:
        return parse_symbol(raw).display
    except InvalidSymbol:
        return None


def parse_payload(payload: str) -> tuple[list[LiveMessage], int]:
    """A NOTIFY payload (a JSON array of messages) → routed messages, and how many were bad."""
    try:
        items = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return [], 1
    if isinstance(items, dict):  # tolerate a single message not wrapped in an array
        items = [items]
    if not isinstance(items, list):
        return [], 1
    out: list[LiveMessage] = []
    bad = 0
    for item in items:
        live = _live_message(item)
        if live is None:
            bad += 1
        else:
            out.append(live)
    return out, bad


def _live_message(item: object) -> LiveMessage | None:
    if not isinstance(item, dict):
        return None
    kind, raw_symbol, data = item.get("type"), item.get("symbol"), item.get("data")
    if not isinstance(kind, str) or not isinstance(raw_symbol, str) or not isinstance(data, dict):
        return None
    symbol = display_symbol(raw_symbol)
    if symbol is None:
        return None
    encoded = encode(item)
    return LiveMessage(
        kind, symbol, series(kind, data), conflation_key(kind, symbol, data), encoded,
        text_frame(encoded),
    )  # fmt: skip


def series(kind: str, data: dict[str, Any]) -> str:
    timeframe = data.get("timeframe")
    return f"bar:{timeframe}" if kind == "bar" and isinstance(timeframe, str) else kind


def conflation_key(kind: str, symbol: str, data: dict[str, Any]) -> Hashable | None:
    """Which pending message a newer one may replace for a slow client.

    Ticks, order books and stats: the latest per symbol. A forming bar: the latest version
    of the same bar (symbol, timeframe, start), so no bar period is ever skipped. Final
    and revised bars, status messages and anything unknown: never replaced.
    """
    if kind in LATEST_WINS:
        return (kind, symbol)
    if kind == "bar" and data.get("final") is False:
        timeframe, start = data.get("timeframe"), data.get("start")
        if isinstance(timeframe, str) and isinstance(start, str):
            return ("bar", symbol, timeframe, start)
    return None


# ---- server replies ----------------------------------------------------------------


def encode(message: dict[str, Any]) -> bytes:
    """UTF-8 JSON, sent as a text frame (browsers hand binary frames to onmessage as Blobs)."""
    return dumps(message)


def _with_id(message: dict[str, Any], request_id: RequestId) -> dict[str, Any]:
    if request_id is not None:
        message["id"] = request_id
    return message


def subscribed(symbols: list[str], request_id: RequestId = None) -> bytes:
    return encode(_with_id({"type": "subscribed", "symbols": symbols}, request_id))


def unsubscribed(symbols: list[str], request_id: RequestId = None) -> bytes:
    return encode(_with_id({"type": "unsubscribed", "symbols": symbols}, request_id))


def pong(request_id: RequestId = None) -> bytes:
    return encode(_with_id({"type": "pong"}, request_id))


def latest(
    symbol: str,
    tick: dict[str, Any] | None,
    bar: dict[str, Any] | None,
    request_id: RequestId = None,
) -> bytes:
    body = {"type": "latest", "symbol": symbol, "data": {"tick": tick, "bar": bar}}
    return encode(_with_id(body, request_id))


def snapshot(kind: str, symbol: str, data: dict[str, Any]) -> bytes:
    return encode({"type": kind, "symbol": symbol, "data": data, "snapshot": True})


def error(exc: RequestError) -> bytes:
    body: dict[str, Any] = {"type": "error", "error": exc.error, "detail": exc.detail}
    if exc.request is not None:
        body["request"] = exc.request
    return encode(_with_id(body, exc.id))


def stream_status(state: str, at: str, reason: str, **extra: Any) -> bytes:
    """The hub's own status (``symbol`` null): the live feed into this server was lost or
    restored. Not the streaming service's per-symbol ``feed_lost``/``feed_restored``."""
    data = {"state": state, "at": at, "reason": reason, **extra}
    return encode({"type": "status", "symbol": None, "data": data})
