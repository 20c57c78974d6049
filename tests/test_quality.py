"""Gap detection and completeness over the expected bar grid."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_bridge.kite.models import IST
from market_bridge.market.calendar import TradingCalendar, expected_bar_starts
from market_bridge.market.timeframes import TIMEFRAMES, Timeframe
from market_bridge.quality import QUALITY_THRESHOLDS, Gap, completeness, find_gaps

M1 = TIMEFRAMES["1m"]


@pytest.fixture(scope="module")
def cal() -> TradingCalendar:
    return TradingCalendar()


def ist(d: date, hh: int = 0, mm: int = 0) -> datetime:
    return datetime.combine(d, time(hh, mm), IST)


MON, TUE = date(2026, 11, 23), date(2026, 11, 25)  # 24th is a holiday


def test_nothing_missing_means_no_gaps(cal: TradingCalendar) -> None:
    expected = expected_bar_starts(cal, M1, ist(MON), ist(TUE + timedelta(days=1)))
    assert find_gaps(expected, expected, M1) == []


def test_a_whole_missing_day_is_one_gap_and_days_never_merge(cal: TradingCalendar) -> None:
    expected = expected_bar_starts(cal, M1, ist(MON), ist(TUE + timedelta(days=1)))
    gaps = find_gaps(expected, [], M1)
    assert gaps == [
        Gap(ist(MON, 9, 15), ist(MON, 15, 30), 375),
        Gap(ist(TUE, 9, 15), ist(TUE, 15, 30), 375),
    ]


def test_gap_end_is_the_exclusive_end_of_the_last_missing_bar(cal: TradingCalendar) -> None:
    h1 = TIMEFRAMES["1h"]
    expected = expected_bar_starts(cal, h1, ist(MON), ist(MON + timedelta(days=1)))
    present = [b for b in expected if b.time() < time(14, 15)]
    assert find_gaps(expected, present, h1) == [Gap(ist(MON, 14, 15), ist(MON, 16, 15), 2)]


def test_holidays_are_not_gaps(cal: TradingCalendar) -> None:
    expected = expected_bar_starts(cal, TIMEFRAMES["day"], ist(MON), ist(TUE + timedelta(days=3)))
    assert [b.date() for b in expected] == [MON, TUE, date(2026, 11, 26), date(2026, 11, 27)]
    gaps = find_gaps(expected, [ist(MON)], TIMEFRAMES["day"])
    # The holiday on the 24th splits nothing: 25th-27th are consecutive days.
    assert gaps == [Gap(ist(TUE), ist(date(2026, 11, 28)), 3)]


def test_present_bars_in_other_timezones_and_extras_count(cal: TradingCalendar) -> None:
    expected = [ist(MON, 9, 15), ist(MON, 9, 16), ist(MON, 9, 17)]
    present = [datetime(2026, 11, 23, 3, 46, tzinfo=UTC), ist(MON, 20, 0)]  # 09:16 IST + extra
    assert find_gaps(expected, present, M1) == [
        Gap(ist(MON, 9, 15), ist(MON, 9, 16), 1),
        Gap(ist(MON, 9, 17), ist(MON, 9, 18), 1),
    ]


def test_naive_present_bars_are_rejected() -> None:
    with pytest.raises(ValueError, match="naive"):
        find_gaps([ist(MON, 9, 15)], [datetime(2026, 11, 23, 9, 15)], M1)


@settings(max_examples=80, deadline=None)
@given(
    start=st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 12, 31)),
    span_days=st.integers(min_value=0, max_value=3),
    tf=st.sampled_from(list(TIMEFRAMES.values())),
    data=st.data(),
)
def test_gaps_reproduce_exactly_the_removed_bars(
    cal: TradingCalendar, start: date, span_days: int, tf: Timeframe, data: st.DataObject
) -> None:
    expected = expected_bar_starts(cal, tf, ist(start), ist(start + timedelta(days=span_days + 1)))
    keep = data.draw(st.lists(st.booleans(), min_size=len(expected), max_size=len(expected)))
    present = [b for b, k in zip(expected, keep, strict=True) if k]
    removed = [b for b, k in zip(expected, keep, strict=True) if not k]

    gaps = find_gaps(expected, present, tf)

    covered: list[datetime] = []
    for g in gaps:
        bars = [g.start + tf.delta * i for i in range(g.missing_bars)]
        assert g.end == bars[-1] + tf.delta
        covered.extend(bars)
        if tf.is_intraday:  # never across sessions
            assert g.start.date() == bars[-1].date()
    assert covered == removed
    # Maximal: two gaps never touch (they would have been one).
    for a, b in zip(gaps, gaps[1:], strict=False):
        assert a.end < b.start
    assert completeness(len(expected), len(present)).actual == len(present)


@pytest.mark.parametrize(
    ("expected", "actual", "percent", "quality"),
    [
        (375, 375, 100.0, "excellent"),
        (1000, 990, 99.0, "excellent"),
        (1000, 989, 98.9, "good"),
        (1000, 950, 95.0, "good"),
        (1000, 949, 94.9, "fair"),
        (1000, 800, 80.0, "fair"),
        (1000, 799, 79.9, "poor"),
        (3, 2, 66.7, "poor"),
        (375, 0, 0.0, "poor"),
        (0, 0, 100.0, "no_session"),
        (100, 120, 100.0, "excellent"),  # extra bars never lift it above 100
    ],
)
def test_completeness_thresholds(expected: int, actual: int, percent: float, quality: str) -> None:
    c = completeness(expected, actual)
    assert (c.percent, c.quality, c.expected, c.actual) == (percent, quality, expected, actual)


def test_completeness_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="negative"):
        completeness(-1, 0)


@given(expected=st.integers(min_value=1, max_value=200_000), data=st.data())
def test_completeness_label_follows_the_rounded_percent(expected: int, data: st.DataObject) -> None:
    actual = data.draw(st.integers(min_value=0, max_value=expected))
    c = completeness(expected, actual)
    assert 0.0 <= c.percent <= 100.0 and c.percent == round(c.percent, 1)
    assert c.missing == expected - actual
    label = next((name for bound, name in QUALITY_THRESHOLDS if c.percent >= bound), "poor")
    assert c.quality == label
