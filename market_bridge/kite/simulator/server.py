"""One Sanic server on one port: Kite Ticker WebSocket at ``/`` and the REST API at the root.

Sanic rather than bare ``websockets``: websockets' HTTP side refuses request bodies, and
Kite needs them (``POST /session/token`` is a form). Sanic serves HTTP and WebSocket routes
on one socket, lets a request middleware answer an upgrade with 403 before the handshake,
and applies write back-pressure on WebSocket sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from dataclasses import replace
from typing import Any

from sanic import Request, Sanic
from sanic.response import HTTPResponse

from market_bridge.kite.simulator.config import SimConfig
from market_bridge.kite.simulator.faults import FaultName
from market_bridge.kite.simulator.rest import install_rest
from market_bridge.kite.simulator.sessions import ist_date
from market_bridge.kite.simulator.state import SimState
from market_bridge.kite.simulator.ws import clear_faults, serve_connection, start_fault, ws_gate

_app_ids = itertools.count(1)
_WARM_EVERY = 10.0  # wall seconds between plan checks
_WARM_LOOKAHEAD = 120.0  # simulated seconds ahead to look for the next session


def build_app(state: SimState) -> Sanic:
    # Sanic keeps a process-wide registry of apps by name: one unique name per simulator.
    app = Sanic(f"mb_kite_sim_{next(_app_ids)}", configure_logging=False)
    app.config.update(
        {
            "ACCESS_LOG": False,
            # Kite's server sends no pings, and a stalled feed must be completely silent.
            "WEBSOCKET_PING_INTERVAL": None,
            "WEBSOCKET_PING_TIMEOUT": None,
            "WEBSOCKET_MAX_SIZE": 1 << 20,
            "KEEP_ALIVE_TIMEOUT": 15,
            "NOISY_EXCEPTIONS": False,
            # Touch-up rewrites methods on the Sanic class itself at start-up; the second app
            # started in one process then fails. It is only a small speed-up: off.
            "TOUCHUP": False,
        }
    )

    @app.on_request
    async def gate(request: Request) -> HTTPResponse | None:
        state.counters.rest_requests += request.path != "/"
        return ws_gate(state, request)

    @app.websocket("/")
    async def ticker(request: Request, ws: Any) -> None:
        await serve_connection(state, request, ws)

    install_rest(app, state)
    return app


class Simulator:
    """The Kite simulator, in-process: ``await start()``, use ``port``, ``await stop()``.

    ``Simulator(port=0, tick_rate=5)`` overrides :class:`SimConfig` defaults.
    """

    def __init__(self, config: SimConfig | None = None, **overrides: Any) -> None:
        self.config = replace(config or SimConfig(), **overrides)
        self.host = self.config.host
        self.port = self.config.port
        self._state: SimState | None = None
        self._app: Sanic | None = None
        self._server: Any = None
        self._warmer: asyncio.Task[None] | None = None

    @property
    def state(self) -> SimState:
        if self._state is None:
            raise RuntimeError("simulator not started")
        return self._state

    @property
    def url(self) -> str:
        """Root for ``KiteConnect(api_key, root=...)``."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """Root for ``KiteTicker(api_key, access_token, root=...)``."""
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> None:
        # Building the universe imports the watchlists and sizes every instrument: a few
        # hundred ms, fine once per start.
        self._state = state = await asyncio.to_thread(SimState, self.config)
        self._app = app = build_app(state)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.config.port))
            sock.listen(256)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        server = await app.create_server(sock=sock, access_log=False, return_asyncio_server=True)
        if server is None:
            raise RuntimeError("Sanic did not create a server")
        await server.startup()
        await server.before_start()
        await server.after_start()
        self._server = server
        # A replay starts, and start-up faults run, from the moment we serve.
        state.clock.restart()
        for name, seconds in self.config.faults:
            start_fault(state, name, seconds)
        self._warmer = asyncio.create_task(self._warm_loop())

    async def _warm_loop(self) -> None:
        """Keep day plans ahead of need: today's and, shortly before it starts, the next
        session's, for every subscribed token (every token with ``prewarm``). Plans take
        milliseconds each, so a new day would otherwise pause big subscriptions."""
        state = self.state
        while True:
            sim_now = state.clock.now()
            lookahead = sim_now + _WARM_LOOKAHEAD * state.clock.speed
            days = {ist_date(sim_now), ist_date(lookahead)}
            if self.config.prewarm:
                tokens: set[int] = set(state.universe.by_token)
            else:
                tokens = {t for c in state.connections.values() for t in c.subs.modes}
            model = state.model
            for day in sorted(days):
                missing = [t for t in tokens if not model.has_plan(t, day)]
                if missing and state.session.window(day) is not None:
                    await asyncio.to_thread(model.warm, missing, day)
            await asyncio.sleep(_WARM_EVERY)

    async def stop(self) -> None:
        state, server, app = self._state, self._server, self._app
        if self._warmer is not None:
            self._warmer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._warmer
            self._warmer = None
        if state is not None:
            for conn in list(state.connections.values()):
                conn.abort()
        if server is not None:
            with contextlib.suppress(Exception):
                await server.before_stop()
            closing = server.close()
            if closing is not None:
                await closing
            # Like Sanic's own shutdown: close idle keep-alive connections, abort stragglers.
            for conn in list(server.connections):
                conn.close_if_idle()
            for _ in range(20):
                if not server.connections:
                    break
                await asyncio.sleep(0.025)
            for conn in list(server.connections):
                with contextlib.suppress(Exception):
                    conn.abort()
            with contextlib.suppress(Exception):
                await server.after_stop()
        if app is not None:
            for task in list(app.websocket_tasks):
                task.cancel()
            Sanic.unregister_app(app)
        self._server = self._app = None

    # ---- control (call from the simulator's event loop) -------------------------------

    def fault(self, name: FaultName, seconds: float | None = None) -> None:
        start_fault(self.state, name, seconds)

    def clear_faults(self, name: FaultName | None = None) -> None:
        clear_faults(self.state, name)

    def banner(self) -> str:
        cfg, state = self.config, self.state
        lines = [
            f"Kite simulator on {self.url} (REST) and {self.ws_url} (Ticker)",
            f"  api_key={cfg.api_key} access_token={cfg.access_token} api_secret={cfg.api_secret}",
            f"  instruments: {len(state.universe)} ({', '.join(state.universe.exchanges)}), "
            f"seed {cfg.seed}, tick rate {cfg.tick_rate:g}/s per instrument",
            f"  clock: {state.clock.describe()}",
        ]
        if state.session.kind == "always":
            lines.append("  session: ALWAYS OPEN - live ticks at any hour, every day "
                         "(--session nse for NSE hours)")  # fmt: skip
        else:
            lines.append("  session: NSE hours 09:15-15:30 IST on trading days")
        faults = state.faults.active(state.wall())
        if faults:
            lines.append("  faults: " + ", ".join(f.name for f in faults))
        return "\n".join(lines)
