"""Where ticks become bars: see ``aggregator`` and docs/aggregation.md."""

from __future__ import annotations

from market_bridge.aggregation.aggregator import AggregatorStats, BarAggregator
from market_bridge.aggregation.bar import Bar, BarUpdate, UpdateKind

__all__ = ["AggregatorStats", "Bar", "BarAggregator", "BarUpdate", "UpdateKind"]
