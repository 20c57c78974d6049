"""The simulated clock: wall time, or a trading day replayed at some speed.

Live: simulated time is the wall clock. Replay: simulated time starts at the replayed
day's session open (or a given moment) and runs ``speed`` times faster than the wall clock;
every timestamp the simulator produces (ticks, candle cut-off) reads this clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from market_bridge.kite.models import IST


@dataclass
class SimClock:
    replay_from: float | None = None  # epoch the replay starts at; None = live
    speed: float = 1.0
    wall: Callable[[], float] = field(default=time.time, repr=False)
    _started_wall: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"speed must be positive, got {self.speed}")
        if self.replay_from is None and self.speed != 1.0:
            raise ValueError("speed needs a replay day (live time runs at 1x)")
        self._started_wall = self.wall()

    @classmethod
    def replay(cls, start: datetime | date, speed: float = 1.0, open_epoch: int | None = None,
               wall: Callable[[], float] = time.time) -> SimClock:  # fmt: skip
        """Replay from ``start`` (a datetime, or a date meaning its session open)."""
        if isinstance(start, datetime):
            aware = start if start.tzinfo else start.replace(tzinfo=IST)
            epoch = aware.timestamp()
        elif open_epoch is not None:
            epoch = float(open_epoch)
        else:
            raise ValueError("a replay date needs its session open")
        return cls(replay_from=epoch, speed=speed, wall=wall)

    def restart(self) -> None:
        """Start the replay now (the server calls this once it is serving)."""
        self._started_wall = self.wall()

    @property
    def is_replay(self) -> bool:
        return self.replay_from is not None

    def now(self) -> float:
        """Simulated Unix time."""
        if self.replay_from is None:
            return self.wall()
        return self.replay_from + (self.wall() - self._started_wall) * self.speed

    def wall_seconds(self, sim_seconds: float) -> float:
        """How long the wall clock takes for ``sim_seconds`` of simulated time."""
        return sim_seconds / self.speed

    def describe(self) -> str:
        if self.replay_from is None:
            return "live (wall clock)"
        start = datetime.fromtimestamp(self.replay_from, IST)
        return f"replay from {start:%Y-%m-%d %H:%M:%S} IST at {self.speed:g}x"
