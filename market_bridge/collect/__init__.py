"""Live collection: Kite ticker -> bars, storage and live messages, and the control plane
that decides which process collects what. Services (streaming/) wire these together.

- ``collector``: one collector (ticker client, aggregator, storage rows, live messages)
- ``publisher``: batched ``pg_notify('mb_live', ...)``; ``messages``: the message contract
- ``manager`` + ``control``: ownership (advisory locks), reconcile, heartbeats, feed gaps
- ``spec``: desired state and subscription resolution; ``feed``: feed time and health
"""

from __future__ import annotations

from market_bridge.collect.collector import Collector, CollectorOptions, Credentials
from market_bridge.collect.manager import CollectorManager, ManagerOptions
from market_bridge.collect.messages import LIVE_CHANNEL, MAX_PAYLOAD
from market_bridge.collect.publisher import LivePublisher

__all__ = [
    "LIVE_CHANNEL",
    "MAX_PAYLOAD",
    "Collector",
    "CollectorManager",
    "CollectorOptions",
    "Credentials",
    "LivePublisher",
    "ManagerOptions",
]
