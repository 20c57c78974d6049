"""The Kite Ticker side: the handshake gate, one task pair per connection, faults.

Per connection a receive loop applies subscribe/unsubscribe/mode messages (answering with
a snapshot of what changed, or error texts) and a pump sends the due snapshot slots as
binary frames, a 1-byte heartbeat after ``heartbeat_seconds`` of silence, garbage during a
``garbage`` fault and nothing at all during a ``stall``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import date
from typing import Any

from sanic import Request
from sanic.response import HTTPResponse, json
from websockets.exceptions import ConnectionClosed

from market_bridge.kite.codec import encode_heartbeat, encode_text
from market_bridge.kite.simulator.faults import FaultName
from market_bridge.kite.simulator.feed import GARBAGE_FRAMES, Pacer, frames
from market_bridge.kite.simulator.protocol import Subscriptions
from market_bridge.kite.simulator.sessions import ist_date
from market_bridge.kite.simulator.state import SimState

_GARBAGE_INTERVAL = 0.2
_ids = itertools.count(1)


class Connection:
    def __init__(self, state: SimState, ws: Any, api_key: str, peer: str) -> None:
        cfg = state.config
        self.id = next(_ids)
        self.state = state
        self.ws = ws
        self.api_key = api_key
        self.peer = peer
        self.subs = Subscriptions(state.universe.__contains__, cfg.max_tokens_per_connection)
        self.pacer = Pacer(cfg.tick_rate, state.clock.now())
        self.wake = asyncio.Event()
        self.connected_at = state.wall()
        self.last_sent = self.connected_at
        self.ticks_sent = 0
        self.frames_sent = 0
        self._warm: tuple[date, int] | None = None

    def describe(self) -> dict[str, Any]:
        modes: dict[str, int] = {}
        for mode in self.subs.modes.values():
            modes[mode] = modes.get(mode, 0) + 1
        return {
            "id": self.id,
            "api_key": self.api_key,
            "peer": self.peer,
            "connected_for": round(self.state.wall() - self.connected_at, 3),
            "subscriptions": len(self.subs),
            "modes": modes,
            "ticks_sent": self.ticks_sent,
            "frames_sent": self.frames_sent,
        }

    def abort(self) -> None:
        """Cut the TCP connection without a close handshake (what a network drop looks like)."""
        io = getattr(self.ws, "io_proto", None)
        transport = getattr(io, "transport", None)
        if transport is not None:
            transport.abort()

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake early when poked (fault started, subscriptions changed, stop)."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), seconds)
        self.wake.clear()

    async def send_binary(self, data: bytes, packets: int = 0) -> None:
        await self.ws.send(data)
        self.last_sent = self.state.wall()
        counters = self.state.counters
        counters.bytes_sent += len(data)
        if packets:
            self.ticks_sent += packets
            self.frames_sent += 1
            counters.ticks_sent += packets
            counters.frames_sent += 1

    async def send_text(self, kind: str, data: Any) -> None:
        await self.ws.send(encode_text(kind, data))  # type: ignore[arg-type]
        self.last_sent = self.state.wall()

    async def warm(self, day: date) -> None:
        """Build missing day plans in a worker thread, so big subscriptions (or midnight in
        the always-open session) never freeze the event loop."""
        key = (day, self.subs.version)
        if self._warm == key:
            return
        model = self.state.model
        missing = [t for t in self.subs.modes if not model.has_plan(t, day)]
        if missing and model.session.window(day) is not None:
            await asyncio.to_thread(model.warm, missing, day)
        self._warm = key


# ---- handshake ------------------------------------------------------------------------------


def _is_upgrade(request: Request) -> bool:
    return request.headers.get("upgrade", "").lower() == "websocket"


def ws_gate(state: SimState, request: Request) -> HTTPResponse | None:
    """Answer the WebSocket path before any upgrade: 403 for bad credentials (as Kite),
    503 while a drop fault refuses connections, a small JSON note for plain GET /."""
    if request.path != "/":
        return None
    if not _is_upgrade(request):
        return json({"status": "success", "data": state.status()["clock"]})
    if state.fault_active("drop"):
        state.counters.connections_refused += 1
        return json(
            {"status": "error", "message": "Service unavailable (simulated drop)",
             "error_type": "NetworkException"}, status=503,
        )  # fmt: skip
    api_key = request.args.get("api_key")
    token = request.args.get("access_token")
    if not state.auth.is_valid(api_key, token, state.expired_since()):
        state.counters.connections_refused += 1
        return json(
            {"status": "error", "message": "Incorrect `api_key` or `access_token`.",
             "error_type": "TokenException"}, status=403,
        )  # fmt: skip
    return None


# ---- connection -----------------------------------------------------------------------------


async def serve_connection(state: SimState, request: Request, ws: Any) -> None:
    cfg = state.config
    api_key = request.args.get("api_key") or ""
    if state.connections_for(api_key) >= cfg.max_connections_per_key:
        state.counters.connections_refused += 1
        with contextlib.suppress(Exception):
            await ws.send(
                encode_text(
                    "error",
                    f"Maximum of {cfg.max_connections_per_key} WebSocket connections per "
                    "api_key exceeded",
                )
            )
            await ws.close(code=1008, reason="too many connections")
        return
    conn = Connection(state, ws, api_key, f"{request.ip}:{request.port}")
    state.connections[conn.id] = conn
    state.counters.connections_total += 1
    pump_task = asyncio.create_task(pump(state, conn))
    try:
        while True:
            message = await ws.recv()
            if message is None:
                continue
            await on_message(state, conn, message)
    except (ConnectionClosed, asyncio.CancelledError):
        pass
    finally:
        pump_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump_task
        state.connections.pop(conn.id, None)


def _silent(state: SimState) -> bool:
    return state.fault_active("stall") or state.fault_active("garbage")


async def on_message(state: SimState, conn: Connection, message: str | bytes) -> None:
    if isinstance(message, bytes | bytearray) and not message.strip().startswith(b"{"):
        outcome_errors = ["invalid message: send JSON text"]
        changed: list[int] = []
    else:
        outcome = conn.subs.handle(message)
        outcome_errors, changed = outcome.errors, outcome.changed
    conn.wake.set()
    if _silent(state):
        return  # a stalled or garbled feed answers nothing
    for error in outcome_errors:
        await conn.send_text("error", error)
    if changed:
        # Kite sends the current state of new subscriptions straight away. "Current" is the
        # last second the pump streamed, so this connection's ticks never go back in time.
        second = conn.pacer.last_second()
        window, _ = state.session.last_traded(second)
        await conn.warm(window.day)
        modes = conn.subs.modes
        packets = [state.packets.latest(t, second, modes[t]) for t in changed if t in modes]
        for frame, count in frames(packets):
            await conn.send_binary(frame, count)


async def pump(state: SimState, conn: Connection) -> None:
    cfg = state.config
    clock = state.clock
    max_slots = max(1, int(cfg.tick_rate * clock.speed * cfg.max_backlog_seconds))
    garbage = itertools.cycle(GARBAGE_FRAMES)
    while True:
        now = state.wall()
        stall_end = state.faults.ends_at("stall", now)
        if stall_end is not None:
            await conn.sleep(min(stall_end - now, 0.25))
            conn.pacer.skip_to(clock.now())  # resume with the present, no backlog burst
            continue
        if state.fault_active("garbage"):
            await conn.send_binary(next(garbage))
            state.counters.garbage_frames_sent += 1
            await conn.sleep(_GARBAGE_INTERVAL)
            conn.pacer.skip_to(clock.now())
            continue

        due = conn.pacer.due(clock.now(), max_slots)
        if due and conn.subs.modes:
            await conn.warm(ist_date(due[-1][0]))
            subs = list(conn.subs.modes.items())
            packets: list[bytes] = []
            for second, repeats in due:
                batch = state.packets.packets(subs, second)
                packets.extend(batch * repeats if repeats > 1 else batch)
            for frame, count in frames(packets):
                await conn.send_binary(frame, count)
        now = state.wall()
        idle = now - conn.last_sent
        if idle >= cfg.heartbeat_seconds:
            await conn.send_binary(encode_heartbeat())
            state.counters.heartbeats_sent += 1
            idle = 0.0
        wait = clock.wall_seconds(conn.pacer.next_time() - clock.now()) + 0.001
        wait = min(wait, cfg.heartbeat_seconds - idle)
        await conn.sleep(max(cfg.min_batch_seconds, wait))


# ---- faults ---------------------------------------------------------------------------------


def start_fault(state: SimState, name: FaultName, seconds: float | None) -> None:
    state.faults.start(name, seconds, state.wall())
    if name == "drop":
        for conn in list(state.connections.values()):
            conn.abort()
    for conn in state.connections.values():
        conn.wake.set()


def clear_faults(state: SimState, name: FaultName | None = None) -> None:
    state.faults.clear(name)
    for conn in state.connections.values():
        conn.wake.set()
