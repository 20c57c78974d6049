"""`market-bridge simulate`: run the local Kite simulator (Ticker WebSocket + REST, one port).

The command function is ``simulate_command``; ``main.py`` registers it with
``app.command("simulate")(simulate_command)``. ``python -m market_bridge.cli.simulate``
runs it standalone.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from datetime import date, datetime

import typer
from rich.console import Console

from market_bridge.kite.simulator.config import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_HOST,
    DEFAULT_PORT,
    SimConfig,
)
from market_bridge.kite.simulator.faults import FaultError, FaultName, parse_fault
from market_bridge.kite.simulator.sessions import SESSION_KINDS

err = Console(stderr=True)


def _replay_start(value: str) -> date | datetime:
    """``YYYY-MM-DD`` (from the session open) or ``YYYY-MM-DDTHH:MM[:SS]`` (IST)."""
    text = value.strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM (IST)"
        ) from None


def _trading_days() -> Callable[[date], bool] | None:
    """The NSE calendar (holidays included), or None (Mon-Fri) if it cannot be loaded."""
    try:
        from market_bridge.market.calendar import default_calendar

        return default_calendar().is_trading_day
    except Exception as exc:  # the simulator still runs on plain weekdays
        err.print(f"[yellow]warning[/yellow]: NSE calendar unavailable ({exc}); using Mon-Fri")
        return None


def simulate_command(
    host: str = typer.Option(DEFAULT_HOST, envvar="MB_SIM_HOST", help="Address to bind."),
    port: int = typer.Option(DEFAULT_PORT, envvar="MB_SIM_PORT", help="Port (0 = any free)."),
    api_key: str = typer.Option(DEFAULT_API_KEY, help="Accepted api_key."),
    access_token: str = typer.Option(DEFAULT_ACCESS_TOKEN, help="Accepted access_token."),
    api_secret: str = typer.Option(DEFAULT_API_SECRET, help="Secret for POST /session/token."),
    session: str | None = typer.Option(
        None,
        help="always (open at any hour; default) or nse (09:15-15:30 IST on trading "
        "days; default when replaying).",
    ),  # fmt: skip
    replay: str | None = typer.Option(
        None, help="Replay a trading day: YYYY-MM-DD (from 09:15) or YYYY-MM-DDTHH:MM (IST)."
    ),
    speed: float = typer.Option(1.0, help="Replay speed (needs --replay)."),
    fault: list[str] = typer.Option(
        [],
        help="Start with a fault: NAME[:SECONDS]; NAME is drop, stall, garbage, "
        "rate_limit or expire_token. Repeatable.",
    ),  # fmt: skip
    tick_rate: float = typer.Option(
        1.0,
        help="Snapshots per instrument per simulated second (>1 repeats a second's "
        "snapshot; benchmarks use hundreds).",
    ),  # fmt: skip
    seed: int = typer.Option(0, help="Market seed: same seed, same prices."),
) -> None:
    """Run the Kite simulator: Ticker at ws://HOST:PORT, REST at http://HOST:PORT."""
    if session is not None and session not in SESSION_KINDS:
        raise typer.BadParameter(f"{session!r}: use one of {', '.join(SESSION_KINDS)}")
    faults: list[tuple[FaultName, float | None]] = []
    for spec in fault:
        try:
            faults.append(parse_fault(spec))
        except (FaultError, ValueError) as exc:
            raise typer.BadParameter(f"--fault {spec}: {exc}") from None
    replay_start = _replay_start(replay) if replay else None
    nse = session == "nse" or (session is None and replay_start is not None)
    try:
        config = SimConfig(
            host=host, port=port, api_key=api_key, access_token=access_token,
            api_secret=api_secret, session=session, replay=replay_start,
            speed=speed, tick_rate=tick_rate, seed=seed, faults=tuple(faults),
            is_trading_day=_trading_days() if nse else None, prewarm=True,
        )  # fmt: skip
    except ValueError as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None
    try:
        # Plain asyncio: under uvloop, SIGTERM killed `python -m` runs before a clean stop.
        asyncio.run(_serve(config))
    except (ValueError, OSError) as exc:
        err.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(1) from None


async def _serve(config: SimConfig) -> None:
    from market_bridge.kite.simulator import Simulator

    sim = Simulator(config)
    await sim.start()
    print(sim.banner(), flush=True)
    print("  Ctrl-C to stop", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(simulate_command)

if __name__ == "__main__":
    app()
