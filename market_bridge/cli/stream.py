"""`market-bridge stream`: run the streaming service (collectors) in the foreground.

For systemd and the like: it runs until SIGTERM/SIGINT, then stops the collectors and
flushes storage and live messages before exiting. main.py registers ``stream`` as the
``stream`` subcommand; ``python -m market_bridge.cli.stream`` runs it alone.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)


def stream(
    config: Path | None = typer.Option(
        None, "--config", "-c",
        help="collectors.yaml (default: $MB_COLLECTORS_CONFIG or ~/.market-bridge/collectors.yaml)",
    ),
    instance: str = typer.Option(
        "default", "--instance",
        help="Name of this streaming process; processes running at the same time on one "
             "machine need different names (it names the disk spool).",
    ),
    replay_feed: bool = typer.Option(
        False, "--replay-feed",
        help="The feed replays a past day (the simulator's --replay): accept ticks with old "
             "exchange timestamps instead of ignoring them as stale snapshots.",
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning, error"),
) -> None:
    """Run the collectors until SIGTERM/SIGINT (several processes share the work)."""
    from market_bridge.cli.db import start_database
    from market_bridge.config.collectors import ConfigError
    from market_bridge.db.dsn import mask_dsn
    from market_bridge.settings import load_settings
    from streaming.service import SpoolInUse, StreamingConfig, StreamingService, serve

    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        console.print(f"[red]error[/red]: --log-level {escape(log_level)!r} is not one of "
                      "debug, info, warning, error")
        raise typer.Exit(2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    dsn = start_database(settings)  # embedded cluster up and migrated (or DATABASE_URL)
    try:
        cfg = StreamingConfig.from_environment(
            config, instance, settings=settings, dsn=dsn, replay_feed=replay_feed
        )
    except ConfigError as exc:
        console.print(f"[red]error[/red]: {escape(str(exc))}")
        raise typer.Exit(1) from None
    except ValueError as exc:  # a bad --instance
        console.print(f"[red]error[/red]: --instance: {escape(str(exc))}")
        raise typer.Exit(2) from None
    service = StreamingService(cfg)
    collectors = cfg.collectors.names if cfg.collectors else []
    console.print(
        f"streaming {service.process_id}: database {escape(mask_dsn(dsn))}, feed {cfg.ws_root}"
        + (" (simulator credentials for collectors without their own)"
           if cfg.default_credentials else "")
        + f", config {cfg.collectors.path if cfg.collectors else '-'} "
        f"({len(collectors)} collector(s)), spool {cfg.spool_dir}; Ctrl-C to stop"
    )
    try:
        asyncio.run(serve(service))
    except SpoolInUse as exc:
        console.print(f"[red]error[/red]: {escape(str(exc))}")
        raise typer.Exit(1) from None
    console.print("streaming: stopped, everything flushed")


if __name__ == "__main__":
    from market_bridge.kite.credentials import load_env_file

    load_env_file()
    typer.run(stream)
