"""``WS /stream/ws``: one ``ClientSession`` per connection, served by this worker's hub."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.server.websockets.impl import WebsocketImplProtocol

from api.stream.hub import StreamHub
from api.stream.session import ClientSession

bp = Blueprint("stream", url_prefix="/stream")


@bp.websocket("/ws")
async def stream_ws(request: Request, ws: WebsocketImplProtocol) -> None:
    hub: StreamHub = request.app.ctx.stream_hub
    await ClientSession(hub, ws, request.app).serve()
