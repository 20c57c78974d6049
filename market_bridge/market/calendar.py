"""The NSE trading calendar: which days trade, and the session hours of each.

Holidays and special sessions (Muhurat trading) come from ``pandas_market_calendars``
("NSE"), which is curated from NSE circulars through a known year (see ``known_until``).
A local override file adds what the package does not know yet: new holidays, special
sessions (including weekend Muhurat sessions, which the package cannot represent) and
holidays that NSE cancelled. After ``known_until`` every weekday counts as a trading day
with normal hours; callers should say so (``is_beyond_known_holidays``).

``expected_bar_starts`` is the single source of which bars should exist: gap detection and
completeness use it, so a holiday is never a gap.

Everything here is pure apart from ``load_overrides`` (reads the YAML file); all datetimes
are timezone-aware, in IST.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml

from market_bridge.kite.models import IST
from market_bridge.market.timeframes import SESSION_ANCHOR, Timeframe

NORMAL_OPEN = time(9, 15)
NORMAL_CLOSE = time(15, 30)
OVERRIDES_ENV = "MB_CALENDAR_OVERRIDES"
OVERRIDES_FILENAME = "calendar.yaml"


class CalendarOverrideError(ValueError):
    """The calendar override file cannot be used; the message names the file and entry."""


@dataclass(frozen=True, slots=True)
class Session:
    """One trading session. ``open`` inclusive, ``close`` exclusive (15:30 means the last
    minute traded is 15:29)."""

    date: date
    open: datetime
    close: datetime
    special: bool = False  # hours differ from the normal 09:15-15:30 (e.g. Muhurat)
    name: str | None = None

    @property
    def minutes(self) -> int:
        return int((self.close - self.open) // timedelta(minutes=1))


@dataclass(frozen=True, slots=True)
class SpecialSession:
    date: date
    open: time
    close: time
    name: str | None = None


@dataclass(frozen=True, slots=True)
class CalendarOverrides:
    """Local corrections on top of the package's NSE calendar."""

    holidays: Mapping[date, str | None] = field(default_factory=dict)  # extra closed days
    special_sessions: tuple[SpecialSession, ...] = ()  # replace or add a session
    removed_holidays: frozenset[date] = frozenset()  # package says closed; NSE trades
    known_until: date | None = None  # extends how far holidays are known
    source: str | None = None  # file the overrides came from, for messages

    def __post_init__(self) -> None:
        where = _where(self.source)
        seen: set[date] = set()
        for special in self.special_sessions:
            if special.date in seen:
                raise CalendarOverrideError(
                    f"special session on {special.date} is listed twice{where}; keep one"
                )
            seen.add(special.date)
            if special.date in self.holidays:
                raise CalendarOverrideError(
                    f"{special.date} is both a holiday and a special session{where}; "
                    "remove one of them"
                )
            if special.open >= special.close:
                raise CalendarOverrideError(
                    f"special session on {special.date}{where}: open {special.open} is not "
                    f"before close {special.close}"
                )
        clash = self.removed_holidays & set(self.holidays)
        if clash:
            raise CalendarOverrideError(
                f"{min(clash)} is both a holiday and a removed holiday{where}; remove one of them"
            )


def _where(source: str | None) -> str:
    return f" in {source}" if source else ""


class TradingCalendar:
    """NSE trading days and sessions, package data plus local overrides.

    Sessions are computed a year at a time and cached, so one instance should be shared.
    """

    def __init__(self, overrides: CalendarOverrides | None = None) -> None:
        # Imported here: the package takes seconds to import and most commands never need it.
        import pandas_market_calendars as mcal

        self._base: Any = mcal.get_calendar("NSE")
        self.overrides = overrides or CalendarOverrides()
        package_holidays = list(self._base.adhoc_holidays)
        # The package's coverage ends with the last year it lists holidays for.
        last_year = max(h.year for h in package_holidays)
        known = date(last_year, 12, 31)
        if self.overrides.known_until and self.overrides.known_until > known:
            known = self.overrides.known_until
        self.known_until: date = known
        self._years: dict[int, dict[date, Session]] = {}
        self._sorted_years: dict[int, list[date]] = {}

    # ---- days -------------------------------------------------------------------------

    def is_trading_day(self, day: date) -> bool:
        return day in self._year(day.year)

    def session(self, day: date) -> Session | None:
        """The session on ``day``, or None when the market is closed."""
        return self._year(day.year).get(day)

    def is_beyond_known_holidays(self, day: date) -> bool:
        """True when holidays for ``day`` are not known (weekdays are assumed to trade)."""
        return day > self.known_until

    def trading_days(self, start_date: date, end_date: date) -> list[date]:
        """Trading days from ``start_date`` to ``end_date``, both inclusive."""
        days: list[date] = []
        for year in range(start_date.year, end_date.year + 1):
            self._year(year)
            days.extend(d for d in self._sorted_years[year] if start_date <= d <= end_date)
        return days

    def sessions_between(self, start: datetime, end: datetime) -> list[Session]:
        """Sessions that overlap ``[start, end)`` (aware datetimes), in order."""
        _require_aware(start, "start")
        _require_aware(end, "end")
        if end <= start:
            return []
        first = start.astimezone(IST).date()
        last = end.astimezone(IST).date()
        return [
            s
            for s in (self._year(d.year)[d] for d in self.trading_days(first, last))
            if s.open < end and s.close > start
        ]

    def previous_trading_day(self, day: date) -> date:
        """The last trading day strictly before ``day``."""
        probe = day - timedelta(days=1)
        for _ in range(366):
            if self.is_trading_day(probe):
                return probe
            probe -= timedelta(days=1)
        raise ValueError(f"no trading day in the year before {day}")

    def next_trading_day(self, day: date) -> date:
        """The first trading day strictly after ``day``."""
        probe = day + timedelta(days=1)
        for _ in range(366):
            if self.is_trading_day(probe):
                return probe
            probe += timedelta(days=1)
        raise ValueError(f"no trading day in the year after {day}")

    # ---- internals --------------------------------------------------------------------

    def _year(self, year: int) -> dict[date, Session]:
        cached = self._years.get(year)
        if cached is not None:
            return cached
        sessions: dict[date, Session] = {}
        schedule = self._base.schedule(f"{year}-01-01", f"{year}-12-31")
        for label, row in zip(schedule.index, schedule.itertuples(index=False), strict=True):
            day = label.date()
            opens = row.market_open.to_pydatetime().astimezone(IST)
            closes = row.market_close.to_pydatetime().astimezone(IST)
            special = (opens.time(), closes.time()) != (NORMAL_OPEN, NORMAL_CLOSE)
            sessions[day] = Session(day, opens, closes, special=special)
        self._apply_overrides(year, sessions)
        self._years[year] = sessions
        self._sorted_years[year] = sorted(sessions)
        return sessions

    def _apply_overrides(self, year: int, sessions: dict[date, Session]) -> None:
        ov = self.overrides
        for day in ov.holidays:
            if day.year == year:
                sessions.pop(day, None)
        for day in ov.removed_holidays:
            if day.year == year and day not in sessions:
                sessions[day] = normal_session(day)
        for sp in ov.special_sessions:
            if sp.date.year == year:
                sessions[sp.date] = Session(
                    sp.date,
                    datetime.combine(sp.date, sp.open, IST),
                    datetime.combine(sp.date, sp.close, IST),
                    special=True,
                    name=sp.name,
                )


def normal_session(day: date) -> Session:
    return Session(
        day, datetime.combine(day, NORMAL_OPEN, IST), datetime.combine(day, NORMAL_CLOSE, IST)
    )


def expected_bar_starts(
    calendar: TradingCalendar, timeframe: Timeframe, start: datetime, end: datetime
) -> list[datetime]:
    """Every bar label that should exist with its start in ``[start, end)``, in order.

    Convention: ``start`` inclusive, ``end`` exclusive, both aware datetimes. Intraday bars
    sit on the grid aligned to 09:15 IST (as ``Timeframe.bar_start`` labels them) and are
    expected when the bar's interval overlaps a session: a normal day has 1m bars
    09:15..15:29 (375), 5m 09:15..15:25 (75), 1h 09:15..15:15 (7, the last one partial).
    A special session (e.g. Muhurat 18:00-19:00) gets the grid bars overlapping it.
    ``day`` bars are labelled 00:00 IST, one per trading day.
    """
    _require_aware(start, "start")
    _require_aware(end, "end")
    if end <= start:
        return []
    if not timeframe.is_intraday:
        first = start.astimezone(IST).date()
        last = (end - timedelta(microseconds=1)).astimezone(IST).date()
        midnights = (datetime.combine(d, time(0), IST) for d in calendar.trading_days(first, last))
        return [m for m in midnights if start <= m < end]

    step = timeframe.delta
    out: list[datetime] = []
    for session in calendar.sessions_between(start, end):
        anchor = datetime.combine(session.date, SESSION_ANCHOR, IST)
        # Grid index k labels anchor + k*step. Integer timedelta division keeps it exact.
        first_k = (session.open - anchor) // step  # bar containing the open
        last_k = _ceil_div(session.close - anchor, step) - 1  # last bar starting before close
        first_k = max(first_k, _ceil_div(start - anchor, step))
        last_k = min(last_k, _ceil_div(end - anchor, step) - 1)
        out.extend([anchor + step * k for k in range(first_k, last_k + 1)])
    return out


def _ceil_div(a: timedelta, b: timedelta) -> int:
    return -((-a) // b)


def _require_aware(ts: datetime, name: str) -> None:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (got naive {ts.isoformat()})")


# ---- override file --------------------------------------------------------------------


def default_overrides_path() -> Path:
    """``$MB_CALENDAR_OVERRIDES``, else ``calendar.yaml`` in the Market Bridge home."""
    env = os.environ.get(OVERRIDES_ENV)
    if env:
        return Path(env).expanduser()
    from market_bridge.settings import mb_home

    return mb_home() / OVERRIDES_FILENAME


def load_overrides(path: str | Path | None = None) -> CalendarOverrides:
    """Read the override file. A missing file at the default location means no overrides;
    a missing file that was asked for (argument or env var) is an error."""
    explicit = path is not None or bool(os.environ.get(OVERRIDES_ENV))
    resolved = Path(path).expanduser() if path is not None else default_overrides_path()
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise CalendarOverrideError(
                f"calendar override file {resolved} does not exist; create it (see "
                f"configs/calendar.example.yaml) or unset {OVERRIDES_ENV}"
            ) from None
        return CalendarOverrides()
    return parse_overrides(text, source=str(resolved))


def parse_overrides(text: str, source: str = "<calendar overrides>") -> CalendarOverrides:
    """Parse the override YAML (format: configs/calendar.example.yaml)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f", line {mark.line + 1}" if mark is not None else ""
        raise CalendarOverrideError(
            f"{source}{at}: not valid YAML ({getattr(exc, 'problem', exc)}); "
            "check indentation and quoting"
        ) from None
    if data is None:
        return CalendarOverrides(source=source)
    if not isinstance(data, dict):
        raise CalendarOverrideError(f"{source}: expected a mapping at the top level")
    allowed = {"holidays", "special_sessions", "removed_holidays", "known_until"}
    for key in data:
        if key not in allowed:
            raise CalendarOverrideError(
                f"{source}: unknown key {key!r}; valid keys: {', '.join(sorted(allowed))}"
            )

    holidays: dict[date, str | None] = {}
    for i, item in enumerate(_as_list(data, "holidays", source)):
        day, name = _dated(item, f"holidays[{i}]", source)
        holidays[day] = name
    removed: set[date] = set()
    for i, item in enumerate(_as_list(data, "removed_holidays", source)):
        removed.add(_dated(item, f"removed_holidays[{i}]", source)[0])
    specials: list[SpecialSession] = []
    for i, item in enumerate(_as_list(data, "special_sessions", source)):
        where = f"special_sessions[{i}]"
        if not isinstance(item, dict):
            raise CalendarOverrideError(
                f"{source}: {where}: expected a mapping with date, open, close (and name)"
            )
        day, name = _dated(item, where, source)
        extra = set(item) - {"date", "open", "close", "name"}
        if extra:
            raise CalendarOverrideError(
                f"{source}: {where}: unknown key {sorted(extra)[0]!r}; "
                "valid keys: date, open, close, name"
            )
        specials.append(
            SpecialSession(
                day,
                _clock(item.get("open"), f"{where}.open", source),
                _clock(item.get("close"), f"{where}.close", source),
                name,
            )
        )
    known_until = data.get("known_until")
    if known_until is not None and not isinstance(known_until, date):
        raise CalendarOverrideError(f"{source}: known_until must be a date like 2027-12-31")
    return CalendarOverrides(
        holidays=holidays,
        special_sessions=tuple(specials),
        removed_holidays=frozenset(removed),
        known_until=known_until,
        source=source,
    )


def _as_list(data: dict[str, Any], key: str, source: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise CalendarOverrideError(f"{source}: {key} must be a list")
    return value


def _dated(item: Any, where: str, source: str) -> tuple[date, str | None]:
    """A bare date, or a mapping with ``date`` (and optional ``name``)."""
    name: str | None = None
    value = item
    if isinstance(item, dict):
        value = item.get("date")
        raw_name = item.get("name")
        name = None if raw_name is None else str(raw_name)
    if isinstance(value, datetime) or not isinstance(value, date):
        raise CalendarOverrideError(
            f"{source}: {where}: expected a date like 2026-11-24 (unquoted YYYY-MM-DD), "
            f"got {value!r}"
        )
    return value, name


def _clock(value: Any, where: str, source: str) -> time:
    # Unquoted 18:15 is a base-60 integer in YAML 1.1 (1095): accept it as minutes past hour 0.
    if isinstance(value, int) and not isinstance(value, bool):
        hours, minutes = divmod(value, 60)
        if 0 <= hours < 24:
            return time(hours, minutes)
    if isinstance(value, str):
        try:
            return time.fromisoformat(value.strip())
        except ValueError:
            pass
    raise CalendarOverrideError(f'{source}: {where}: expected a time like "18:15", got {value!r}')


def default_calendar() -> TradingCalendar:
    """A calendar with the user's override file applied (``load_overrides()``)."""
    return TradingCalendar(load_overrides())
