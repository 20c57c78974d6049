"""`market-bridge run | status | stop`: the whole system on one machine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from market_bridge.settings import Settings, load_settings
from market_bridge.supervisor import Child, Supervisor, market_bridge_argv, running_supervisor

console = Console()
err = Console(stderr=True)
EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "collectors.example.yaml"


def _prefect_env(settings: Settings) -> dict[str, str]:
    return {
        "PREFECT_HOME": str(settings.home / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{settings.prefect_port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_URL": f"http://127.0.0.1:{settings.prefect_port}",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }


def _children(settings: Settings, use_sim: bool) -> list[Child]:
    py = sys.executable
    prefect = shutil.which("prefect", path=str(Path(py).parent)) or "prefect"
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    sim_url = f"http://{settings.sim_host}:{settings.sim_port}"
    kids: list[Child] = []
    if use_sim:
        kids.append(Child("simulator", market_bridge_argv(
            "simulate", "--host", settings.sim_host, "--port", str(settings.sim_port)),
            url=sim_url, health_url=f"{sim_url}/sim/status", component="simulator"))
    kids += [
        # The collectors resolve symbols through md.instruments: fill it before they start.
        Child("instruments-sync", market_bridge_argv("instruments", "sync"),
              component="streaming", after=("simulator",) if use_sim else (), oneshot=True),
        Child("prefect", [prefect, "server", "start", "--host", "127.0.0.1", "--port",
                          str(settings.prefect_port)],
              url=f"http://127.0.0.1:{settings.prefect_port}",
              health_url=f"http://127.0.0.1:{settings.prefect_port}/api/health",
              component="prefect"),
        Child("flows", market_bridge_argv("flows", "serve"), component="prefect",
              after=("prefect",)),
        Child("streaming", market_bridge_argv("stream"), component="streaming",
              after=("instruments-sync",)),
        Child("api", market_bridge_argv("api"), url=api_url, health_url=f"{api_url}/health",
              component="api"),
    ]
    return kids


def run_command() -> None:
    """Bring the whole system up and keep it running (Ctrl-C or `market-bridge stop` ends it)."""
    from market_bridge.cli.db import start_database
    from market_bridge.db import embedded_cluster
    from market_bridge.db.dsn import mask_dsn
    from market_bridge.kite import credentials
    from market_bridge.kite.simulator import DEFAULT_ACCESS_TOKEN, DEFAULT_API_KEY

    settings = load_settings()
    pid = running_supervisor(settings)
    if pid is not None:
        console.print(f"Market Bridge is already running (supervisor pid {pid}); reusing it.")
        _print_status(settings)
        return
    db_was_running = settings.db.embedded and embedded_cluster(settings).status().running
    dsn = start_database(settings, quiet=False)
    c = credentials.from_env()
    use_sim = not c.complete
    env = dict(os.environ, **_prefect_env(settings))
    if use_sim:
        sim = f"{settings.sim_host}:{settings.sim_port}"
        env.update(KITE_API_ROOT=f"http://{sim}", KITE_WS_ROOT=f"ws://{sim}",
                   ZERODHA_API_KEY=DEFAULT_API_KEY, ZERODHA_ACCESS_TOKEN=DEFAULT_ACCESS_TOKEN)
    config = Path(os.environ.get("MB_COLLECTORS_CONFIG") or settings.home / "collectors.yaml")
    if not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(EXAMPLE_CONFIG, config)
        console.print(f"created {config} from the example (collectors on NIFTY50, BANKNIFTY)")
    cluster = embedded_cluster(settings) if settings.db.embedded else None
    database = {"state": "running", "url": mask_dsn(dsn),
                "pid": cluster.status().pid if cluster else None, "restarts": 0}

    def ready() -> None:
        api = f"http://{settings.api_host}:{settings.api_port}"
        if use_sim:
            console.print("[bold yellow on red] SIMULATED DATA [/] no Kite credentials are "
                          "configured: collecting from the local Kite simulator at "
                          f"http://{settings.sim_host}:{settings.sim_port}. Run `market-bridge "
                          "kite login` (with ZERODHA_API_KEY/ZERODHA_API_SECRET) for real data.")
        console.print(f"API        {api}\nAPI docs   {api}/docs\nWebSocket  "
                      f"ws://{settings.api_host}:{settings.api_port}/stream/ws\n"
                      f"Prefect UI http://127.0.0.1:{settings.prefect_port}")
        _print_status(settings)
        console.print("live ticks are flowing; Ctrl-C or `market-bridge stop` stops everything")

    sup = Supervisor(
        settings=settings, children=_children(settings, use_sim), env=env, database=database,
        log=lambda m: console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {m}"),
        stop_database=(cluster.stop if cluster is not None and not db_was_running else None),
    )
    sup.run(on_ready=ready)


def _load_status(settings: Settings) -> dict[str, dict[str, object]] | None:
    path = settings.run_dir / "status.json"
    if running_supervisor(settings) is None or not path.exists():
        return None
    data: dict[str, dict[str, object]] = json.loads(path.read_text())
    return data


def _print_status(settings: Settings) -> None:
    data = _load_status(settings)
    table = Table(title="Market Bridge")
    for col in ("component", "state", "url", "pid", "restarts"):
        table.add_column(col)
    for key in ("database", "simulator", "prefect", "streaming", "api"):
        row = (data or {}).get(key, {"state": "stopped"})
        table.add_row(key, str(row.get("state")), str(row.get("url") or "-"),
                      str(row.get("pid") or "-"), str(row.get("restarts", 0)))
    console.print(table)


def _database_only(settings: Settings) -> dict[str, object]:
    """The embedded database can run without the rest (`db start`)."""
    from market_bridge.db import embedded_cluster

    if not settings.db.embedded:
        return {"state": "external", "url": None, "pid": None, "restarts": 0}
    st = embedded_cluster(settings).status()
    return {"state": "running" if st.running else "stopped", "url": None, "pid": st.pid,
            "restarts": 0}


def status_command(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable: state, url, pid."),
) -> None:
    """What runs: each component's state, URL, process id and restart count."""
    settings = load_settings()
    data = _load_status(settings)
    if as_json:
        keys = ("api", "database", "prefect", "simulator", "streaming")
        if data is None:
            data = {k: {"state": "stopped", "url": None, "pid": None, "restarts": 0}
                    for k in keys}
            data["database"] = _database_only(settings)
        typer.echo(json.dumps({k: data.get(k) for k in keys}, indent=2))
        return
    if data is None:
        console.print("Market Bridge is not running (start it with `make run`)")
        raise typer.Exit(1)
    _print_status(settings)


def stop_command(
    timeout: float = typer.Option(60.0, help="Seconds to wait for a clean stop."),
) -> None:
    """Stop everything `make run` started, cleanly (streaming flushes first)."""
    settings = load_settings()
    pid = running_supervisor(settings)
    if pid is None:
        console.print("Market Bridge is not running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running_supervisor(settings) is not None:
        if time.monotonic() > deadline:
            err.print(f"supervisor {pid} still running after {timeout:.0f}s")
            raise typer.Exit(1)
        time.sleep(0.2)
    console.print("stopped")
