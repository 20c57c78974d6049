"""`market-bridge db ...`: the embedded TimescaleDB cluster and migrations."""

from __future__ import annotations

import typer
from rich.console import Console

from market_bridge.db import database_url, embedded_cluster, ensure_database
from market_bridge.db.cluster import ClusterError
from market_bridge.db.dsn import mask_dsn
from market_bridge.db.migrate import MigrationError, migrate
from market_bridge.settings import Settings, load_settings

db_app = typer.Typer(help="The embedded TimescaleDB cluster (or DATABASE_URL).",
                     no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def start_database(settings: Settings, quiet: bool = True) -> str:
    """Start the embedded cluster (unless DATABASE_URL is set), create the DB, migrate."""
    if settings.db.embedded:
        cluster = embedded_cluster(settings)
        try:
            before = cluster.status().running
            status = cluster.start()
            ensure_database(cluster.dsn("postgres"), settings.db.name)
        except ClusterError as exc:
            err.print(f"[red]database[/red]: {exc}")
            raise typer.Exit(1) from None
        if not quiet:
            verb = "already running" if before else "started"
            console.print(f"database: {verb} (pid {status.pid}, port {status.port}, "
                          f"data {status.data_dir})")
    url = database_url(settings)
    try:
        applied = migrate(url)
    except (MigrationError, OSError) as exc:
        err.print(f"[red]migrate[/red]: {exc}")
        raise typer.Exit(1) from None
    except Exception as exc:  # psycopg errors: say which server and why
        err.print(f"[red]migrate[/red]: cannot migrate {mask_dsn(url)}: {exc}")
        raise typer.Exit(1) from None
    if applied and not quiet:
        console.print(f"migrate: applied {', '.join(applied)}")
    return url


@db_app.command("start")
def start_cmd() -> None:
    """Initialise (first time) and start the local cluster, create the DB and migrate."""
    settings = load_settings()
    if not settings.db.embedded:
        err.print("DATABASE_URL is set: nothing to start; migrating that server")
    start_database(settings, quiet=False)


@db_app.command("stop")
def stop_cmd() -> None:
    """Stop the local cluster."""
    settings = load_settings()
    if not settings.db.embedded:
        err.print("DATABASE_URL is set: the embedded cluster is not used")
        raise typer.Exit(1)
    try:
        embedded_cluster(settings).stop()
    except ClusterError as exc:
        err.print(f"[red]database[/red]: {exc}")
        raise typer.Exit(1) from None
    console.print("database: stopped")


@db_app.command("status")
def status_cmd() -> None:
    """Is the local cluster running? (exit 1 when not)"""
    settings = load_settings()
    if not settings.db.embedded:
        console.print(f"external database: {mask_dsn(settings.db.external_url or '')}")
        return
    st = embedded_cluster(settings).status()
    if st.running:
        console.print(f"database: running (pid {st.pid}, port {st.port}, data {st.data_dir})")
    else:
        console.print(f"database: stopped (data {st.data_dir})")
        raise typer.Exit(1)


@db_app.command("url")
def url_cmd() -> None:
    """Print the DSN everything uses (DATABASE_URL or the local cluster's)."""
    typer.echo(database_url(load_settings()))


@db_app.command("migrate")
def migrate_cmd() -> None:
    """Apply pending migrations from sql/migrations (idempotent)."""
    url = database_url(load_settings())
    try:
        applied = migrate(url)
    except MigrationError as exc:
        err.print(f"[red]migrate[/red]: {exc}")
        raise typer.Exit(1) from None
    except Exception as exc:
        err.print(f"[red]migrate[/red]: cannot migrate {mask_dsn(url)}: {exc}")
        raise typer.Exit(1) from None
    console.print(f"migrate: applied {', '.join(applied)}" if applied else "migrate: up to date")
