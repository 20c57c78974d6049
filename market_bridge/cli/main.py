"""`market-bridge`: one entry point, one subcommand per job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from market_bridge.cli.db import db_app
from market_bridge.cli.kite import kite_app
from market_bridge.settings import SettingsError

app = typer.Typer(
    name="market-bridge",
    help="Real-time market data for Indian markets on Zerodha Kite Connect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db_app, name="db")
app.add_typer(kite_app, name="kite")
config_app = typer.Typer(help="Validate configuration files.", no_args_is_help=True)
app.add_typer(config_app, name="config")

console = Console()
err = Console(stderr=True)

INSTALL_SCRIPT = Path(__file__).resolve().parents[1] / "setup" / "install_system.sh"


@app.command()
def setup(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only what changes."),
    browser: bool = typer.Option(True, help="Also install Chromium for browser tests."),
) -> None:
    """Install what the system needs: Debian packages, TimescaleDB, the DB's OS user,
    Chromium, the dashboard's chart library."""
    env = dict(os.environ, MB_QUIET="1" if quiet else "0", MB_WITH_BROWSER="1" if browser else "0")
    # System packages, TimescaleDB and Chromium; then the dashboard's chart library (npm).
    for script in (INSTALL_SCRIPT, INSTALL_SCRIPT.with_name("install_web.sh")):
        proc = subprocess.run(["bash", str(script)], env=env, check=False)
        if proc.returncode != 0:
            err.print(f"[red]setup failed[/red] in {script.name}: see the messages above")
            raise typer.Exit(proc.returncode)
    if not quiet:
        console.print("setup: everything is installed")


@app.command()
def migrate() -> None:
    """Apply pending schema migrations (same as `db migrate`)."""
    from market_bridge.cli.db import migrate_cmd

    migrate_cmd()


@config_app.command("check")
def config_check(
    path: Path | None = typer.Argument(None, help="collectors.yaml to check "
                                       "(default: $MB_COLLECTORS_CONFIG or ~/.market-bridge/collectors.yaml)"),
) -> None:
    """Validate a collectors.yaml; exit non-zero with file, line and key on an error."""
    from market_bridge.config.collectors import ConfigError, load_collectors_config

    try:
        cfg = load_collectors_config(path)
    except ConfigError as exc:
        err.print(f"[red]error[/red]: {escape(str(exc))}")
        raise typer.Exit(1) from None
    table = Table(title=f"{cfg.path}: {len(cfg.collectors)} collector(s), valid")
    for col in ("name", "mode", "auto_start", "watchlists", "symbols", "api_key", "access_token"):
        table.add_column(col)
    for c in cfg.collectors:
        table.add_row(c.name, c.mode, str(c.auto_start), ", ".join(c.watchlists),
                      ", ".join(c.symbols), c.masked_api_key, c.masked_access_token)
    console.print(table)


@app.command()
def api(
    host: str | None = typer.Option(None, help="Bind address (default MB_API_HOST, 127.0.0.1)."),
    port: int | None = typer.Option(None, min=1, max=65535,
                                    help="Port (default MB_API_PORT, 8080)."),
    workers: int | None = typer.Option(
        None, min=1, max=64,
        help="Sanic worker processes (default MB_API_WORKERS, 1; 2 on a 2-core machine "
             "cuts WebSocket fan-out latency for thousands of clients)."),
) -> None:
    """Serve the REST API and the WebSocket stream (Sanic)."""
    from api.server import serve

    serve(host, port, workers)


def _register_simulate() -> None:
    from market_bridge.cli.simulate import simulate_command

    app.command("simulate")(simulate_command)


_register_simulate()


def _register_system() -> None:
    from market_bridge.cli.run import run_command, status_command, stop_command
    from market_bridge.cli.stream import stream

    app.command("run")(run_command)
    app.command("status")(status_command)
    app.command("stop")(stop_command)
    app.command("stream")(stream)


_register_system()


def _register_flows() -> None:
    from market_bridge.cli.flows_cli import register

    register(app)


_register_flows()
flows_app = typer.Typer(help="Prefect flows and deployments.", no_args_is_help=True)
app.add_typer(flows_app, name="flows")


@flows_app.command("serve")
def flows_serve() -> None:
    """Serve every deployment (backfill, gap-fill, completeness, instruments-sync,
    maintenance, streaming) to the Prefect server at PREFECT_API_URL."""
    from flows.deployments import serve_deployments
    from streaming.flow import build_deployment

    # The long-running streaming deployment: started from the UI when collection should
    # run under Prefect (make run supervises `market-bridge stream` directly instead).
    serve_deployments(extra=[build_deployment()])


def main() -> None:
    from market_bridge.cli.flows_cli import normalize_single_dash
    from market_bridge.kite.credentials import load_env_file

    load_env_file()
    try:
        app(args=normalize_single_dash(sys.argv[1:]))
    except SettingsError as exc:
        err.print(f"[red]error[/red]: {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
