"""Text frames built once, written many at a time, on Sanic's WebSocket.

Two write paths, both writing only whole frames:

- ``write_now``: the hub's fan-out. Frames for a client collected during one dispatch round
  go to its transport with one ``transport.write``, from the broadcaster itself, when the
  connection allows it right now (open, no send of Sanic's own in progress, not backed
  up). Otherwise the caller queues them for the client's writer task.
- ``send_frames``: the writer task (a client that is backed up), as below.

``ws.send`` frames and writes one message per call: a lock, the protocol's framing and a
``transport.write`` (a syscall) per message per client, which is most of the fan-out's
cost with thousands of clients. Server-to-client frames are unmasked, so a live message's
frame is the same bytes for every subscriber: it is built once (``text_frame``). The
writer task writes all the frames it finds pending with one ``transport.write``, under
the same lock and back-pressure wait ``ws.send`` uses, after anything the protocol object
itself has queued (pongs, close).

Both rely on attributes of Sanic's ``WebsocketImplProtocol`` (``conn_mutex``,
``ws_proto``, ``io_proto``) that are not documented API, and on no extension (compression)
being negotiated; otherwise there are no direct writes and each frame's payload goes
through ``ws.send`` (correct, slower).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from typing import Any

from sanic.exceptions import WebsocketClosed
from websockets.protocol import State

_FIN_TEXT = 0x81
OPEN = State.OPEN


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


class Direct(enum.Enum):
    WRITTEN = "written"
    LATER = "later"  # backed up, or a send of Sanic's own is in progress: use the writer task
    CLOSED = "closed"  # closing or closed: nothing more may be sent


def write_now(ws: Any, transport: Any, frames: Sequence[bytes], limit: int) -> Direct:
    """Write whole text ``frames`` to ``ws``'s ``transport`` if the connection allows it now.

    What Sanic's ``send`` would require, without waiting: the WebSocket is OPEN (after a
    close frame no data frame may follow), no fragmented message is being sent, no
    coroutine holds the connection's send lock (a ping, a close, our writer: it may be
    waiting for the transport, and its frame must not be overtaken), and less than
    ``limit`` bytes wait in the transport's buffer (beyond that the client is backed up:
    the caller queues, which conflates, and the writer task waits for the transport
    like ``ws.send``). Anything the protocol object itself has pending goes first.
    """
    proto = ws.ws_proto
    if proto.state is not OPEN or transport.is_closing():
        return Direct.CLOSED
    if (ws.conn_mutex.locked() or proto.expect_continuation_frame
            or transport.get_write_buffer_size() >= limit):  # fmt: skip
        return Direct.LATER
    if proto.writes:  # normally empty: Sanic sends what the protocol produces at once
        transport.write(b"".join([*proto.data_to_send(), *frames]))
    elif len(frames) == 1:
        transport.write(frames[0])
    else:
        transport.write(b"".join(frames))
    return Direct.WRITTEN


def transport_of(ws: Any) -> Any:
    """The connection's transport, when frames may be written to it directly."""
    io = getattr(ws, "io_proto", None)
    return getattr(io, "transport", None) if supports_raw_frames(ws) else None


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
