"""Live messages: packing under the NOTIFY limit, conflation, ordering, a database outage."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import orjson

from market_bridge.aggregation import Bar, BarUpdate
from market_bridge.collect import LivePublisher
from market_bridge.collect.messages import MAX_PAYLOAD, message, pack
from market_bridge.kite.models import IST, Tick

from .conftest import free_port
from .test_streaming_support import listening, wait_for

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=IST)


def bar(minute: int, close: float, final: bool = False, revision: int = 0, tf: str = "1m") -> Bar:
    return Bar(408065, tf, T0 + timedelta(minutes=minute), 1.0, 2.0, 0.5, close, 10, 3, 1.2,
               None, final, revision)  # fmt: skip


def tick(price: float, second: int = 0) -> Tick:
    return Tick(408065, "quote", True, price, volume_traded=int(price * 10),
                received_at=T0 + timedelta(seconds=second))  # fmt: skip


def test_pack_keeps_order_and_every_payload_under_the_limit() -> None:
    msgs = [message("tick", f"SYM{i % 37}", {"i": i, "pad": "x" * (i % 300)}) for i in range(3000)]
    msgs.insert(5, message("stats", "HUGE", {"pad": "y" * 9000}))
    packed = pack(msgs)
    assert packed.oversized == 1 and packed.messages == 3000
    assert all(len(p.encode()) < MAX_PAYLOAD for p in packed.payloads)
    assert len(packed.payloads) > 10
    out = [m for p in packed.payloads for m in orjson.loads(p)]
    assert [m["data"]["i"] for m in out] == list(range(3000))


def test_publisher_conflates_ticks_never_drops_bars_and_never_shows_forming_after_final(
    db_url: str,
) -> None:
    async def go() -> None:
        pub = LivePublisher(db_url, interval=10)  # flushed by hand below
        async with listening(db_url) as live:
            for i in range(1000):
                pub.tick("INFY", tick(100 + i * 0.05, i))
            pub.tick("TCS", tick(3000.0))
            pub.bar("INFY", BarUpdate(bar(0, 101.0), "forming"))
            pub.bar("INFY", BarUpdate(bar(0, 102.0), "forming"))
            pub.bar("INFY", BarUpdate(bar(0, 103.0, final=True), "final"))
            pub.bar("INFY", BarUpdate(bar(1, 104.0), "forming"))
            pub.bar("INFY", BarUpdate(bar(0, 105.0, final=True, revision=1), "revised"))
            pub.status("INFY", {"state": "feed_lost", "collector": "c", "at": T0.isoformat(),
                                "reason": "stall"})  # fmt: skip
            assert await pub.flush() == 6
            await wait_for(lambda: asyncio.sleep(0, len(live.messages) == 6), what="messages")
            await pub.close()
        kinds = [(m["type"], m["symbol"]) for m in live.messages]
        assert kinds == [("bar", "INFY"), ("bar", "INFY"), ("status", "INFY"), ("bar", "INFY"),
                         ("tick", "INFY"), ("tick", "TCS")]  # fmt: skip
        final, revised, _, forming = (m["data"] for m in live.messages[:4])
        assert (final["close"], final["final"], final["revision"]) == (103.0, True, 0)
        assert (revised["close"], revised["final"], revised["revision"]) == (105.0, True, 1)
        assert (forming["close"], forming["final"]) == (104.0, False)  # the next minute's
        assert live.messages[4]["data"]["price"] == 100 + 999 * 0.05  # latest tick wins
        assert pub.metrics.conflated == 999 + 1 and pub.metrics.dropped == 0

    asyncio.run(go())


def test_database_down_drops_live_messages_without_blocking() -> None:
    async def go() -> None:
        pub = LivePublisher(f"postgresql://nobody@127.0.0.1:{free_port()}/none", interval=10,
                            retry_interval=5.0)  # fmt: skip
        t0 = time.monotonic()
        for i in range(10_000):
            pub.tick(f"S{i % 100}", tick(100.0 + i))
        pub.bar("S1", BarUpdate(bar(0, 1.0, final=True), "final"))
        assert time.monotonic() - t0 < 0.5  # producers only touch memory
        assert await pub.flush() == 0
        assert pub.metrics.dropped == 101 and not pub.metrics.db_up
        assert pub.metrics.last_error
        pub.tick("S1", tick(1.0))
        t0 = time.monotonic()
        assert await pub.flush() == 0  # within retry_interval: not even tried
        assert time.monotonic() - t0 < 0.05 and pub.metrics.dropped == 102
        await pub.close()

    asyncio.run(go())
