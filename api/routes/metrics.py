"""``/metrics``: this worker's registry in the Prometheus text format (0.0.4)."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse, Request
from sanic.response import text

bp = Blueprint("metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@bp.get("/metrics")
async def metrics(request: Request) -> HTTPResponse:
    return text(request.app.ctx.metrics.render(), content_type=CONTENT_TYPE)
