"""Faults the simulator can inject at run time, and how long each lasts.

``drop`` closes every WebSocket now and, given seconds, refuses new ones for that long.
``stall`` keeps sockets open but sends nothing at all (heartbeats included).
``garbage`` sends malformed binary frames instead of ticks.
``rate_limit`` answers every historical request with 429.
``expire_token`` invalidates access tokens issued before it started (WS handshakes and REST
get 403) until it ends or is cleared; a new login (``POST /session/token``) works meanwhile.
Without seconds a fault lasts until cleared (``drop``: a one-off drop). Pure: the caller
passes the (wall clock) time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

FaultName = Literal["drop", "stall", "garbage", "rate_limit", "expire_token"]
FAULTS: tuple[FaultName, ...] = get_args(FaultName)


class FaultError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Fault:
    name: FaultName
    started: float
    until: float | None  # None: until cleared

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "fault": self.name,
            "started_at": self.started,
            "expires_at": self.until,
            "remaining": None if self.until is None else max(0.0, round(self.until - now, 3)),
        }


def parse_fault(spec: str) -> tuple[FaultName, float | None]:
    """``NAME`` or ``NAME:SECONDS`` (the CLI's ``--fault``)."""
    name, _, secs = spec.partition(":")
    return check_fault(name.strip(), float(secs) if secs.strip() else None)


def check_fault(name: object, seconds: object) -> tuple[FaultName, float | None]:
    if name not in FAULTS:
        raise FaultError(f"unknown fault {name!r}; valid: {', '.join(FAULTS)}")
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise FaultError(f"seconds must be a positive number, got {seconds!r}")
        seconds = float(seconds)
    return cast(FaultName, name), seconds


class FaultBoard:
    """Active faults by name (starting one again replaces it)."""

    def __init__(self) -> None:
        self._faults: dict[FaultName, Fault] = {}

    def start(self, name: FaultName, seconds: float | None, now: float) -> Fault:
        if name == "drop" and seconds is None:
            fault = Fault(name, now, now)  # one-off: nothing lingers
        else:
            fault = Fault(name, now, None if seconds is None else now + seconds)
        self._faults[name] = fault
        return fault

    def get(self, name: FaultName, now: float) -> Fault | None:
        fault = self._faults.get(name)
        if fault is not None and not fault.active(now):
            del self._faults[name]
            return None
        return fault

    def is_active(self, name: FaultName, now: float) -> bool:
        return self.get(name, now) is not None

    def ends_at(self, name: FaultName, now: float) -> float | None:
        """When an active fault ends (inf when open-ended); None when it is not active."""
        fault = self.get(name, now)
        if fault is None:
            return None
        return float("inf") if fault.until is None else fault.until

    def active(self, now: float) -> list[Fault]:
        return [f for name in list(self._faults) if (f := self.get(name, now)) is not None]

    def clear(self, name: FaultName | None = None) -> None:
        if name is None:
            self._faults.clear()
        else:
            self._faults.pop(name, None)
