"""Request counts and latency per route, for ``/metrics``.

Labelled by the route pattern (``/intraday/bars/<symbol:str>``), never the raw path, so
label cardinality stays bounded; requests that matched no route count as ``<unmatched>``.
"""

from __future__ import annotations

import time
from typing import Any

from sanic import Request, Sanic
from sanic.response import BaseHTTPResponse

from api.metrics import Registry

UNMATCHED = "<unmatched>"


def route_label(request: Request) -> str:
    route = request.route
    return "/" + route.path if route is not None else UNMATCHED


def install_instrumentation(app: Sanic, registry: Registry) -> None:
    requests = registry.counter(
        "mb_http_requests_total", "HTTP requests by route, method and status",
        ("route", "method", "status"),
    )
    latency = registry.histogram(
        "mb_http_request_duration_seconds", "HTTP request latency by route and method",
        ("route", "method"),
    )

    def pool_stats() -> list[tuple[str, dict[str, str], float]]:
        pool: Any = getattr(app.ctx, "pool", None)
        if pool is None:
            return []
        stats = pool.get_stats()
        return [
            ("mb_db_pool_size", {}, float(stats.get("pool_size", 0))),
            ("mb_db_pool_available", {}, float(stats.get("pool_available", 0))),
            ("mb_db_pool_requests_waiting", {}, float(stats.get("requests_waiting", 0))),
        ]

    registry.add_callback(pool_stats)

    async def start_timer(request: Request) -> None:
        request.ctx.started = time.perf_counter()

    async def record(request: Request, response: BaseHTTPResponse) -> None:
        label = route_label(request)
        requests.inc(route=label, method=request.method, status=str(response.status))
        started = getattr(request.ctx, "started", None)
        if started is not None:
            latency.observe(time.perf_counter() - started, route=label, method=request.method)

    # Highest priority: timing starts before CORS and auth run.
    app.middleware(start_timer, "request", priority=1000)
    app.middleware(record, "response", priority=1000)
