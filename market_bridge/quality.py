"""Data quality: gaps between expected and stored bars, and completeness labels.

Pure functions. The expected bars come from ``market.calendar.expected_bar_starts``, so only
trading minutes count: a holiday or a weekend is never a gap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from market_bridge.market.timeframes import Timeframe

Quality = Literal["excellent", "good", "fair", "poor", "no_session"]

# Lower bounds (inclusive) on the rounded percentage, best first.
QUALITY_THRESHOLDS: tuple[tuple[float, Quality], ...] = (
    (99.0, "excellent"),
    (95.0, "good"),
    (80.0, "fair"),
)


@dataclass(frozen=True, slots=True)
class Gap:
    """A run of consecutive missing bars: ``[start, end)``.

    ``start`` is the first missing bar's label, ``end`` the exclusive end of the last
    missing bar (its start + the timeframe), so ``[start, end)`` is what to backfill.
    """

    start: datetime
    end: datetime
    missing_bars: int


@dataclass(frozen=True, slots=True)
class Completeness:
    percent: float  # actual / expected * 100, rounded to 0.1, at most 100.0
    quality: Quality
    expected: int
    actual: int

    @property
    def missing(self) -> int:
        return max(self.expected - self.actual, 0)


def find_gaps(
    expected: Sequence[datetime], present: Iterable[datetime], timeframe: Timeframe
) -> list[Gap]:
    """Missing bars of ``expected`` (sorted, as ``expected_bar_starts`` returns them),
    merged into gaps.

    Consecutive missing bars merge while each starts where the previous one ends, so a gap
    stays inside one session (the next session's first bar is never adjacent to the last
    bar of the previous one). For ``day`` bars this merges consecutive calendar days, e.g.
    Monday to Friday, but not across a weekend or holiday. Bars in ``present`` that are not
    expected (outside the range or the session) are ignored.
    """
    have: set[datetime] = set()
    for ts in present:
        if ts.tzinfo is None:
            raise ValueError(f"present bar {ts.isoformat()} is a naive datetime; use aware ones")
        have.add(ts)
    step = timeframe.delta
    gaps: list[Gap] = []
    run_start: datetime | None = None
    run_end: datetime | None = None  # exclusive end of the last missing bar in the run
    run_count = 0
    for ts in expected:
        if ts in have:
            continue
        if run_start is not None and run_end == ts:
            run_end = ts + step
            run_count += 1
            continue
        if run_start is not None and run_end is not None:
            gaps.append(Gap(run_start, run_end, run_count))
        run_start, run_end, run_count = ts, ts + step, 1
    if run_start is not None and run_end is not None:
        gaps.append(Gap(run_start, run_end, run_count))
    return gaps


def present_count(expected: Set[datetime], present: Iterable[datetime]) -> int:
    """How many of the ``expected`` bar labels are in ``present`` (each counted once; bars
    outside the expected ones are ignored): the ``actual_count`` for ``completeness``.

    ``expected`` is a set (or frozenset), so callers that check many symbols against the
    same labels hash them once. Labels compare as instants, whatever their time zone."""
    if isinstance(expected, frozenset | set):
        return len(expected.intersection(present))
    return len({ts for ts in present if ts in expected})


def completeness(expected_count: int, actual_count: int) -> Completeness:
    """Share of expected bars present, with a quality label.

    Labels on the percentage rounded to 0.1: excellent >= 99.0, good >= 95.0,
    fair >= 80.0, poor below. No expected bars (a holiday, a weekend, a range outside the
    session) gives 100.0 and "no_session": nothing was missing, but nothing was due either.
    ``actual_count`` should count only expected bars; extra bars never lift it above 100.
    """
    if expected_count < 0 or actual_count < 0:
        raise ValueError(
            f"bar counts cannot be negative (expected={expected_count}, actual={actual_count})"
        )
    if expected_count == 0:
        return Completeness(100.0, "no_session", 0, actual_count)
    percent = round(min(actual_count, expected_count) * 100.0 / expected_count, 1)
    return Completeness(percent, quality_label(percent), expected_count, actual_count)


def quality_label(percent: float) -> Quality:
    for lower_bound, label in QUALITY_THRESHOLDS:
        if percent >= lower_bound:
            return label
    return "poor"
