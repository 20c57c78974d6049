"""Pure parts of the API: time parameters, the metrics registry, the SQL file parser."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from api.errors import ApiError
from api.metrics import Registry
from api.params import parse_instant
from market_bridge.kite.models import IST
from market_bridge.queries import load_queries, parse_queries


@pytest.mark.parametrize(
    ("raw", "upper", "expected"),
    [
        ("2024-01-30", False, datetime(2024, 1, 30, tzinfo=IST)),
        ("2024-01-30", True, datetime(2024, 1, 31, tzinfo=IST)),  # exclusive end of the day
        ("2024-01-30T03:45:00Z", False, datetime(2024, 1, 30, 9, 15, tzinfo=IST)),
        ("2024-01-30t03:45:00z", False, datetime(2024, 1, 30, 9, 15, tzinfo=IST)),
        ("2024-01-30T09:15:00 05:30", False, datetime(2024, 1, 30, 9, 15, tzinfo=IST)),
        ("2024-01-30 09:15", False, datetime(2024, 1, 30, 9, 15, tzinfo=IST)),  # naive = IST
        ("2024-01-30T09:15:00+05:30", True,
         datetime(2024, 1, 30, 9, 15, tzinfo=IST) + timedelta(microseconds=1)),
    ],
)
def test_parse_instant(raw: str, upper: bool, expected: datetime) -> None:
    value = parse_instant("from", raw, upper=upper)
    assert value == expected and value.utcoffset() == timedelta(hours=5, minutes=30)


@pytest.mark.parametrize("raw", ["yesterday", "2024-13-01", "2024-01-30T25:00", "9999-12-31",
                                 "0001-01-01T00:00:00Z", "2024-01-30T09:15:00+99:00", "\x00"])
def test_parse_instant_rejects(raw: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_instant("to", raw, upper=True)
    assert info.value.status == 400 and "to=" in info.value.detail


def test_registry_renders_prometheus_text() -> None:
    registry = Registry()
    hits = registry.counter("hits_total", "Hits", ("route",))
    hits.inc(route='/a"b')
    hits.inc(2, route='/a"b')
    latency = registry.histogram("latency_seconds", "Latency", buckets=(0.1, 1.0))
    latency.observe(0.05)
    latency.observe(0.5)
    latency.observe(5)
    registry.add_callback(lambda: [("pool_size", {"pool": "api"}, 3)])
    text = registry.render()
    assert 'hits_total{route="/a\\"b"} 3' in text
    assert 'latency_seconds_bucket{le="0.1"} 1' in text
    assert 'latency_seconds_bucket{le="1.0"} 2' in text
    assert 'latency_seconds_bucket{le="+Inf"} 3' in text
    assert "latency_seconds_count 3" in text and "latency_seconds_sum 5.55" in text
    assert 'pool_size{pool="api"} 3' in text
    assert registry.counter("hits_total", "Hits", ("route",)) is hits
    with pytest.raises(ValueError):
        registry.gauge("hits_total", "Hits", ("route",))


def test_named_queries() -> None:
    parsed = parse_queries("-- header\n-- name: one\nSELECT 1;\n\n-- name: two\nSELECT %(x)s;\n")
    assert parsed == {"one": "SELECT 1;", "two": "SELECT %(x)s;"}
    with pytest.raises(ValueError):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;")
    for filename in ("bars.sql", "ticks.sql", "order_book.sql", "symbols.sql",
                     "collectors.sql", "streaming.sql"):
        assert load_queries(filename)
