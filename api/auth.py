"""Bearer-token check for mutating requests (POST/PUT/PATCH/DELETE) when API_TOKEN is set.

Reads stay open. A POST route that changes nothing (``/watchlists/merge``) is marked
``ctx_read_only=True`` and is exempt.
"""

from __future__ import annotations

import hmac

from sanic import Request, Sanic

from api.errors import ApiError

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="market-bridge"'}


def install_auth(app: Sanic, token: str | None) -> None:
    if not token:
        return
    expected = token.encode()

    @app.on_request
    async def require_bearer(request: Request) -> None:
        if request.method not in MUTATING:
            return
        route = request.route
        if route is not None and getattr(route.ctx, "read_only", False):
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(
                401,
                "unauthorized",
                "this endpoint needs 'Authorization: Bearer <API_TOKEN>'",
                headers=_CHALLENGE,
            )
        if not hmac.compare_digest(given.strip().encode(), expected):
            raise ApiError(401, "unauthorized", "the bearer token is not valid", _CHALLENGE)
