"""Pure logic of the streaming core: feed health and feed time (status messages and bar
closing come from them), the hot-path tick rows, subscription resolution."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from market_bridge.collect.feed import FeedClock, FeedMonitor, FeedSample
from market_bridge.collect.rows import tick_row
from market_bridge.collect.spec import CollectorSpec, resolve
from market_bridge.instruments import Instrument, InstrumentIndex
from market_bridge.kite.codec import decode_frame, encode_ticks
from market_bridge.kite.models import IST, DepthLevel, Tick
from market_bridge.storage import rows as storage_rows
from market_bridge.watchlists import get_watchlist

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=IST)


def sample(connected: int = 1, reconnects: int = 0, stalls: int = 0, ticks: int = 0,
           garbage: int = 0, expected: int = 1) -> FeedSample:  # fmt: skip
    return FeedSample(expected, connected, reconnects, stalls, ticks, garbage)


def test_feed_monitor_events() -> None:
    mon = FeedMonitor(garbage_after=1.0)
    at = [T0 + timedelta(seconds=s) for s in range(20)]
    assert mon.observe(sample(connected=0), at[0]) == []  # still connecting: no event
    assert mon.observe(sample(ticks=5), at[1]) == [] and mon.state == "up"
    # a reconnect completed between two polls: lost and restored at once
    events = mon.observe(sample(reconnects=1, ticks=9), at[2])
    assert [(e.state, e.reason) for e in events] == [("feed_lost", "disconnect"),
                                                     ("feed_restored", "disconnect")]  # fmt: skip
    # a stall: lost until connected again
    events = mon.observe(sample(connected=0, reconnects=2, stalls=1, ticks=9), at[3])
    assert [(e.state, e.reason) for e in events] == [("feed_lost", "stall")]
    assert mon.observe(sample(connected=0, reconnects=3, stalls=1, ticks=9), at[4]) == []
    events = mon.observe(sample(reconnects=3, stalls=1, ticks=12), at[5])
    assert [(e.state, e.lost_at) for e in events] == [("feed_restored", at[3])]
    # malformed frames only: lost after garbage_after; a reconnect does not end it, ticks do
    assert mon.observe(sample(reconnects=3, stalls=1, ticks=12, garbage=4), at[6]) == []
    events = mon.observe(sample(reconnects=3, stalls=1, ticks=12, garbage=9), at[7])
    assert [(e.state, e.reason) for e in events] == [("feed_lost", "garbage")]
    mon.reset_garbage()
    assert mon.observe(sample(reconnects=4, stalls=1, ticks=12, garbage=9), at[8]) == []
    events = mon.observe(sample(reconnects=4, stalls=1, ticks=13, garbage=9), at[9])
    assert [e.state for e in events] == ["feed_restored"]
    # an auth failure while down for another reason is announced too
    mon.observe(sample(connected=0, reconnects=5, stalls=1, ticks=13, garbage=9), at[10])
    assert [(e.state, e.reason) for e in mon.fail("auth_failed", at[11])] == [
        ("feed_lost", "auth_failed")]  # fmt: skip
    assert mon.fail("auth_failed", at[12]) == []


def test_feed_clock_follows_exchange_time_never_backwards_never_far_ahead() -> None:
    clock = FeedClock(max_ahead=60)
    assert clock.now(1000.0) is None
    clock.observe(500.0, 1000.0)  # a replay: exchange time 500 s behind
    assert clock.now(1001.0) == 501.0
    clock.observe(499.0, 1002.0)  # an older packet does not move it
    assert clock.now(1002.0) == 502.0
    clock.observe(510.0, 1003.0)
    assert clock.now(1003.0) == 510.0
    clock.observe(5000.0, 1004.0)  # implausibly ahead of its arrival: ignored
    assert clock.now(1004.0) == 511.0
    clock.observe(505.0, 1004.0)  # older than the newest: ignored
    assert clock.now(1004.5) == 511.5


def _inst(symbol: str, token: int, exchange: str = "NSE") -> Instrument:
    return Instrument(token, token >> 8, symbol, symbol, 0.0, None, 0.0, 0.05, 1, "EQ",
                      exchange, exchange)  # fmt: skip


def test_hot_path_tick_rows_equal_the_storage_rows() -> None:
    depth = tuple(DepthLevel(100.0 - i * 0.05, 10 * (i + 1), i + 1) for i in range(5))
    asks = tuple(DepthLevel(100.05 + i * 0.05, 7 * (i + 1), i + 2) for i in range(5))
    full = Tick(408065, "full", True, 100.0, 5, 99.5, 1000, 50, 60, 99.0, 101.0, 98.0,
                99.2, 0.8, T0, None, None, None, T0, depth, asks)  # fmt: skip
    quote = Tick(408065, "quote", True, 100.0, 5, 99.5, 1000, 50, 60, 99.0, 101.0, 98.0,
                 99.2)  # fmt: skip
    inst = _inst("INFY", 408065)
    for tick in decode_frame(encode_ticks([full, quote]), T0):
        expected = storage_rows.tick_row(
            decode_frame(encode_ticks([tick]), T0)[0], inst, 7
        )  # a fresh decode: depth not parsed yet on the other side
        assert tick_row(tick, inst, 7) == expected
    assert tick_row(full, inst, 7)[11:15] == (100.0, 10, 100.05, 7)


def test_resolution_reports_unknown_symbols_and_expands_dynamic_watchlists() -> None:
    index = InstrumentIndex([_inst("INFY", 408065), _inst("SENSEX", 265, "BSE"),
                             _inst("TCS", 2953217)])  # fmt: skip
    spec = CollectorSpec("c", symbols=("INFY", "BSE:SENSEX", "NOPE", "INFY"),
                         watchlists=("NOSUCHLIST",))  # fmt: skip
    res = resolve(spec, index)
    assert res.symbols == ["INFY", "BSE:SENSEX"]
    assert res.unknown_symbols == ("NOPE",)
    problems = res.describe_problems() or ""
    assert "NOSUCHLIST" in problems and "NOPE" in problems and "instruments sync" in problems
    movers = resolve(CollectorSpec("m", watchlists=("TOP_GAINERS",)), index)
    universe = set(get_watchlist("NIFTY50").symbols) | set(get_watchlist("NIFTYNEXT50").symbols)
    assert set(movers.symbols) == {"INFY", "TCS"} & universe
    assert len(movers.unknown_symbols) == len(universe) - len(movers.symbols)
    with pytest.raises(ValueError):
        CollectorSpec.from_row(("x",))


def test_tune_gc_freezes_start_up_objects_once() -> None:
    import subprocess
    import sys

    code = (
        "import gc; from market_bridge.collect.runtime import tune_gc\n"
        "tune_gc(); frozen = gc.get_freeze_count(); tune_gc()\n"
        "assert frozen > 1000 and gc.get_freeze_count() == frozen, frozen\n"
        "assert gc.get_threshold()[0] == 50_000\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
