"""``/health``: database reachability and streaming heartbeat freshness.

503 when the database is unreachable (this API cannot answer anything useful); stale or
absent streaming processes make the status ``degraded`` but keep 200, because reads of
stored data still work. ``?strict=true`` returns 503 for anything short of ``ok`` (for
whole-system checks).
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout
from sanic import Blueprint, HTTPResponse, Request

from api.db import connection, describe_failure
from api.params import arg
from api.responses import json_response
from market_bridge.queries import streaming as queries

bp = Blueprint("health")

HEALTH_TIMEOUT_S = 3.0


@bp.get("/health")
async def health(request: Request) -> HTTPResponse:
    strict = (arg(request, "strict") or "").lower() in ("1", "true", "yes")
    stale_after = float(request.app.ctx.options.streaming_stale_after)
    database: dict[str, Any]
    streaming: dict[str, Any]
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S), connection(request) as conn:
            await queries.ping(conn)
            processes = await queries.streaming_processes(conn)
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, TimeoutError) as exc:
        database = {"status": "down", "detail": await describe_failure(request.app, exc)}
        streaming = {"status": "unknown", "detail": "database unavailable", "processes": []}
    else:
        database = {"status": "ok"}
        fresh = [p for p in processes if p.heartbeat_age_seconds <= stale_after]
        if fresh:
            status = "ok"
        elif processes:
            status = "stale"
        else:
            status = "absent"
        streaming = {
            "status": status,
            "stale_after_seconds": stale_after,
            "processes": [
                {
                    "process_id": p.process_id,
                    "host": p.host,
                    "pid": p.pid,
                    "started_at": p.started_at,
                    "heartbeat_at": p.heartbeat_at,
                    "heartbeat_age_seconds": p.heartbeat_age_seconds,
                    "collectors": p.collectors,
                    "fresh": p.heartbeat_age_seconds <= stale_after,
                }
                for p in processes
            ],
        }
    if database["status"] != "ok":
        overall, code = "unavailable", 503
    elif streaming["status"] != "ok":
        overall, code = "degraded", 503 if strict else 200
    else:
        overall, code = "ok", 200
    return json_response(
        {"status": overall, "components": {"database": database, "streaming": streaming}}, code
    )
