"""``market-bridge api`` entry point: ``serve(host, port, workers)``.

Workers are separate processes: each builds its own app through the factory (AppLoader),
with its own pool and LISTEN connection. Binds to localhost unless told otherwise.
"""

from __future__ import annotations

from functools import partial

from sanic import Sanic
from sanic.worker.loader import AppLoader

from api.app import DEFAULT_NAME, create_app
from market_bridge.settings import load_settings


def serve(
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    *,
    access_log: bool = False,
) -> None:
    """Run the API until interrupted. ``host``/``port``/``workers`` default to
    MB_API_HOST/MB_API_PORT/MB_API_WORKERS (127.0.0.1:8080, 1 worker)."""
    settings = load_settings()
    loader = AppLoader(factory=partial(create_app, settings, DEFAULT_NAME))
    app = loader.load()
    app.prepare(
        host=host or settings.api_host,
        port=port if port is not None else settings.api_port,
        workers=max(1, workers if workers is not None else settings.api_workers),
        access_log=access_log,
        single_process=False,
    )
    Sanic.serve(primary=app, app_loader=loader)
