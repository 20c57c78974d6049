"""Bars as CSV, Parquet and Arrow IPC (format= or Accept), parsed back with pyarrow."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date, datetime, time

import httpx
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from market_bridge.kite.models import IST

from .test_api_support import (
    SeedBar,
    insert_bars,
    make_bars,
    running_api,
    session_minutes,
)

BARS = make_bars(
    "NIFTY 50", 256265, session_minutes(date(2024, 1, 30), last=time(9, 24)), base=21500.5,
    step=1.25, provenance="live",
)
COLUMNS = ["timestamp", "open", "high", "low", "close", "volume", "trades_count", "vwap", "oi",
           "provenance", "revision"]


@pytest.fixture(scope="module")
def client(module_db_url: str) -> Iterator[httpx.Client]:
    insert_bars(module_db_url, BARS)
    with running_api(module_db_url) as server, server.client() as c:
        yield c


def _expected_rows(bars: list[SeedBar]) -> list[dict[str, object]]:
    return [
        {"timestamp": b.ts, "open": b.open, "high": b.high, "low": b.low, "close": b.close,
         "volume": b.volume, "trades_count": b.trades_count, "vwap": b.vwap, "oi": b.oi,
         "provenance": b.provenance, "revision": 0}
        for b in bars
    ]


def _get(client: httpx.Client, **kwargs: object) -> httpx.Response:
    r = client.get("/intraday/bars/NSE:NIFTY%2050", **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    return r


def test_json_is_the_default(client: httpx.Client) -> None:
    r = _get(client)
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["count"] == len(BARS)


@pytest.mark.parametrize(
    ("how", "value"),
    [("format", "parquet"), ("accept", "application/vnd.apache.parquet")],
)
def test_parquet_round_trip(client: httpx.Client, how: str, value: str) -> None:
    r = _get(client, **({"params": {"format": value}} if how == "format" else
                        {"headers": {"Accept": value}}))
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    assert 'filename="NSE_NIFTY_50_1m.parquet"' in r.headers["content-disposition"]
    table = pq.read_table(io.BytesIO(r.content))
    assert table.column_names == COLUMNS
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="Asia/Kolkata")
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    assert meta == {"symbol": "NIFTY 50", "exchange": "NSE", "timeframe": "1m"}
    assert table.to_pylist() == _expected_rows(BARS)


@pytest.mark.parametrize(
    ("how", "value"),
    [("format", "arrow"), ("accept", "application/vnd.apache.arrow.stream")],
)
def test_arrow_ipc_stream_round_trip(client: httpx.Client, how: str, value: str) -> None:
    r = _get(client, **({"params": {"format": value}} if how == "format" else
                        {"headers": {"Accept": value}}))
    assert r.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(r.content).read_all()
    assert table.column_names == COLUMNS
    assert table.to_pylist() == _expected_rows(BARS)


@pytest.mark.parametrize(("how", "value"), [("format", "csv"), ("accept", "text/csv")])
def test_csv_round_trip_with_ist_offsets(client: httpx.Client, how: str, value: str) -> None:
    r = _get(client, **({"params": {"format": value}} if how == "format" else
                        {"headers": {"Accept": value}}))
    assert r.headers["content-type"].startswith("text/csv")
    first_line, second_line = r.text.splitlines()[:2]
    assert first_line == ",".join(f'"{c}"' for c in COLUMNS)
    assert second_line.startswith('"2024-01-30T09:15:00+05:30",')
    table = pa_csv.read_csv(
        io.BytesIO(r.content),
        convert_options=pa_csv.ConvertOptions(column_types={"timestamp": pa.string()}),
    )
    rows = table.to_pylist()
    expected = _expected_rows(BARS)
    assert [datetime.fromisoformat(str(row["timestamp"])) for row in rows] == [
        e["timestamp"] for e in expected
    ]
    for row, exp in zip(rows, expected, strict=True):
        assert {k: v for k, v in row.items() if k != "timestamp"} == {
            k: v for k, v in exp.items() if k != "timestamp"
        }


def test_format_parameter_beats_accept_and_q_values_order_accept(client: httpx.Client) -> None:
    r = _get(client, params={"format": "json"}, headers={"Accept": "text/csv"})
    assert r.headers["content-type"].startswith("application/json")
    r = _get(client, headers={"Accept": "text/csv;q=0.5, application/vnd.apache.parquet"})
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    r = _get(client, headers={"Accept": "application/xml, */*"})
    assert r.headers["content-type"].startswith("application/json")


def test_empty_result_still_has_the_schema(client: httpx.Client) -> None:
    r = _get(client, params={"format": "parquet", "from": "2024-01-01", "to": "2024-01-02"})
    table = pq.read_table(io.BytesIO(r.content))
    assert table.num_rows == 0 and table.column_names == COLUMNS


def test_today_also_speaks_the_formats(client: httpx.Client) -> None:
    r = client.get("/intraday/today/NSE:NIFTY%2050", params={"format": "arrow"})
    assert pa.ipc.open_stream(r.content).read_all().num_rows == len(BARS)


def test_unknown_format_is_400_listing_valid_ones(client: httpx.Client) -> None:
    r = client.get("/intraday/bars/NSE:NIFTY%2050", params={"format": "xlsx"})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid format"
    assert "json, csv, parquet, arrow" in r.json()["detail"]


def test_timestamps_are_ist(client: httpx.Client) -> None:
    table = pq.read_table(io.BytesIO(_get(client, params={"format": "parquet"}).content))
    first = table.column("timestamp")[0].as_py()
    assert first == datetime(2024, 1, 30, 9, 15, tzinfo=IST)
    assert first.utcoffset().total_seconds() == 19800
