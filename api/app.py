"""The application factory.

``create_app`` builds a Sanic app with its pool (opened in a start-up listener), the
bar cache and its LISTEN connection, the trading calendar, error handlers, middleware
(timing, CORS, auth) and one Blueprint per resource. Every worker process calls it (see ``api.server``).
"""

from __future__ import annotations

import asyncio

from sanic import Sanic

from api.auth import install_auth
from api.bar_cache import install_bar_cache
from api.cors import install_cors
from api.dashboard import routes as dashboard
from api.db import register_pool_listeners
from api.errors import register_error_handlers
from api.instrumentation import install_instrumentation
from api.metrics import Registry
from api.options import ApiOptions, options_from_env
from api.routes import collectors, docs, health, intraday, metrics, watchlists
from market_bridge.db import database_url
from market_bridge.market.calendar import default_calendar
from market_bridge.settings import Settings, load_settings

DEFAULT_NAME = "market_bridge_api"


def create_app(
    settings: Settings | None = None,
    name: str | None = None,
    *,
    options: ApiOptions | None = None,
) -> Sanic:
    """A configured app. Tests pass a unique ``name`` (Sanic keeps a registry of apps)."""
    settings = settings if settings is not None else load_settings()
    options = options if options is not None else options_from_env()
    app = Sanic(name or DEFAULT_NAME)
    app.config.REQUEST_MAX_SIZE = options.request_max_size
    app.config.FALLBACK_ERROR_FORMAT = "json"
    if Sanic.test_mode:
        app.config.MOTD = False

    app.ctx.settings = settings
    app.ctx.options = options
    app.ctx.dsn = database_url(settings)
    app.ctx.metrics = Registry()

    register_error_handlers(app)
    register_pool_listeners(app)
    install_bar_cache(app)  # app.ctx.bar_cache: rendered bar answers, LISTEN mb_bars_changed

    @app.before_server_start
    async def load_calendar(app: Sanic) -> None:
        # The calendar package takes a moment to import and read: off the event loop.
        calendar = options.calendar
        app.ctx.calendar = calendar if calendar is not None else await asyncio.to_thread(
            default_calendar
        )

    install_instrumentation(app, app.ctx.metrics)
    install_cors(app, options.cors_origins)
    install_auth(app, settings.api_token)

    app.blueprint(intraday.bp)
    app.blueprint(watchlists.bp)
    app.blueprint(collectors.bp)
    app.blueprint(health.bp)
    app.blueprint(metrics.bp)
    app.blueprint(docs.bp)
    app.blueprint(dashboard.bp)  # GET / (web dashboard) and /dashboard/*
    # WS /stream/ws: the streaming hub's blueprint, and its LISTEN connection in a
    # before_server_start listener of its own (both registered by api.stream).
    from api.stream import install_stream

    install_stream(app)
    return app
