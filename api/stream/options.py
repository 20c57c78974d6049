"""Limits and timings of the live stream (``WS /stream/ws``), per Sanic worker.

Defaults suit a browser or a trading script on a LAN; every limit is documented in
docs/websocket.md. Tests shrink the queue bounds to make a slow client visible quickly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from market_bridge.collect.messages import LIVE_CHANNEL

ENV_PREFIX = "MB_WS_"
WRITE_PATHS = ("direct", "task", "send")


@dataclass(frozen=True)
class StreamOptions:
    max_subscriptions: int = 500  # symbols per connection
    max_message_bytes: int = 64 * 1024  # one client message; 500 symbols need ~15 KiB
    max_clients: int = 10_000  # connections per worker; more are closed with 1013
    # A slow client: ticks/orderbook/stats/forming bars are conflated per symbol (latest
    # wins); it is closed once more than ``max_pending`` other messages wait for it, or
    # once it has been behind (queue never drained) for ``max_lag`` seconds.
    max_pending: int = 5000  # ~2 MB of bars; a minute boundary can close 8 timeframes at once
    max_lag: float = 10.0
    sweep_interval: float = 1.0  # lag watchdog and metric flush period
    # SO_SNDBUF per client socket. None: the kernel's autotuning, which lets a client that
    # stopped reading park up to tcp_wmem's maximum (often 4 MiB) in the kernel before
    # the queue above even notices. A bound makes slow clients visible sooner.
    send_buffer_bytes: int | None = None
    # Database work for WS requests (symbol checks, snapshots, get_latest) at once per
    # worker: the request pool is shared with REST, which must not starve.
    max_db_requests: int = 4
    # How live messages and replies reach the socket:
    # - "direct": frames are collected per client while the hub dispatches, then written
    #   with one transport.write per client per dispatch round; a client's queue and
    #   writer task are used only while its transport is backed up (the default);
    # - "task": everything goes through the client's queue and its writer task (the
    #   previous implementation; a bench baseline);
    # - "send": as "task", but one ``ws.send`` per message (the first implementation).
    write_path: str = "direct"
    # Direct writes stop while this much is buffered in the client's transport (beyond
    # what the kernel took): messages then queue, and conflate, for the writer task.
    direct_write_limit: int = 64 * 1024
    snapshot_on_subscribe: bool = True
    snapshot_timeframe: str = "1m"
    channel: str = LIVE_CHANNEL
    listen_backoff_initial: float = 0.2
    listen_backoff_max: float = 5.0
    listen_probe_interval: float = 5.0  # an idle LISTEN connection is checked this often
    startup_wait: float = 3.0  # how long start-up waits for the first LISTEN

    def __post_init__(self) -> None:
        for name in ("max_subscriptions", "max_message_bytes", "max_clients", "max_pending",
                     "max_db_requests"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"StreamOptions.{name} must be at least 1")
        for name in ("max_lag", "sweep_interval", "listen_backoff_initial",
                     "listen_backoff_max", "listen_probe_interval"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ValueError(f"StreamOptions.{name} must be positive")
        if self.write_path not in WRITE_PATHS:
            raise ValueError(f"StreamOptions.write_path must be one of {', '.join(WRITE_PATHS)}")
        if self.direct_write_limit < 1:
            raise ValueError("StreamOptions.direct_write_limit must be at least 1")


# The limits an operator may tune without code (MB_WS_MAX_SUBSCRIPTIONS=1000 ...).
_ENV_TUNABLE = ("max_subscriptions", "max_message_bytes", "max_clients", "max_pending",
                "max_lag", "send_buffer_bytes", "write_path")  # fmt: skip


def stream_options_from_env(environ: dict[str, str] | None = None) -> StreamOptions:
    env = environ if environ is not None else dict(os.environ)
    types = {f.name: f.type for f in fields(StreamOptions)}
    values: dict[str, int | float | str] = {}
    for name in _ENV_TUNABLE:
        key = ENV_PREFIX + name.upper()
        raw = env.get(key)
        if raw is None or not raw.strip():
            continue
        if types[name] == "str":
            values[name] = raw.strip()
            continue
        try:
            values[name] = float(raw) if types[name] == "float" else int(raw)  # int | None: int
        except ValueError:
            raise ValueError(f"{key}={raw!r} is not a number") from None
    try:
        return StreamOptions(**values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(f"{exc} (check the {ENV_PREFIX}* environment variables)") from None
