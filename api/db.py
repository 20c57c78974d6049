"""The connection pool: opened in a start-up listener, closed at shutdown (one per worker).

Connections are autocommit (reads need no transaction; writers open one explicitly), use
the IST time zone and carry a statement timeout so a runaway query cannot hold a worker.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from sanic import Request, Sanic

CONNECT_TIMEOUT_S = 3
_DIAGNOSIS_TTL_S = 2.0  # at most one probe connection per worker per 2 s while failing
# A pooled connection idle this long is checked (an empty query) before it is handed out.
CHECK_AFTER_IDLE_S = 1.0
_released_at: WeakKeyDictionary[AsyncConnection[Any], float] = WeakKeyDictionary()


async def _configure(conn: AsyncConnection[Any]) -> None:
    # timestamptz values come back in IST, so every response carries +05:30. One round
    # trip (no parameters: both statements go in one simple query).
    await conn.execute("SET statement_timeout = '15s'; SET TimeZone = 'Asia/Kolkata'")


def _has_input(conn: AsyncConnection[Any]) -> bool:
    """Whether the server sent something to an idle connection: nothing is expected (no
    LISTEN on pooled connections), so it is a shutdown notice (FATAL 57P01 "terminating
    connection due to administrator command") or end-of-file. A poll, no round trip."""
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except (OSError, ValueError, psycopg.OperationalError):
        return True  # no usable socket: let the full check decide
    return bool(readable)


async def _usable(conn: AsyncConnection[Any]) -> bool:
    """Checked on checkout: after a database restart pooled connections are broken.

    A connection back in the pool within ``CHECK_AFTER_IDLE_S`` that has nothing to read
    is handed out as it is: it was working a moment ago, and a server that went away since
    has closed its socket (or sent a shutdown notice), which the poll sees. Anything else
    gets an empty query: a round trip, ~0.2 ms of this process's CPU and PostgreSQL's, so
    not on every request."""
    if conn.closed or conn.broken:
        return False
    released = _released_at.get(conn)
    if (
        released is not None
        and time.monotonic() - released < CHECK_AFTER_IDLE_S
        and not _has_input(conn)
    ):
        return True
    try:
        await conn.execute("")
    except (psycopg.OperationalError, psycopg.InterfaceError):
        return False
    return True


def make_pool(dsn: str, *, min_size: int, max_size: int, timeout: float) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        open=False,  # opened by the start-up listener, inside the server's event loop
        # no check= here: pooled() checks (the pool's own check loop waits 1 s, 2 s, ...
        # between broken connections, so after a restart a request would time out)
        configure=_configure,
        kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
        name="market-bridge-api",
    )


def register_pool_listeners(app: Sanic) -> None:
    @app.before_server_start
    async def open_pool(app: Sanic) -> None:
        options = app.ctx.options
        app.ctx.pool = make_pool(
            app.ctx.dsn,
            min_size=options.pool_min_size,
            max_size=options.pool_max_size,
            timeout=options.pool_timeout,
        )
        app.ctx.db_diagnosis = (0.0, "")
        # wait=False: the API starts (and answers 503) while the database is down.
        await app.ctx.pool.open(wait=False)

    @app.after_server_stop
    async def close_pool(app: Sanic) -> None:
        pool = getattr(app.ctx, "pool", None)
        if pool is not None:
            await pool.close()


@asynccontextmanager
async def pooled(pool: AsyncConnectionPool) -> AsyncIterator[AsyncConnection[Any]]:
    """A working connection from ``pool``: broken ones (a database restart) are closed,
    which makes the pool replace them, and the next one is taken at once. A restart can
    still fail the requests that were using a connection at that moment."""
    for _ in range(pool.max_size + 1):
        async with pool.connection() as conn:
            if not await _usable(conn):
                with contextlib.suppress(Exception):
                    await conn.close()  # returned closed: the pool opens a new one
                continue
            try:
                yield conn
            finally:
                _released_at[conn] = time.monotonic()
            return
    raise psycopg.OperationalError("every pooled connection was broken; database restarting?")


@asynccontextmanager
async def connection(request: Request) -> AsyncIterator[AsyncConnection[Any]]:
    async with pooled(request.app.ctx.pool) as conn:
        yield conn


async def describe_failure(app: Sanic, exc: BaseException) -> str:
    """Why the database is unusable, for the 503 body.

    A pool timeout (or our own timeout) says only that no connection came; a direct connection attempt gives
    the actual reason (refused, auth, DNS). Probes are rate-limited per worker.
    """
    if not isinstance(exc, PoolTimeout | TimeoutError):
        return _clean(str(exc)) or type(exc).__name__
    at, reason = getattr(app.ctx, "db_diagnosis", (0.0, ""))
    now = time.monotonic()
    if reason and now - at < _DIAGNOSIS_TTL_S:
        return reason
    try:
        probe = await psycopg.AsyncConnection.connect(app.ctx.dsn, connect_timeout=2)
    except psycopg.Error as err:
        reason = _clean(str(err)) or type(err).__name__
    else:
        await probe.close()
        reason = f"no connection free within {app.ctx.options.pool_timeout:g} s (pool busy)"
    app.ctx.db_diagnosis = (now, reason)
    return reason


def _clean(message: str) -> str:
    # libpq messages span lines ("connection failed: ...\nIs the server running..."): one line.
    return " ".join(message.split())
