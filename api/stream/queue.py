"""One client's outgoing messages: a bounded FIFO that conflates what may be superseded.

Pure (no I/O, no clock of its own): the broadcaster ``put``s without ever waiting, the
client's writer task ``pop``s. A message with a conflation key replaces a pending message
with the same key (latest wins) and moves to the back, so the order in which messages
were published is kept and a replaced message is never delivered after a newer one. A
message without a key must be delivered; when more than ``max_pending`` of those wait,
``put`` answers ``OVERFLOW`` and the caller disconnects the client.

"Behind" is measured as the time since the queue was last empty: a client whose writer
keeps up drains its queue after every burst, one that cannot keep up never does.
"""

from __future__ import annotations

import enum
import itertools
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass


class Put(enum.Enum):
    QUEUED = "queued"
    CONFLATED = "conflated"  # replaced a pending message with the same key
    OVERFLOW = "overflow"  # too many undroppable messages pending: the client is too slow


@dataclass(slots=True)
class Entry:
    frame: bytes  # the message, ready to write
    kind: str  # message type, for metrics
    droppable: bool


class ConflatingQueue:
    def __init__(self, max_pending: int) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.max_pending = max_pending
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._seq = itertools.count()  # unique keys for undroppable messages
        self.undroppable = 0  # how many of the pending messages must be delivered
        self.busy_since: float | None = None  # when the queue last became non-empty

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, frame: bytes, kind: str, now: float, key: Hashable | None = None) -> Put:
        if not self._entries:
            self.busy_since = now
        if key is not None:
            pending = self._entries.get(("k", key))
            if pending is not None:
                pending.frame = frame
                self._entries.move_to_end(("k", key))
                return Put.CONFLATED
            self._entries[("k", key)] = Entry(frame, kind, True)
            return Put.QUEUED
        if self.undroppable >= self.max_pending:
            return Put.OVERFLOW
        self._entries[("u", next(self._seq))] = Entry(frame, kind, False)
        self.undroppable += 1
        return Put.QUEUED

    def pop(self) -> Entry | None:
        """The oldest pending message, or ``None`` (and the client counts as caught up)."""
        if not self._entries:
            self.busy_since = None
            return None
        _, entry = self._entries.popitem(last=False)
        if not entry.droppable:
            self.undroppable -= 1
        return entry

    def pop_batch(self, max_bytes: int) -> list[Entry]:
        """The oldest pending messages, at least one and about ``max_bytes`` at most."""
        batch: list[Entry] = []
        size = 0
        while self._entries and (not batch or size < max_bytes):
            entry = self.pop()
            assert entry is not None
            batch.append(entry)
            size += len(entry.frame)
        if not batch:
            self.busy_since = None
        return batch

    def lag(self, now: float) -> float:
        """Seconds since the queue was last empty (0 when it is empty)."""
        if self.busy_since is None or not self._entries:
            return 0.0
        return max(0.0, now - self.busy_since)

    def clear(self) -> int:
        """Forget everything pending (the client is gone); returns how many were dropped."""
        dropped = len(self._entries)
        self._entries.clear()
        self.undroppable = 0
        self.busy_since = None
        return dropped
