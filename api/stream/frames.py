"""Text frames built once, written many at a time, on Sanic's WebSocket.

``ws.send`` frames and writes one message per call: a lock, the protocol's framing and a
``transport.write`` (a syscall) per message per client, which is most of the fan-out's
cost with thousands of clients. Server-to-client frames are unmasked, so a live message's
frame is the same bytes for every subscriber: it is built once (``text_frame``), and a
writer that finds several frames pending writes them with one ``transport.write``, under
the same lock and back-pressure wait ``ws.send`` uses, after anything the protocol object
itself has queued (pongs, close).

That relies on attributes of Sanic's ``WebsocketImplProtocol`` (``conn_mutex``,
``ws_proto``, ``io_proto``) that are not documented API, and on no extension (compression)
being negotiated; otherwise each frame's payload goes through ``ws.send`` (correct, slower).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from sanic.exceptions import WebsocketClosed
from websockets.protocol import State

_FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked, unfragmented text frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((_FIN_TEXT, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", _FIN_TEXT, 126, n) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, n) + payload


def frame_payload(frame: bytes) -> bytes:
    n = frame[1] & 0x7F
    return frame[2 if n < 126 else 4 if n == 126 else 10 :]


def supports_raw_frames(ws: Any) -> bool:
    proto = getattr(ws, "ws_proto", None)
    return (
        all(hasattr(ws, name) for name in ("conn_mutex", "io_proto"))
        and proto is not None
        and not getattr(proto, "extensions", None)  # e.g. permessage-deflate: no raw frames
    )


async def send_frames(ws: Any, frames: Sequence[bytes], *, raw: bool) -> None:
    """Write text ``frames`` in order: at once when ``raw``, else one ``ws.send`` each."""
    if not raw:
        for frame in frames:
            await ws.send(frame_payload(frame).decode())  # str: a text frame
        return
    async with ws.conn_mutex:
        proto = ws.ws_proto
        if proto.state is not State.OPEN or ws.io_proto is None:
            raise WebsocketClosed("Cannot write to websocket interface after it is closed.")
        pending = proto.data_to_send()  # in the OPEN state: frames only, no end-of-stream
        await ws.io_proto.send(b"".join([*pending, *frames]))
