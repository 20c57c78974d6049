"""Bar timestamps read as raw binary timestamptz (``queries.bars.ist_timestamps``) and
turned into IST datetimes by ``ist_label`` (issue #6): the same values, and the same JSON,
as psycopg's own conversion followed by ``astimezone(IST)``, whatever the session's
TimeZone, around midnight, and before 1946 (when India was not yet at +05:30)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta

import psycopg
import pytest

from api.responses import dumps
from market_bridge.kite.models import IST
from market_bridge.queries import bars as bar_queries

from .test_api_support import insert_bars, make_bars

DAY = date(2024, 2, 6)
INSTANTS = [
    datetime(2024, 2, 5, 18, 29, 59, 999999, tzinfo=UTC),  # 23:59:59.999999 IST
    datetime(2024, 2, 5, 18, 30, tzinfo=UTC),  # IST midnight
    datetime(2024, 2, 5, 23, 59, 59, tzinfo=UTC),
    datetime(2024, 2, 6, 0, 0, tzinfo=UTC),  # UTC midnight: 05:30 IST
    datetime(2024, 2, 6, 3, 45, tzinfo=UTC),  # 09:15 IST
    datetime(2000, 1, 1, tzinfo=UTC),  # PostgreSQL's epoch: 0 us
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # negative
    datetime(1945, 10, 14, 18, 30, tzinfo=UTC),  # before Asia/Kolkata settled on +05:30
    datetime(1942, 9, 1, 12, 0, tzinfo=UTC),  # Kolkata was +06:30 then
    datetime(1900, 1, 1, tzinfo=UTC),  # local mean time in the tz database
    datetime(1, 1, 2, tzinfo=UTC),
    datetime(9999, 12, 31, 18, 29, 59, tzinfo=UTC),  # the last second IST can show
]


@pytest.mark.parametrize("ts", INSTANTS, ids=lambda ts: ts.isoformat())
def test_ist_label_is_the_instant_at_plus_0530(ts: datetime) -> None:
    micros = (ts - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    label = bar_queries.ist_label(micros)
    assert label == ts and label.utcoffset() == timedelta(hours=5, minutes=30)
    assert label.isoformat() == ts.astimezone(IST).isoformat()
    assert bar_queries.ist_label(micros) is label  # converted once


def test_ist_label_outside_datetime_range_is_a_data_error() -> None:
    with pytest.raises(psycopg.DataError):
        bar_queries.ist_label(2**63 - 1)  # 'infinity'


def test_the_label_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bar_queries, "_LABEL_CACHE_SIZE", 10)
    monkeypatch.setattr(bar_queries, "_labels", {})
    for k in range(25):
        assert bar_queries.ist_label(k * 60_000_000).minute == (30 + k) % 60
    assert len(bar_queries._labels) <= 10


async def _read(dsn: str, timezone: str) -> tuple[list[datetime], list[datetime], bytes]:
    """Raw instants (psycopg's own loader), then ist_timestamps' labels, and the bars as
    the API's JSON, over a connection whose session TimeZone is ``timezone``."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f"SET TimeZone = '{timezone}'")
        params = [[ts for ts in INSTANTS if ts.year < 9999]]
        async with conn.cursor(binary=True) as cur:
            await cur.execute("SELECT unnest(%s::timestamptz[])", params)
            plain = [r[0] for r in await cur.fetchall()]
        async with conn.cursor(binary=True) as cur:
            bar_queries.ist_timestamps(cur)
            await cur.execute("SELECT unnest(%s::timestamptz[])", params)
            labels = [bar_queries.ist_label(r[0]) for r in await cur.fetchall()]
        start = datetime.combine(DAY - timedelta(days=1), time(0), IST)
        bars = await bar_queries.bars_in_range(
            conn, "NSE", "TZTEST", "1m", start, start + timedelta(days=2), 100
        )
        starts = await bar_queries.bar_starts(
            conn, "NSE", "TZTEST", "1m", start, start + timedelta(days=2)
        )
        assert starts == [b.timestamp for b in bars]
        return plain, labels, dumps(bars)


def test_any_session_time_zone_gives_the_same_bars(module_db_url: str) -> None:
    # Bars on both sides of IST and UTC midnight.
    stamps = [datetime.combine(DAY, time(0), IST) + timedelta(minutes=m)
              for m in (-1, 0, 1, 329, 330, 331, 555)]  # fmt: skip
    insert_bars(module_db_url, make_bars("TZTEST", 1, stamps, base=100, step=0.5))
    results = {
        tz: asyncio.run(_read(module_db_url, tz))
        for tz in ("Asia/Kolkata", "UTC", "America/New_York", "Australia/Lord_Howe")
    }
    expected_json = None
    for tz, (plain, labels, body) in results.items():
        assert labels == plain, tz  # the same instants
        # What the API sent before: psycopg's value in the session zone, then IST.
        assert [x.isoformat() for x in labels] == [p.astimezone(IST).isoformat() for p in plain]
        assert all(x.utcoffset() == timedelta(hours=5, minutes=30) for x in labels)
        expected_json = expected_json or body
        assert body == expected_json, tz
    assert b'"timestamp":"2024-02-05T23:59:00+05:30"' in expected_json
    assert b'"timestamp":"2024-02-06T05:30:00+05:30"' in expected_json
