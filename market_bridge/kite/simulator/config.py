"""Simulator settings and their defaults (the CLI documents the same defaults)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from market_bridge.kite.simulator.faults import FaultName
from market_bridge.kite.simulator.sessions import SessionKind

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081
DEFAULT_API_KEY = "mb_sim_key"
DEFAULT_ACCESS_TOKEN = "mb_sim_token"
DEFAULT_API_SECRET = "mb_sim_secret"


@dataclass(frozen=True)
class SimConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0 = any free port (tests)
    api_key: str = DEFAULT_API_KEY
    access_token: str = DEFAULT_ACCESS_TOKEN
    api_secret: str = DEFAULT_API_SECRET
    # "always" (market open at any hour) unless replaying, which defaults to "nse"
    session: SessionKind | None = None
    replay: date | datetime | None = None  # a date starts at its session open
    speed: float = 1.0  # replay speed; live time runs at 1x
    tick_rate: float = 1.0  # snapshots per instrument per simulated second
    seed: int = 0
    faults: tuple[tuple[FaultName, float | None], ...] = ()  # started at start-up
    # trading days for session "nse" (default Mon-Fri); the CLI passes the NSE calendar
    is_trading_day: Callable[[date], bool] | None = field(default=None, compare=False)
    max_tokens_per_connection: int = 3000
    max_connections_per_key: int = 3
    historical_per_second: int = 3
    heartbeat_seconds: float = 1.0
    min_batch_seconds: float = 0.01  # shortest gap between frames of one connection
    max_backlog_seconds: float = 2.0  # wall seconds of slots a slow client may fall behind
    # Build every instrument's day plan in the background at start-up (and before the next
    # day) instead of on first subscription; the CLI turns it on, tests leave it off.
    prewarm: bool = False

    @property
    def session_kind(self) -> SessionKind:
        if self.session is not None:
            return self.session
        return "nse" if self.replay is not None else "always"

    def __post_init__(self) -> None:
        if not self.tick_rate > 0:
            raise ValueError(f"tick_rate must be positive, got {self.tick_rate}")
        if not self.speed > 0:
            raise ValueError(f"speed must be positive, got {self.speed}")
        if self.replay is None and self.speed != 1.0:
            raise ValueError("--speed needs --replay (live time runs at 1x)")
