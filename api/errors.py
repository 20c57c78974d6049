"""Every error leaves as JSON ``{"error": "...", "detail": ...}``.

Bad input is a 4xx (``ApiError`` and Sanic's own 4xx), an unreachable database a 503 with
the reason, anything else a 500 that names the request id but never carries a traceback
or exception text (it may contain secrets).
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout
from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse

from api.responses import json_response

log = logging.getLogger("market_bridge.api")

# Sanic's exception messages for these are fine to show; the error names are ours.
_SANIC_ERRORS = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    408: "request timeout",
    413: "request body too large",
    416: "range not satisfiable",
    503: "service unavailable",
}


class ApiError(Exception):
    """An error the client caused (or can act on), with its HTTP status."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}


def bad_request(error: str, detail: Any = None) -> ApiError:
    return ApiError(400, error, detail)


def not_found(error: str, detail: Any = None) -> ApiError:
    return ApiError(404, error, detail)


def error_body(error: str, detail: Any = None) -> dict[str, Any]:
    return {"error": error, "detail": detail}


async def _api_error(request: Request, exc: Exception) -> HTTPResponse:
    assert isinstance(exc, ApiError)
    return json_response(error_body(exc.error, exc.detail), exc.status, exc.headers)


async def _sanic_error(request: Request, exc: Exception) -> HTTPResponse:
    assert isinstance(exc, SanicException)
    status = exc.status_code
    if status >= 500:
        return await _unexpected(request, exc)
    if status == 413:
        limit = request.app.config.REQUEST_MAX_SIZE
        detail: Any = f"the request body exceeds the limit of {limit} bytes"
    else:
        detail = str(exc) or None
    headers = dict(getattr(exc, "headers", None) or {})
    return json_response(error_body(_SANIC_ERRORS.get(status, "bad request"), detail), status, headers)


async def _database_unavailable(request: Request, exc: Exception) -> HTTPResponse:
    from api.db import describe_failure  # late: db imports this module's ApiError

    reason = await describe_failure(request.app, exc)
    log.warning("database unavailable for %s %s: %s", request.method, request.path, reason)
    return json_response(
        error_body("database unavailable", reason), 503, {"Retry-After": "5"}
    )


async def _unexpected(request: Request, exc: Exception) -> HTTPResponse:
    request_id = str(request.id)
    log.error(
        "unhandled error in %s %s (request %s)",
        request.method,
        request.path,
        request_id,
        exc_info=exc,
    )
    return json_response(
        error_body(
            "internal error",
            f"unexpected server error; the server log has the details (request id {request_id})",
        ),
        500,
    )


def register_error_handlers(app: Sanic) -> None:
    # Lookup walks the exception's MRO, so the most specific registration wins.
    app.error_handler.add(ApiError, _api_error)
    app.error_handler.add(SanicException, _sanic_error)
    for db_error in (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, PoolClosed):
        app.error_handler.add(db_error, _database_unavailable)
    app.error_handler.add(Exception, _unexpected)
