"""Everything a running simulator knows, without the sockets: clock, universe, model,
packets, faults, credentials, rate limits, connections and counters."""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from market_bridge.kite.models import IST
from market_bridge.kite.simulator.auth import Auth
from market_bridge.kite.simulator.clock import SimClock
from market_bridge.kite.simulator.config import SimConfig
from market_bridge.kite.simulator.faults import FaultBoard, FaultName
from market_bridge.kite.simulator.feed import PacketCache
from market_bridge.kite.simulator.limits import RateLimiter
from market_bridge.kite.simulator.model import MarketModel
from market_bridge.kite.simulator.sessions import SessionRule, ist_date, weekdays
from market_bridge.kite.simulator.universe import Universe, build_universe

if TYPE_CHECKING:
    from market_bridge.kite.simulator.ws import Connection


@dataclass
class Counters:
    ticks_sent: int = 0  # packets
    frames_sent: int = 0
    bytes_sent: int = 0
    heartbeats_sent: int = 0
    garbage_frames_sent: int = 0
    connections_total: int = 0
    connections_refused: int = 0
    rest_requests: int = 0


@dataclass
class SimState:
    config: SimConfig
    wall: Callable[[], float] = time.time
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        cfg = self.config
        self.session = SessionRule(cfg.session_kind, cfg.is_trading_day or weekdays)
        self.clock = self._make_clock()
        today = ist_date(self.clock.now())
        self.universe: Universe = build_universe(today, cfg.seed)
        self.model = MarketModel(self.universe, self.session, cfg.seed)
        # Historical requests get their own instance: same answers (the model is a pure
        # function), but long spans cannot evict the plans the live stream is using.
        self.history = MarketModel(self.universe, self.session, cfg.seed)
        self.packets = PacketCache(self.model)
        self.faults = FaultBoard()
        now = self.wall()
        self.auth = Auth(cfg.api_key, cfg.access_token, cfg.api_secret, started=now - 1e-3)
        self.historical_limiter = RateLimiter(cfg.historical_per_second)
        self.connections: dict[int, Connection] = {}
        self._csv: dict[tuple[str | None, bool], bytes] = {}

    def _make_clock(self) -> SimClock:
        replay = self.config.replay
        if replay is None:
            return SimClock(wall=self.wall)
        if isinstance(replay, datetime):
            return SimClock.replay(replay, self.config.speed, wall=self.wall)
        window = self.session.window(replay)
        if window is None:
            raise ValueError(f"{replay} is not a trading day: nothing to replay")
        return SimClock.replay(replay, self.config.speed, window.open_epoch, wall=self.wall)

    # ---- queries -------------------------------------------------------------------------

    def fault_active(self, name: FaultName) -> bool:
        return self.faults.is_active(name, self.wall())

    def expired_since(self) -> float | None:
        """Start of an active expire_token fault: tokens issued before it are invalid."""
        fault = self.faults.get("expire_token", self.wall())
        return None if fault is None else fault.started

    def instruments_csv(self, exchange: str | None, gzipped: bool) -> bytes:
        key = (exchange, gzipped)
        cached = self._csv.get(key)
        if cached is None:
            raw = self.universe.csv(exchange).encode()
            cached = self._csv[key] = gzip.compress(raw, 6, mtime=0) if gzipped else raw
        return cached

    def connections_for(self, api_key: str) -> int:
        return sum(1 for c in self.connections.values() if c.api_key == api_key)

    def status(self) -> dict[str, Any]:
        now = self.wall()
        sim_now = self.clock.now()
        located = self.session.locate(int(sim_now))
        return {
            "clock": {
                "mode": self.clock.describe(),
                "sim_time": datetime.fromtimestamp(sim_now, IST).isoformat(),
                "session": self.session.kind,
                "market_open": located is not None,
                "speed": self.clock.speed,
            },
            "tick_rate": self.config.tick_rate,
            "seed": self.config.seed,
            "instruments": len(self.universe),
            "connections": [c.describe() for c in self.connections.values()],
            "clients_connected": len(self.connections),
            "subscriptions": sum(len(c.subs) for c in self.connections.values()),
            **vars(self.counters),
            "packets_encoded": self.packets.encoded,
            "day_plans_cached": self.model.plans_cached,
            "faults": [f.to_dict(now) for f in self.faults.active(now)],
        }

    def today(self) -> date:
        return ist_date(self.clock.now())
