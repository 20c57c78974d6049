"""NSE trading calendar and the expected bar grid (the single source for gaps/completeness)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_bridge.kite.models import IST
from market_bridge.market.calendar import (
    CalendarOverrideError,
    CalendarOverrides,
    SpecialSession,
    TradingCalendar,
    expected_bar_starts,
    load_overrides,
    parse_overrides,
)
from market_bridge.market.timeframes import SESSION_ANCHOR, TIMEFRAMES, Timeframe, parse_timeframe

EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "calendar.example.yaml"
INTRADAY = [tf for tf in TIMEFRAMES.values() if tf.is_intraday]
PER_NORMAL_DAY = {"1m": 375, "3m": 125, "5m": 75, "10m": 38, "15m": 25, "30m": 13, "1h": 7}
LAST_BAR = {"1m": time(15, 29), "5m": time(15, 25), "15m": time(15, 15), "1h": time(15, 15)}

# Holidays are known through 2026; 2027 exercises the "weekdays trade" fallback.
days = st.dates(min_value=date(2023, 1, 1), max_value=date(2027, 6, 30))
timeframes = st.sampled_from(INTRADAY)
hypothesis_settings = settings(max_examples=60, deadline=None)


@pytest.fixture(scope="module")
def cal() -> TradingCalendar:
    return TradingCalendar()


def ist(d: date, hh: int = 0, mm: int = 0) -> datetime:
    return datetime.combine(d, time(hh, mm), IST)


def test_holidays_and_weekends_are_not_trading_days(cal: TradingCalendar) -> None:
    assert not cal.is_trading_day(date(2026, 11, 24))  # Guru Nanak Jayanti
    assert cal.session(date(2026, 11, 24)) is None
    assert not cal.is_trading_day(date(2026, 11, 21))  # Saturday
    assert not cal.is_trading_day(date(2026, 11, 22))  # Sunday
    assert cal.is_trading_day(date(2026, 11, 23))
    assert (
        expected_bar_starts(cal, TIMEFRAMES["1m"], ist(date(2026, 11, 24)), ist(date(2026, 11, 25)))
        == []
    )


def test_normal_session_is_0915_to_1530_ist(cal: TradingCalendar) -> None:
    s = cal.session(date(2026, 11, 23))
    assert s is not None
    assert s.open == ist(date(2026, 11, 23), 9, 15) and s.open.utcoffset() == timedelta(
        hours=5, minutes=30
    )
    assert s.close == ist(date(2026, 11, 23), 15, 30)
    assert not s.special and s.minutes == 375


def test_muhurat_session_from_the_package(cal: TradingCalendar) -> None:
    s = cal.session(date(2024, 11, 1))
    assert s is not None and s.special
    assert (s.open.time(), s.close.time()) == (time(18, 0), time(19, 0))
    bars = expected_bar_starts(
        cal, TIMEFRAMES["1m"], ist(date(2024, 11, 1)), ist(date(2024, 11, 2))
    )
    assert len(bars) == 60 and bars[0] == s.open and bars[-1] == ist(date(2024, 11, 1), 18, 59)


def test_known_until_and_beyond(cal: TradingCalendar) -> None:
    assert cal.known_until == date(2026, 12, 31)
    assert not cal.is_beyond_known_holidays(date(2026, 12, 31))
    # Republic Day 2027 is a Tuesday: unknown to the package, so assumed to trade, flagged.
    assert cal.is_beyond_known_holidays(date(2027, 1, 26))
    assert cal.is_trading_day(date(2027, 1, 26))
    assert not cal.is_trading_day(date(2027, 1, 30))  # Saturday


def test_trading_days_are_inclusive_and_sessions_overlap(cal: TradingCalendar) -> None:
    assert cal.trading_days(date(2026, 11, 20), date(2026, 11, 25)) == [
        date(2026, 11, 20),
        date(2026, 11, 23),
        date(2026, 11, 25),
    ]
    sessions = cal.sessions_between(ist(date(2026, 11, 20), 15, 29), ist(date(2026, 11, 23), 9, 16))
    assert [s.date for s in sessions] == [date(2026, 11, 20), date(2026, 11, 23)]
    assert (
        cal.sessions_between(ist(date(2026, 11, 20), 15, 30), ist(date(2026, 11, 23), 9, 15)) == []
    )
    assert cal.previous_trading_day(date(2026, 11, 25)) == date(2026, 11, 23)
    assert cal.next_trading_day(date(2026, 11, 23)) == date(2026, 11, 25)


def test_naive_datetimes_are_rejected(cal: TradingCalendar) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        expected_bar_starts(cal, TIMEFRAMES["1m"], datetime(2026, 11, 23), ist(date(2026, 11, 24)))


def test_a_year_of_minute_bars(cal: TradingCalendar) -> None:
    bars = expected_bar_starts(cal, TIMEFRAMES["1m"], ist(date(2024, 1, 1)), ist(date(2025, 1, 1)))
    sessions = [cal.session(d) for d in cal.trading_days(date(2024, 1, 1), date(2024, 12, 31))]
    assert len(bars) == sum(s.minutes for s in sessions if s is not None)
    assert len(bars) > 90_000
    assert len(set(bars)) == len(bars)


def test_utc_and_ist_bounds_give_the_same_bars(cal: TradingCalendar) -> None:
    tf = TIMEFRAMES["5m"]
    a = expected_bar_starts(cal, tf, ist(date(2026, 11, 23), 10), ist(date(2026, 11, 23), 11))
    b = expected_bar_starts(
        cal,
        tf,
        datetime(2026, 11, 23, 4, 30, tzinfo=UTC),
        datetime(2026, 11, 23, 5, 30, tzinfo=UTC),
    )
    assert a == b and len(a) == 12 and a[0] == ist(date(2026, 11, 23), 10, 0)


@hypothesis_settings
@given(day=days, tf=timeframes)
def test_normal_day_bar_counts(cal: TradingCalendar, day: date, tf: Timeframe) -> None:
    session = cal.session(day)
    if session is None or session.special:
        return
    bars = expected_bar_starts(cal, tf, ist(day), ist(day + timedelta(days=1)))
    assert len(bars) == PER_NORMAL_DAY[tf.name]
    assert bars[0] == session.open
    if tf.name in LAST_BAR:
        assert bars[-1].time() == LAST_BAR[tf.name]


@hypothesis_settings
@given(
    start=days,
    span_minutes=st.integers(min_value=0, max_value=10 * 24 * 60),
    offset_minutes=st.integers(min_value=0, max_value=24 * 60 - 1),
    tf=timeframes,
)
def test_expected_bars_lie_on_the_grid_inside_sessions(
    cal: TradingCalendar, start: date, span_minutes: int, offset_minutes: int, tf: Timeframe
) -> None:
    lo = ist(start) + timedelta(minutes=offset_minutes)
    hi = lo + timedelta(minutes=span_minutes)
    bars = expected_bar_starts(cal, tf, lo, hi)
    assert bars == sorted(set(bars))
    for b in bars:
        assert lo <= b < hi
        assert b.tzinfo is not None and b.utcoffset() == timedelta(hours=5, minutes=30)
        assert b.weekday() < 5  # the package calendar has no weekend sessions
        session = cal.session(b.date())
        assert session is not None  # never a holiday or weekend
        anchor = datetime.combine(b.date(), SESSION_ANCHOR, IST)
        assert (b - anchor) % tf.delta == timedelta(0)  # on the 09:15-aligned grid
        assert b < session.close and b + tf.delta > session.open  # overlaps the session


@hypothesis_settings
@given(start=days, span_days=st.integers(min_value=0, max_value=4), tf=timeframes)
def test_expected_bars_match_bar_start_of_every_trading_minute(
    cal: TradingCalendar, start: date, span_days: int, tf: Timeframe
) -> None:
    """Brute force: label every traded minute with Timeframe.bar_start; same set."""
    lo, hi = ist(start), ist(start + timedelta(days=span_days + 1))
    brute: set[datetime] = set()
    for day in cal.trading_days(start, start + timedelta(days=span_days)):
        session = cal.session(day)
        assert session is not None
        minute = session.open
        while minute < session.close:
            brute.add(tf.bar_start(minute))
            minute += timedelta(minutes=1)
    assert expected_bar_starts(cal, tf, lo, hi) == sorted(brute)


@hypothesis_settings
@given(start=days, span_days=st.integers(min_value=0, max_value=30))
def test_day_bars_are_trading_days_at_midnight(
    cal: TradingCalendar, start: date, span_days: int
) -> None:
    end = start + timedelta(days=span_days)
    bars = expected_bar_starts(cal, parse_timeframe("day"), ist(start), ist(end))
    assert [b.date() for b in bars] == [d for d in cal.trading_days(start, end) if d < end]
    assert all(
        b.time() == time(0) and b.utcoffset() == timedelta(hours=5, minutes=30) for b in bars
    )


def test_empty_or_inverted_range_is_empty(cal: TradingCalendar) -> None:
    t = ist(date(2026, 11, 23), 10)
    assert expected_bar_starts(cal, TIMEFRAMES["1m"], t, t) == []
    assert expected_bar_starts(cal, TIMEFRAMES["1m"], t, t - timedelta(hours=1)) == []


# ---- overrides ------------------------------------------------------------------------


def test_example_override_file() -> None:
    cal = TradingCalendar(load_overrides(EXAMPLE))
    assert not cal.is_trading_day(date(2027, 1, 26))  # extra holiday
    assert not cal.is_trading_day(date(2027, 3, 22))  # bare-date form
    assert cal.known_until == date(2027, 12, 31)
    assert not cal.is_beyond_known_holidays(date(2027, 6, 1))
    # A Sunday Muhurat session, which the package cannot represent.
    s = cal.session(date(2023, 11, 12))
    assert s is not None and s.special and s.name == "Muhurat trading"
    assert (s.open.time(), s.close.time()) == (time(18, 15), time(19, 15))
    bars = expected_bar_starts(
        cal, TIMEFRAMES["1m"], ist(date(2023, 11, 12)), ist(date(2023, 11, 13))
    )
    assert len(bars) == 60


def test_removed_holiday_trades_normal_hours() -> None:
    cal = TradingCalendar(CalendarOverrides(removed_holidays=frozenset({date(2026, 11, 24)})))
    s = cal.session(date(2026, 11, 24))
    assert s is not None and not s.special and s.minutes == 375


def test_special_session_replaces_a_normal_day() -> None:
    cal = TradingCalendar(
        CalendarOverrides(
            special_sessions=(SpecialSession(date(2026, 11, 23), time(9, 15), time(13, 0)),)
        )
    )
    bars = expected_bar_starts(
        cal, TIMEFRAMES["1h"], ist(date(2026, 11, 23)), ist(date(2026, 11, 24))
    )
    assert [b.time() for b in bars] == [time(9, 15), time(10, 15), time(11, 15), time(12, 15)]


def test_override_file_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MB_CALENDAR_OVERRIDES", raising=False)
    monkeypatch.setenv("MB_HOME", str(tmp_path))
    assert load_overrides() == CalendarOverrides()  # default file absent: no overrides
    (tmp_path / "calendar.yaml").write_text("holidays: [2026-11-23]\n")
    assert date(2026, 11, 23) in load_overrides().holidays
    monkeypatch.setenv("MB_CALENDAR_OVERRIDES", str(tmp_path / "missing.yaml"))
    with pytest.raises(CalendarOverrideError, match="missing.yaml does not exist"):
        load_overrides()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("holiday: [2026-01-01]\n", "unknown key 'holiday'"),
        ("holidays: [tomorrow]\n", r"holidays\[0\]: expected a date"),
        (
            "special_sessions:\n  - {date: 2026-11-23, open: '6pm', close: '19:00'}\n",
            r"special_sessions\[0\]\.open",
        ),
        (
            "special_sessions:\n  - {date: 2026-11-23, open: '19:00', close: '18:00'}\n",
            "not before close",
        ),
        (
            "holidays: [2026-11-23]\nspecial_sessions:\n  - {date: 2026-11-23, open: '18:00', close: '19:00'}\n",
            "both a holiday and a special session",
        ),
        ("holidays: [2026-11-23\n", "not valid YAML"),
    ],
)
def test_bad_override_files_name_the_file_and_entry(text: str, message: str) -> None:
    with pytest.raises(CalendarOverrideError, match=message) as info:
        parse_overrides(text, source="/etc/mb/calendar.yaml")
    assert "/etc/mb/calendar.yaml" in str(info.value)
