"""``api.bar_cache`` piece by piece: the cache with a stand-in listener, the listener on a
real database (its round trip and reconnects), and MB_API_BAR_CACHE_MB."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from api.bar_cache import ENTRY_OVERHEAD, BarCache, BarChangeListener
from api.metrics import Registry
from api.options import DEFAULT_BAR_CACHE_MB, MIB, bar_cache_bytes_from_env
from api.responses import Rendered


class FakeListener:
    """``sync`` answers at once (True), or never (``hang``)."""

    def __init__(self) -> None:
        self.hang = False
        self.calls = 0

    def sync(self) -> asyncio.Future[bool]:
        self.calls += 1
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if not self.hang:
            fut.set_result(True)
        return fut


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_cache(max_bytes: int = 10_000, ttl: float = 300.0) -> tuple[BarCache, FakeListener, Clock]:
    clock = Clock()
    cache = BarCache(max_bytes, ttl, Registry(), clock=clock, sync_timeout=0.05)
    listener = FakeListener()
    cache.listener = listener  # type: ignore[assignment]
    cache.listening_started()
    return cache, listener, clock


def body(n: int, tag: str = "x") -> Rendered:
    return Rendered((tag * n).encode(), "application/json")


def get(cache: BarCache, key: Any) -> Rendered | None:
    return asyncio.run(cache.get(key))


RELIANCE = ("NSE", "RELIANCE")


def store(cache: BarCache, key: Any, rendered: Rendered, symbol: tuple[str, str] = RELIANCE) -> bool:
    return cache.put(key, cache.ticket(*symbol), rendered)


def test_a_stored_answer_is_served_after_a_round_trip() -> None:
    cache, listener, _ = make_cache()
    assert get(cache, "k") is None and listener.calls == 0  # a miss needs no round trip
    assert store(cache, "k", body(10))
    assert get(cache, "k") == body(10)
    assert listener.calls == 1
    assert cache.bytes == 10 + ENTRY_OVERHEAD and len(cache) == 1


def test_a_change_of_the_symbol_drops_its_answers_and_voids_tickets() -> None:
    cache, _, _ = make_cache()
    store(cache, "a", body(1))
    store(cache, "b", body(1))
    store(cache, "t", body(1), ("NSE", "TCS"))
    ticket = cache.ticket(*RELIANCE)
    other = cache.ticket("NSE", "TCS")
    cache.changed("NSE:RELIANCE")
    assert get(cache, "a") is None and get(cache, "b") is None
    assert get(cache, "t") == body(1)
    assert not cache.put("a", ticket, body(2))  # read before the change: not stored
    assert cache.put("t2", other, body(2))  # another symbol's ticket is still good
    assert cache.put("a", cache.ticket(*RELIANCE), body(3))
    assert get(cache, "a") == body(3)
    assert cache.bytes == sum(e.size for e in cache._entries.values())


def test_payload_split_at_the_first_colon_and_exact_case() -> None:
    cache, _, _ = make_cache()
    store(cache, "n", body(1), ("NSE", "NIFTY 50"))
    store(cache, "m", body(1), ("MCX", "A:B"))
    cache.changed("NSE:nifty 50")  # symbols are stored upper case: another symbol
    assert get(cache, "n") is not None
    cache.changed("NSE:NIFTY 50")
    cache.changed("MCX:A:B")
    assert get(cache, "n") is None and get(cache, "m") is None


def test_truncate_and_listen_changes_empty_the_cache_and_void_tickets() -> None:
    cache, _, _ = make_cache()
    for event in (lambda: cache.changed("*"), cache.listening_started):
        store(cache, "k", body(5))
        ticket = cache.ticket(*RELIANCE)
        event()
        assert len(cache) == 0 and cache.bytes == 0
        assert not cache.put("k", ticket, body(5))
    cache.listening_lost()
    assert cache.ticket(*RELIANCE) is None  # nothing is stored while not listening
    assert not cache.put("k", None, body(5))
    cache.listening_started()
    assert store(cache, "k", body(5))


def test_no_hit_without_a_round_trip() -> None:
    cache, listener, _ = make_cache()
    store(cache, "k", body(5))
    listener.hang = True  # the LISTEN connection does not answer
    assert get(cache, "k") is None
    listener.hang = False
    assert get(cache, "k") == body(5)
    cache.listener = None
    assert get(cache, "k") is None


def test_a_notification_during_the_round_trip_wins() -> None:
    cache, _, _ = make_cache()
    store(cache, "k", body(5))

    class Late(FakeListener):
        def sync(self) -> asyncio.Future[bool]:
            fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

            def answer() -> None:
                cache.changed("NSE:RELIANCE")  # arrived before the round trip's answer
                fut.set_result(True)

            asyncio.get_running_loop().call_soon(answer)
            return fut

    cache.listener = Late()  # type: ignore[assignment]
    assert get(cache, "k") is None


def test_entries_expire_after_the_ttl() -> None:
    cache, _, clock = make_cache(ttl=300)
    store(cache, "k", body(5))
    clock.now += 299
    assert get(cache, "k") is not None
    clock.now += 2
    assert get(cache, "k") is None and len(cache) == 0


def test_least_recently_used_go_first_and_big_answers_are_not_kept() -> None:
    size = 100 + ENTRY_OVERHEAD
    cache, _, _ = make_cache(max_bytes=4 * size)
    for k in "abcd":
        assert store(cache, k, body(100))
    assert get(cache, "a") is not None  # a is now the most recent
    store(cache, "e", body(100))
    assert [k for k in "abcde" if k in cache._entries] == ["a", "c", "d", "e"]
    assert cache.bytes == 4 * size
    store(cache, "c", body(100, "y"))  # replacing an entry counts it once
    assert cache.bytes == 4 * size and get(cache, "c") == body(100, "y")
    assert not store(cache, "big", body(size - ENTRY_OVERHEAD + 1))  # over a quarter
    assert "big" not in cache._entries
    cache.changed("NSE:RELIANCE")
    assert cache.bytes == 0 and not cache._by_symbol


def test_disabled() -> None:
    cache = BarCache(0, 300, Registry())
    assert not cache.enabled
    assert asyncio.run(cache.get("k")) is None
    cache.listening_started()
    assert cache.ticket(*RELIANCE) is None


def test_metrics_are_in_the_registry() -> None:
    registry = Registry()
    cache = BarCache(10_000, 300, registry, sync_timeout=0.05)
    cache.listener = FakeListener()  # type: ignore[assignment]
    cache.listening_started()
    cache.put("k", cache.ticket(*RELIANCE), body(5))
    asyncio.run(cache.get("k"))
    asyncio.run(cache.get("other"))
    cache.changed("NSE:RELIANCE")
    text = registry.render()
    for line in ("mb_api_bar_cache_hits_total 1", "mb_api_bar_cache_misses_total 1",
                 'mb_api_bar_cache_invalidations_total{reason="write"} 1',
                 "mb_api_bar_cache_notifications_total 1", "mb_api_bar_cache_entries 0",
                 "mb_api_bar_cache_listening 1"):  # fmt: skip
        assert line in text, line


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(None, DEFAULT_BAR_CACHE_MB * MIB), ("", DEFAULT_BAR_CACHE_MB * MIB), ("0", 0),
     ("16", 16 * MIB), ("0.5", MIB // 2), (" 8 ", 8 * MIB)],  # fmt: skip
)
def test_size_from_the_environment(raw: str | None, expected: int) -> None:
    env = {} if raw is None else {"MB_API_BAR_CACHE_MB": raw}
    assert bar_cache_bytes_from_env(env) == expected


@pytest.mark.parametrize("raw", ["lots", "-1", "nan", "inf"])
def test_bad_sizes_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="MB_API_BAR_CACHE_MB"):
        bar_cache_bytes_from_env({"MB_API_BAR_CACHE_MB": raw})


# ---- the listener on a real database ---------------------------------------------------


def run(main: Callable[[], Any]) -> Any:
    return asyncio.run(main())


async def _listening(dsn: str, **kwargs: Any) -> tuple[BarCache, BarChangeListener]:
    cache = BarCache(MIB, 300, Registry())
    listener = BarChangeListener(dsn, cache, **kwargs)
    cache.listener = listener
    await listener.start()
    assert cache.listening
    return cache, listener


UPDATE = ("INSERT INTO md.intraday_bars (exchange, symbol, instrument_token, bar_timestamp, "
          "timeframe, open, high, low, close) VALUES ('NSE', %s, 1, "
          "'2024-01-30 09:15+05:30'::timestamptz + %s * interval '1 minute', '1m', 1, 1, 1, 1)")  # fmt: skip


def test_a_round_trip_brings_every_notification_committed_before_it(db_url: str) -> None:
    async def main() -> None:
        cache, listener = await _listening(db_url)
        try:
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
                for i in range(300):
                    ticket = cache.ticket("NSE", "SYNC")
                    await conn.execute(UPDATE, ("SYNC", i))  # committed
                    assert await listener.sync()
                    assert not cache.put("k", ticket, body(1)), f"round {i}"
        finally:
            await listener.stop()

    run(main)


def test_waiting_requests_share_round_trips(db_url: str) -> None:
    async def main() -> None:
        _, listener = await _listening(db_url)
        try:
            before = listener.syncs
            results = await asyncio.gather(*(listener.sync() for _ in range(50)))
            assert all(results)
            assert listener.syncs - before == 2  # the one on its way, and one for the rest
        finally:
            await listener.stop()

    run(main)


def test_notifications_apply_without_requests_and_rollbacks_send_none(db_url: str) -> None:
    async def main() -> None:
        cache, listener = await _listening(db_url)
        try:
            ticket = cache.ticket("NSE", "QUIET")
            async with await psycopg.AsyncConnection.connect(db_url) as conn:
                await conn.execute(UPDATE, ("QUIET", 1))
                await conn.rollback()
            await listener.sync()
            assert cache.put("k", ticket, body(1))
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
                await conn.execute(UPDATE, ("QUIET", 2))
            for _ in range(200):  # applied as it arrives: no round trip asked for
                if len(cache) == 0:
                    break
                await asyncio.sleep(0.01)
            assert len(cache) == 0
        finally:
            await listener.stop()

    run(main)


def test_a_lost_connection_is_noticed_and_replaced(db_url: str) -> None:
    async def main() -> None:
        cache, listener = await _listening(db_url, backoff_initial=0.05, probe_interval=0.2)
        try:
            cache.put("k", cache.ticket(*RELIANCE), body(1))
            pid = listener.backend_pid
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
                await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert not await listener.sync() or not cache.listening or len(cache) == 0
            for _ in range(300):
                if cache.listening and listener.backend_pid not in (None, pid):
                    break
                await asyncio.sleep(0.01)
            assert cache.listening and listener.backend_pid != pid
            assert len(cache) == 0
            assert await listener.sync()
        finally:
            await listener.stop()
        assert not cache.listening

    run(main)


def test_generations_are_forgotten_beyond_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("api.bar_cache.MAX_GENERATIONS", 3)
    cache, _, _ = make_cache()
    store(cache, "k", body(1))
    ticket = cache.ticket("NSE", "OTHER")
    for s in ("A", "B", "C", "D"):
        cache.changed(f"NSE:{s}")
    assert len(cache._generations) == 1  # forgotten, then D
    assert not cache.put("o", ticket, body(1))  # tickets from before are void
    assert get(cache, "k") == body(1)  # entries are still good
    cache.changed("NSE:RELIANCE")
    assert get(cache, "k") is None
