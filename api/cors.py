"""CORS for browser dashboards: allowed origins from ``MB_CORS_ORIGINS`` (comma list, or
``*``); none by default, so browsers on other origins are refused.

Preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here, before
routing's method check and before auth (preflights carry no credentials).
"""

from __future__ import annotations

from collections.abc import Sequence

from sanic import HTTPResponse, Request, Sanic
from sanic.response import empty

ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, Accept"
MAX_AGE = "600"


def install_cors(app: Sanic, origins: Sequence[str]) -> None:
    if not origins:
        return
    allowed = frozenset(origins)
    any_origin = "*" in allowed

    def allow_origin(request: Request) -> str | None:
        origin = request.headers.get("origin")
        if not origin:
            return None
        if any_origin:
            return "*"
        return origin if origin.rstrip("/") in allowed else None

    async def preflight(request: Request) -> HTTPResponse | None:
        if request.method != "OPTIONS" or "access-control-request-method" not in request.headers:
            return None
        origin = allow_origin(request)
        if origin is None:
            return empty(status=403)
        return empty(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": MAX_AGE,
                "Vary": "Origin",
            },
        )

    # Preflight runs before auth and the handlers (higher priority runs earlier).
    app.middleware(preflight, "request", priority=100)

    @app.on_response
    async def add_headers(request: Request, response: HTTPResponse) -> None:
        origin = allow_origin(request)
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = "Content-Disposition, Retry-After"
        response.headers.add("Vary", "Origin")
