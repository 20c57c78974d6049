"""The Kite REST API subset the platform uses, plus the simulator's own ``/sim`` endpoints.

Kite's envelope everywhere: ``{"status": "success", "data": ...}`` or
``{"status": "error", "message": ..., "error_type": ...}`` with the matching HTTP status,
and a Content-Type on every response (kiteconnect reads it unguarded).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import orjson
from sanic import Request, Sanic
from sanic.exceptions import MethodNotAllowed, NotFound, SanicException
from sanic.response import HTTPResponse, raw

from market_bridge.kite.models import IST, Tick
from market_bridge.kite.simulator import candles as cdl
from market_bridge.kite.simulator.auth import PROFILE, AuthError
from market_bridge.kite.simulator.faults import FaultError, check_fault
from market_bridge.kite.simulator.state import SimState
from market_bridge.kite.simulator.universe import Instrument
from market_bridge.kite.simulator.ws import clear_faults, start_fault

KITE_EXCHANGES = ("NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX")
_JSON = "application/json"


def ok(data: Any, status: int = 200) -> HTTPResponse:
    return raw(orjson.dumps({"status": "success", "data": data}), status, content_type=_JSON)


def error(message: str, error_type: str, status: int) -> HTTPResponse:
    body = {"status": "error", "message": message, "data": None, "error_type": error_type}
    return raw(orjson.dumps(body), status, content_type=_JSON)


def install_rest(app: Sanic, state: SimState) -> None:
    def authorize(request: Request) -> HTTPResponse | None:
        try:
            state.auth.check_header(request.headers.get("authorization"), state.expired_since())
        except AuthError as exc:
            return error(str(exc), exc.error_type, exc.status)
        return None

    # ---- instruments ------------------------------------------------------------------

    def csv_response(request: Request, exchange: str | None) -> HTTPResponse:
        gz = "gzip" in request.headers.get("accept-encoding", "").lower()
        body = state.instruments_csv(exchange, gz)
        headers = {"Content-Encoding": "gzip"} if gz else {}
        return raw(body, 200, headers=headers, content_type="text/csv")

    @app.get("/instruments")
    async def instruments(request: Request) -> HTTPResponse:
        return csv_response(request, None)

    @app.get("/instruments/<exchange:str>")
    async def instruments_exchange(request: Request, exchange: str) -> HTTPResponse:
        if exchange.upper() not in KITE_EXCHANGES:
            return error(f"Invalid exchange: {exchange}", "InputException", 400)
        return csv_response(request, exchange.upper())

    # ---- historical -------------------------------------------------------------------

    @app.get("/instruments/historical/<token:int>/<interval:str>")
    async def historical(request: Request, token: int, interval: str) -> HTTPResponse:
        denied = authorize(request)
        if denied is not None:
            return denied
        now = state.wall()
        api_key = state.config.api_key
        if state.fault_active("rate_limit") or not state.historical_limiter.allow(api_key, now):
            return error("Too many requests", "NetworkException", 429)
        inst = state.universe.get(token)
        if inst is None:
            return error("invalid token", "InputException", 400)
        args = request.args
        try:
            req = cdl.parse_request(
                token, interval, args.get("from"), args.get("to"), args.get("oi")
            )
        except cdl.CandleRequestError as exc:
            return error(str(exc), "InputException", 400)
        sim_now = int(state.clock.now())
        # Long spans take ~1 s of numpy work: keep it off the event loop.
        rows = await asyncio.to_thread(_candle_rows, state, inst, req, sim_now)
        return ok({"candles": rows})

    # ---- session / user ---------------------------------------------------------------

    @app.post("/session/token")
    async def session_token(request: Request) -> HTTPResponse:
        form = request.form
        if form is None:
            return error("Missing api_key, request_token or checksum", "InputException", 400)
        try:
            data = state.auth.login(
                form.get("api_key"), form.get("request_token"), form.get("checksum"),
                state.wall(),
            )  # fmt: skip
        except AuthError as exc:
            return error(str(exc), exc.error_type, exc.status)
        return ok(data)

    @app.delete("/session/token")
    async def session_logout(request: Request) -> HTTPResponse:
        try:
            state.auth.logout(request.args.get("api_key"), request.args.get("access_token"))
        except AuthError as exc:
            return error(str(exc), exc.error_type, exc.status)
        return ok(True)

    @app.get("/user/profile")
    async def profile(request: Request) -> HTTPResponse:
        return authorize(request) or ok(PROFILE)

    # ---- quotes -----------------------------------------------------------------------

    def quote_route(kind: str) -> Any:
        async def handler(request: Request) -> HTTPResponse:
            denied = authorize(request)
            if denied is not None:
                return denied
            second = int(state.clock.now())
            data: dict[str, Any] = {}
            for key in request.args.getlist("i") or []:
                inst = state.universe.by_key.get(key)
                if inst is None:
                    continue  # Kite leaves unknown instruments out
                tick = state.model.last_tick(inst.instrument_token, second, "full")
                data[key] = _quote(inst, tick, kind)
            return ok(data)

        handler.__name__ = f"quote_{kind}"
        return handler

    app.add_route(quote_route("full"), "/quote", methods=["GET"])
    app.add_route(quote_route("ohlc"), "/quote/ohlc", methods=["GET"])
    app.add_route(quote_route("ltp"), "/quote/ltp", methods=["GET"])

    # ---- simulator control (no Kite auth) ---------------------------------------------

    @app.get("/sim/status")
    async def sim_status(request: Request) -> HTTPResponse:
        return ok(state.status())

    @app.get("/sim/faults")
    async def sim_faults(request: Request) -> HTTPResponse:
        now = state.wall()
        return ok({"faults": [f.to_dict(now) for f in state.faults.active(now)]})

    @app.post("/sim/faults")
    async def sim_fault_start(request: Request) -> HTTPResponse:
        try:
            body = orjson.loads(request.body or b"{}")
        except orjson.JSONDecodeError:
            return error('body must be JSON: {"fault": NAME, "seconds": S}', "InputException", 400)
        if not isinstance(body, dict):
            return error("body must be a JSON object", "InputException", 400)
        try:
            name, seconds = check_fault(body.get("fault"), body.get("seconds"))
        except FaultError as exc:
            return error(str(exc), "InputException", 400)
        start_fault(state, name, seconds)
        now = state.wall()
        return ok({"faults": [f.to_dict(now) for f in state.faults.active(now)]})

    @app.delete("/sim/faults")
    async def sim_fault_clear(request: Request) -> HTTPResponse:
        name = request.args.get("fault")
        if name is not None:
            try:
                check_fault(name, None)
            except FaultError as exc:
                return error(str(exc), "InputException", 400)
        clear_faults(state, name)
        return ok({"faults": []})

    # ---- errors in Kite's shape -------------------------------------------------------

    async def not_found(request: Request, exc: Exception) -> HTTPResponse:
        return error("Route not found", "GeneralException", 404)

    async def not_allowed(request: Request, exc: Exception) -> HTTPResponse:
        return error("Method not allowed", "GeneralException", 405)

    async def failed(request: Request, exc: Exception) -> HTTPResponse:
        status = exc.status_code if isinstance(exc, SanicException) else 500
        return error(f"Simulator error: {exc}", "GeneralException", status)

    app.error_handler.add(NotFound, not_found)
    app.error_handler.add(MethodNotAllowed, not_allowed)
    app.error_handler.add(Exception, failed)


def _candle_rows(
    state: SimState, inst: Instrument, req: cdl.CandleRequest, sim_now: int
) -> list[list[object]]:
    bars = cdl.candles(state.history, req, sim_now)
    return cdl.candle_rows(bars, inst.tick_wire, inst.divisor, req.with_oi)


def _stamp(ts: datetime | None) -> str | None:
    return None if ts is None else ts.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


def _quote(inst: Instrument, tick: Tick, kind: str) -> dict[str, Any]:
    if kind == "ltp":
        return {"instrument_token": inst.instrument_token, "last_price": tick.last_price}
    ohlc = {"open": tick.open, "high": tick.high, "low": tick.low, "close": tick.close}
    if kind == "ohlc":
        return {"instrument_token": inst.instrument_token, "last_price": tick.last_price,
                "ohlc": ohlc}  # fmt: skip
    close = tick.close or 0.0
    band = round(close * 0.1 / inst.tick_size) * inst.tick_size
    return {
        "instrument_token": inst.instrument_token,
        "timestamp": _stamp(tick.exchange_timestamp),
        "last_trade_time": _stamp(tick.last_trade_time),
        "last_price": tick.last_price,
        "last_quantity": tick.last_traded_quantity or 0,
        "buy_quantity": tick.total_buy_quantity or 0,
        "sell_quantity": tick.total_sell_quantity or 0,
        "volume": tick.volume_traded or 0,
        "average_price": tick.average_traded_price or 0,
        "oi": tick.oi or 0,
        "oi_day_high": tick.oi_day_high or 0,
        "oi_day_low": tick.oi_day_low or 0,
        "net_change": round(tick.last_price - close, 4),
        "lower_circuit_limit": round(close - band, 4),
        "upper_circuit_limit": round(close + band, 4),
        "ohlc": ohlc,
        "depth": {
            side: [
                {"price": lvl.price, "quantity": lvl.quantity, "orders": lvl.orders}
                for lvl in levels
            ]
            for side, levels in (("buy", tick.depth_buy), ("sell", tick.depth_sell))
        },
    }
