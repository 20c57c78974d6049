"""Live market data to WebSocket clients: ``WS /stream/ws`` (protocol in docs/websocket.md).

- ``protocol``: client requests and server messages (pure)
- ``queue``: a client's bounded, conflating outgoing queue (pure)
- ``registry``: symbol subscriptions (pure)
- ``frames``: WebSocket frames built once per message and written in batches
- ``latest``: stored latest tick/bar as live-shaped messages (snapshot, get_latest)
- ``session``: one connection (reader + writer task); ``hub``: LISTEN and fan-out per
  worker; ``routes``: the blueprint.

``install_stream(app)`` registers the route and the hub's start-up/shutdown listeners.
Options come from ``app.ctx.stream_options`` when set before the server starts (tests),
else from ``MB_WS_*`` environment variables.
"""

from __future__ import annotations

from sanic import Sanic

from api.stream.hub import StreamHub
from api.stream.options import StreamOptions, stream_options_from_env
from api.stream.routes import bp

__all__ = ["StreamHub", "StreamOptions", "install_stream"]


def install_stream(app: Sanic) -> None:
    app.blueprint(bp)

    @app.before_server_start
    async def start_stream_hub(app: Sanic) -> None:
        options = getattr(app.ctx, "stream_options", None) or stream_options_from_env()
        app.ctx.stream_hub = StreamHub(app.ctx.dsn, options, app.ctx.metrics)
        await app.ctx.stream_hub.start()

    @app.before_server_stop
    async def stop_stream_hub(app: Sanic) -> None:
        hub = getattr(app.ctx, "stream_hub", None)
        if hub is not None:
            await hub.stop()
