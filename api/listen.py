"""A LISTEN connection kept up for as long as the worker runs: connect, LISTEN, serve it
until it fails, then reconnect with jittered exponential backoff. Used by the stream hub
(live messages) and the bar cache (bar changes); what happens on a connection is theirs."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import psycopg
from psycopg import AsyncConnection, sql

# What a lost or unreachable database raises; anything else is a bug in ``serve``.
LISTEN_ERRORS = (psycopg.Error, OSError, TimeoutError)


async def keep_listening(
    dsn: str,
    channel: str,
    *,
    application_name: str,
    serve: Callable[[AsyncConnection[Any]], Awaitable[None]],
    failed: Callable[[BaseException, bool], None],
    attempted: asyncio.Event,
    backoff_initial: float,
    backoff_max: float,
) -> NoReturn:
    """``serve(conn)`` on an autocommit connection LISTENing on ``channel``, again and again.
    When it fails (or connecting does): ``failed(exc, bug)`` (``bug``: not a database or
    network error), ``attempted`` is set (start-up waits for the first attempt, not for a
    database that is down), then a pause of ``backoff_initial`` doubling up to
    ``backoff_max``, jittered so that N workers do not reconnect in lockstep after a
    database restart; a LISTEN that succeeds resets it."""
    delay = backoff_initial
    while True:
        try:
            conn = await AsyncConnection.connect(
                dsn, autocommit=True, connect_timeout=3, application_name=application_name
            )
            async with conn:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                delay = backoff_initial
                await serve(conn)
        except LISTEN_ERRORS as exc:
            failed(exc, False)
        except Exception as exc:  # a bug: the caller logs it; keep trying
            failed(exc, True)
        attempted.set()
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2, backoff_max)
