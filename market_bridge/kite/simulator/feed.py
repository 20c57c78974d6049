"""Turning model ticks into Kite frames fast: a packet cache, pacing, framing.

Encoding a full packet costs tens of microseconds, so each (token, second, mode) packet is
encoded once and reused by every connection and every repeat within the second (tick
rates above 1/s repeat the second's snapshot, as Kite's snapshots do when nothing traded).
Frames carry many packets (at most ``MAX_PACKETS_PER_FRAME``, < 1 MiB, the default message
limit of most WebSocket clients).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Sequence

from market_bridge.kite.codec import encode_frame, encode_packet
from market_bridge.kite.models import Mode
from market_bridge.kite.simulator.model import MarketModel

MAX_PACKETS_PER_FRAME = 5000  # x 186 bytes < 1 MiB
_CACHE_LIMIT = 200_000

# Frames the codec must reject: a short packet body, a count larger than the packets
# present, and trailing bytes. All are >= 2 bytes so nobody mistakes them for heartbeats.
GARBAGE_FRAMES: tuple[bytes, ...] = (
    b"\x00\x03\x00\xb8" + bytes(range(50)),
    b"\x00\x05\x00\x08" + b"\x00\x0b\x44\x01\x00\x02\x3c\x9a",
    b"\x00\x01\x00\x08" + b"\x00\x0b\x44\x01\x00\x02\x3c\x9a" + b"garbage",
)


class PacketCache:
    """Encoded packets by (token, second, mode); oldest entries are evicted first."""

    def __init__(self, model: MarketModel, limit: int = _CACHE_LIMIT) -> None:
        self.model = model
        self.limit = limit
        self._packets: dict[tuple[int, int, Mode], bytes | None] = {}
        self._lock = threading.Lock()
        self.encoded = 0

    def packet(self, token: int, second: int, mode: Mode) -> bytes | None:
        """The packet for ``second``; None while the market is shut."""
        key = (token, second, mode)
        found = self._packets.get(key, b"")
        if found != b"":
            return found
        tick = self.model.tick_at(token, second, mode)
        packet = None if tick is None else encode_packet(tick)
        self._store(key, packet)
        return packet

    def latest(self, token: int, second: int, mode: Mode) -> bytes:
        """The packet of the last traded second at or before ``second`` (closing state when shut)."""
        return self.packet(token, second, mode) or encode_packet(
            self.model.last_tick(token, second, mode)
        )

    def _store(self, key: tuple[int, int, Mode], packet: bytes | None) -> None:
        with self._lock:
            self.encoded += packet is not None
            self._packets[key] = packet
            if len(self._packets) > self.limit:
                # dicts keep insertion order: drop the oldest tenth in one go
                for old in list(self._packets)[: self.limit // 10]:
                    del self._packets[old]

    def packets(self, subs: Iterable[tuple[int, Mode]], second: int) -> list[bytes]:
        out: list[bytes] = []
        for token, mode in subs:
            packet = self.packet(token, second, mode)
            if packet is not None:
                out.append(packet)
        return out


def frames(packets: Sequence[bytes]) -> Iterator[tuple[bytes, int]]:
    """Packets in as few frames as the per-frame cap allows: (frame, packets in it)."""
    step = MAX_PACKETS_PER_FRAME
    for i in range(0, len(packets), step):
        chunk = packets[i : i + step]
        yield encode_frame(chunk), len(chunk)


class Pacer:
    """Snapshot slots of one connection: slot ``j`` is due at simulated time ``j / rate`` and
    shows second ``floor(j / rate)``. Every second gets at least one slot when rate >= 1,
    so a client that keeps up sees every simulated second."""

    def __init__(self, rate: float, sim_now: float) -> None:
        if not rate > 0:
            raise ValueError(f"tick rate must be positive, got {rate}")
        self.rate = rate
        self.next_slot = math.floor(sim_now * rate) + 1

    def skip_to(self, sim_now: float) -> None:
        """Forget the backlog (after a stall, or when the client fell behind)."""
        self.next_slot = max(self.next_slot, math.floor(sim_now * self.rate) + 1)

    def last_second(self) -> int:
        """The second shown by the last slot handed out."""
        return math.floor((self.next_slot - 1) / self.rate)

    def next_time(self) -> float:
        return self.next_slot / self.rate

    def due(self, sim_now: float, max_slots: int) -> list[tuple[int, int]]:
        """(second, repeats) for the slots due by ``sim_now``, oldest first; a backlog beyond
        ``max_slots`` is skipped."""
        last = math.floor(sim_now * self.rate)
        first = self.next_slot
        if last < first:
            return []
        if last - first + 1 > max_slots:
            first = last - max_slots + 1
        self.next_slot = last + 1
        rate = self.rate
        out: list[tuple[int, int]] = []
        second = math.floor(first / rate)
        while True:
            lo = max(first, math.ceil(second * rate))
            hi = min(last, math.ceil((second + 1) * rate) - 1)
            if lo > last:
                break
            if hi >= lo:
                out.append((second, hi - lo + 1))
            second += 1
        return out
