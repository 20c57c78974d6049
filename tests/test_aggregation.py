"""BarAggregator: a property test against an independent pandas oracle, plus unit tests.

The oracle shares no code with the aggregator: it replays the documented acceptance and
volume rules (docs/aggregation.md) in a plain loop over the events, then builds bars of
every timeframe with a pandas groupby on 09:15-anchored bins (day bins at midnight IST).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market_bridge.aggregation import Bar, BarAggregator, BarUpdate
from market_bridge.aggregation.keys import key_datetime, minute_key, period_key
from market_bridge.kite.models import IST, Tick
from market_bridge.market.timeframes import TIMEFRAMES

ALL_TFS = tuple(TIMEFRAMES)
D1 = date(2026, 3, 2)  # a Monday
FAR_FUTURE = datetime(2030, 1, 1, tzinfo=IST)


def at(hh: int, mm: int, ss: int = 0, d: date = D1, us: int = 0) -> datetime:
    return datetime.combine(d, time(hh, mm, ss, us), IST)


def tick(
    ts: datetime | None,
    price: float,
    cum: int | None = None,
    *,
    token: int = 256 * 11 + 1,
    oi: int | None = None,
    received_at: datetime | None = None,
) -> Tick:
    return Tick(
        instrument_token=token,
        mode="full",
        tradable=True,
        last_price=price,
        volume_traded=cum,
        oi=oi,
        exchange_timestamp=ts,
        received_at=received_at,
    )


# -- the oracle ----------------------------------------------------------------------------


@dataclass
class _OracleInstrument:
    max_ts: datetime | None = None
    last: tuple[Any, ...] | None = None  # (ts, price, cum, oi) of the last accepted tick
    day: date | None = None
    base: int = 0
    last_volume_ts: datetime | None = None


@dataclass
class Config:
    grace: timedelta = timedelta(seconds=2)
    late_window: timedelta = timedelta(minutes=10)
    max_future: timedelta = timedelta(minutes=5)
    started_at: datetime | None = None


@dataclass
class Oracle:
    cfg: Config
    now: datetime | None = None
    started: datetime | None = None
    instruments: dict[int, _OracleInstrument] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.started = self.cfg.started_at

    def time(self, now: datetime) -> None:
        self.started = self.started or now
        self.now = now if self.now is None else max(self.now, now)

    def tick(self, tk: Tick) -> None:
        ts = tk.exchange_timestamp or tk.received_at
        if ts is None:
            return
        ts = ts.astimezone(IST)
        self.started = self.started or ts
        if tk.last_price <= 0:
            return
        if self.now is not None and ts > self.now + self.cfg.max_future:
            return
        st_ = self.instruments.setdefault(tk.instrument_token, _OracleInstrument())
        marks = [x for x in (self.now, st_.max_ts) if x is not None]
        minute_end = ts.replace(second=0, microsecond=0) + timedelta(minutes=1)
        if marks and minute_end + self.cfg.grace + self.cfg.late_window <= max(marks):
            return  # too late
        sig = (ts, tk.last_price, tk.volume_traded, tk.oi)
        if sig == st_.last:
            return  # duplicate of the previous accepted tick
        st_.last = sig
        st_.max_ts = ts if st_.max_ts is None else max(st_.max_ts, ts)
        self.rows.append(
            {
                "token": tk.instrument_token,
                "ts": ts,
                "seq": len(self.rows),
                "price": tk.last_price,
                "delta": self._delta(st_, ts, tk.volume_traded),
                "oi": tk.oi,
            }
        )

    def _delta(self, st_: _OracleInstrument, ts: datetime, cum: int | None) -> int:
        if cum is None:
            return 0
        day = ts.date()
        if st_.day is None or day > st_.day:
            st_.day, st_.base, st_.last_volume_ts = day, cum, ts
            assert self.started is not None
            return cum if self.started <= datetime.combine(day, time(9, 15), IST) else 0
        if day < st_.day:
            return 0
        assert st_.last_volume_ts is not None
        newer = ts > st_.last_volume_ts
        st_.last_volume_ts = max(st_.last_volume_ts, ts)
        if cum > st_.base:
            delta, st_.base = cum - st_.base, cum
            return delta
        if cum < st_.base and newer:
            st_.base = cum  # reset
        return 0

    def bars(self) -> dict[tuple[int, str, datetime], tuple[Any, ...]]:
        out: dict[tuple[int, str, datetime], tuple[Any, ...]] = {}
        if not self.rows:
            return out
        df = pd.DataFrame(self.rows).sort_values(["ts", "seq"], kind="stable")
        df["ts"] = pd.to_datetime(df["ts"])
        df["pv"] = df["price"] * df["delta"]
        df["traded"] = (df["delta"] > 0).astype(int)
        df["oi"] = df["oi"].astype("Float64")
        # bar starts by flooring IST wall time; intraday bins are shifted to a 09:15 origin
        anchor = pd.Timedelta(minutes=9 * 60 + 15)
        frames = []
        for tf in TIMEFRAMES.values():
            if tf.is_intraday:
                starts = (df["ts"] - anchor).dt.floor(f"{tf.minutes}min") + anchor
            else:
                starts = df["ts"].dt.floor("D")
            frames.append(df.assign(tf=tf.name, start=starts))
        agg = (
            pd.concat(frames)
            .groupby(["tf", "token", "start"], sort=False)
            .agg(
                open=("price", "first"),
                high=("price", "max"),
                low=("price", "min"),
                close=("price", "last"),
                volume=("delta", "sum"),
                trades=("traded", "sum"),
                pv=("pv", "sum"),
                oi=("oi", "last"),  # last non-null in (ts, arrival) order
            )
        )
        for r in agg.reset_index().to_dict("records"):
            vol = int(r["volume"])
            out[(int(r["token"]), r["tf"], r["start"].to_pydatetime())] = (
                r["open"],
                r["high"],
                r["low"],
                r["close"],
                vol,
                int(r["trades"]),
                r["pv"] / vol if vol else None,
                None if pd.isna(r["oi"]) else int(r["oi"]),
            )
        return out


def bar_tuple(bar: Bar) -> tuple[Any, ...]:
    return (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades_count, bar.vwap, bar.oi)


def same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    *head_a, vwap_a, oi_a = a
    *head_b, vwap_b, oi_b = b
    if head_a != head_b or oi_a != oi_b or (vwap_a is None) != (vwap_b is None):
        return False
    return vwap_a is None or math.isclose(vwap_a, vwap_b, rel_tol=1e-9)


def check_protocol(updates: list[BarUpdate]) -> dict[tuple[int, str, datetime], Bar]:
    """Latest version of every bar; asserts forming* final revised* with revisions 0,1,2..."""
    latest: dict[tuple[int, str, datetime], Bar] = {}
    for upd in updates:
        bar = upd.bar
        key = (bar.instrument_token, bar.timeframe, bar.start)
        prev = latest.get(key)
        if upd.kind == "forming":
            assert not bar.final and bar.revision == 0
            assert prev is None or not prev.final, f"forming after final: {key}"
        elif upd.kind == "final":
            assert bar.final and bar.revision == 0
            assert prev is None or not prev.final, f"finalised twice: {key}"
        else:
            assert upd.kind == "revised" and bar.final
            assert prev is not None and prev.final and bar.revision == prev.revision + 1
        assert bar.start == TIMEFRAMES[bar.timeframe].bar_start(bar.start)
        latest[key] = bar
    return latest


# -- the property test -----------------------------------------------------------------------

# pre-open, an hour edge, the close, midnight
ANCHORS = [at(9, 13, 30), at(11, 12), at(15, 27), at(23, 57)]
TOKENS = [256 * 101 + 1, 256 * 202 + 2, 256 * 303 + 3]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Config, list[tuple[str, Any]]]:
    base = draw(st.sampled_from(ANCHORS)) + timedelta(seconds=draw(st.integers(0, 150)))
    cfg = Config(
        grace=timedelta(seconds=draw(st.sampled_from([0, 2, 5]))),
        late_window=timedelta(seconds=draw(st.sampled_from([0, 90, 600]))),
        max_future=draw(st.sampled_from([timedelta(minutes=5), timedelta(days=3)])),
        started_at=draw(
            st.sampled_from([None, base - timedelta(hours=2), base + timedelta(seconds=40)])
        ),
    )
    tokens = TOKENS[: draw(st.integers(1, 3))]
    with_oi = {tok: draw(st.booleans()) for tok in tokens}
    price = dict.fromkeys(tokens, 20_000)  # in 0.05 steps
    cum = {tok: draw(st.integers(0, 5_000)) for tok in tokens}
    last: dict[int, Tick] = {}
    clock = base
    events: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(1, 45))):
        gap = draw(
            st.one_of(
                st.integers(0, 2), st.integers(0, 2), st.integers(3, 75), st.integers(76, 700)
            )
        )
        clock += timedelta(seconds=gap)
        if draw(st.integers(0, 30)) == 0:  # next trading morning
            clock = datetime.combine(clock.date() + timedelta(days=1), time(9, 14, 50), IST)
        kind = draw(
            st.sampled_from(
                ["tick"] * 10 + ["dup", "reset", "ltp", "no_ts", "received", "late", "time", "time"]
            )
        )
        tok = draw(st.sampled_from(tokens))
        if kind == "time":
            events.append(("time", clock + timedelta(seconds=draw(st.integers(-5, 30)))))
            continue
        if kind == "dup" and tok in last:
            events.append(("tick", last[tok]))
            continue
        if kind == "no_ts":
            events.append(("tick", tick(None, 1.0, 1, token=tok)))
            continue
        price[tok] = max(1, price[tok] + draw(st.integers(-4, 4)))
        if kind == "reset":
            cum[tok] = draw(st.integers(0, 50))
        elif kind != "ltp":
            cum[tok] += draw(st.sampled_from([0, 0, 1, 7, 50, 1_000]))
        oi = draw(st.integers(0, 3)) * 100 + 10_000 if with_oi[tok] else None
        p = round(price[tok] * 0.05, 2)
        volume = None if kind == "ltp" else cum[tok]
        if kind == "late":  # a delayed packet: older time, cumulative volume of its time
            back = draw(st.integers(1, 240))
            older = max(0, cum[tok] - draw(st.integers(0, 3)) * back)
            events.append(
                ("tick", tick(clock - timedelta(seconds=back), p, older, token=tok, oi=oi))
            )
            continue
        if kind == "received":  # receive time only, in UTC, with milliseconds
            recv = clock.astimezone(UTC) + timedelta(milliseconds=draw(st.integers(0, 999)))
            tk = tick(None, p, volume, token=tok, oi=oi, received_at=recv)
        else:
            tk = tick(clock, p, volume, token=tok, oi=oi)
        last[tok] = tk
        events.append(("tick", tk))
    # network reordering: a few adjacent swaps, sometimes moved further back
    for _ in range(draw(st.integers(0, 6))):
        if len(events) < 2:
            break
        i = draw(st.integers(1, len(events) - 1))
        j = max(0, i - draw(st.sampled_from([1, 1, 2, 5])))
        events.insert(j, events.pop(i))
    return cfg, events


def assert_on_batch_is_on_tick(cfg: Config, events: list[tuple[str, Any]],
                               updates: list[BarUpdate], agg: BarAggregator) -> None:  # fmt: skip
    """The same events through ``on_batch`` (runs of ticks with aware timestamps, as the
    collector's columnar path feeds it) give the same updates and counters."""
    twin = BarAggregator(ALL_TFS, grace=cfg.grace, late_window=cfg.late_window,
                         max_future=cfg.max_future, started_at=cfg.started_at,
                         forming=ALL_TFS)  # fmt: skip
    got: list[BarUpdate] = []
    run: list[Tick] = []

    def flush() -> None:
        if run:
            got.extend(twin.on_batch(
                [t.instrument_token for t in run],
                [t.timestamp.timestamp() for t in run],  # type: ignore[union-attr]
                [t.last_price for t in run], [t.volume_traded for t in run],
                [t.oi for t in run]))  # fmt: skip
            run.clear()

    for kind, value in events:
        if kind == "tick" and value.timestamp is not None and value.timestamp.tzinfo:
            run.append(value)
            continue
        flush()
        got += twin.on_time(value) if kind == "time" else twin.on_tick(value)
    flush()
    assert got == updates
    assert twin.stats == agg.stats


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_bars_match_an_independent_pandas_oracle(
    scenario: tuple[Config, list[tuple[str, Any]]],
) -> None:
    cfg, events = scenario
    agg = BarAggregator(
        ALL_TFS,
        grace=cfg.grace,
        late_window=cfg.late_window,
        max_future=cfg.max_future,
        started_at=cfg.started_at,
        forming=ALL_TFS,
    )
    oracle = Oracle(cfg)
    updates: list[BarUpdate] = []
    for kind, value in events:
        if kind == "time":
            updates += agg.on_time(value)
            oracle.time(value)
        else:
            updates += agg.on_tick(value)
            oracle.tick(value)
    expected = oracle.bars()
    assert_on_batch_is_on_tick(cfg, events, updates, agg)

    # forming updates for every timeframe: the newest version of each bar, final or not,
    # already shows all accepted ticks (checks the "rollup so far + current minute" view)
    before = check_protocol(updates)
    assert set(before) == set(expected)
    for key, bar in before.items():
        assert same(bar_tuple(bar), expected[key]), (key, bar_tuple(bar), expected[key])
    for token in {k[0] for k in before}:
        for name in ALL_TFS:
            start = max(s for tok, n, s in before if tok == token and n == name)
            polled = agg.latest_bar(token, name)
            if polled is not None:  # None: past the late window, forgotten
                assert polled.start == start
                assert same(bar_tuple(polled), expected[(token, name, start)])

    updates += agg.on_time(FAR_FUTURE)
    latest = check_protocol(updates)
    assert all(bar.final for bar in latest.values())
    assert set(latest) == set(expected)
    for key, bar in latest.items():
        assert same(bar_tuple(bar), expected[key]), (key, bar_tuple(bar), expected[key])

    # rollups equal the combination of the published 1m bars
    for (token, name, start), bar in latest.items():
        if name == "1m":
            continue
        tf = TIMEFRAMES[name]
        minutes = sorted(
            (
                b
                for (tok, n, s), b in latest.items()
                if tok == token and n == "1m" and tf.bar_start(s) == start
            ),
            key=lambda b: b.start,
        )
        assert minutes[0].open == bar.open and minutes[-1].close == bar.close
        assert max(b.high for b in minutes) == bar.high and min(b.low for b in minutes) == bar.low
        assert sum(b.volume for b in minutes) == bar.volume
        assert sum(b.trades_count for b in minutes) == bar.trades_count
        ois = [b.oi for b in minutes if b.oi is not None]
        assert (ois[-1] if ois else None) == bar.oi

    stats = agg.stats
    assert stats.ticks_processed == len(oracle.rows)
    assert stats.ticks_processed + stats.ignored == sum(k == "tick" for k, _ in events)
    assert stats.revisions == sum(u.kind == "revised" for u in updates)
    assert stats.bars_finalised == len(latest)


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(IST)
    ),
    st.sampled_from(ALL_TFS),
)
def test_integer_keys_agree_with_timeframe_bar_start(ts: datetime, name: str) -> None:
    tf = TIMEFRAMES[name]
    assert key_datetime(period_key(minute_key(ts.timestamp()), tf.minutes)) == tf.bar_start(ts)


# -- unit tests ------------------------------------------------------------------------------


def finals(updates: list[BarUpdate], tf: str = "1m") -> list[Bar]:
    return [u.bar for u in updates if u.kind == "final" and u.bar.timeframe == tf]


def test_quiet_symbol_is_finalised_by_the_timer_after_the_grace() -> None:
    agg = BarAggregator(("1m", "5m"), started_at=at(9, 0))
    agg.on_tick(tick(at(9, 15, 10), 100.0, 10))
    assert agg.on_time(at(9, 16, 1)) == []  # period over, grace (2 s) not yet
    out = agg.on_time(at(9, 16, 2))
    assert [(u.kind, u.bar.timeframe, u.bar.start) for u in out] == [("final", "1m", at(9, 15))]
    assert out[0].bar.final and out[0].bar.revision == 0 and out[0].bar.volume == 10
    assert agg.on_time(at(9, 19, 0)) == []
    out = agg.on_time(at(9, 20, 2))
    assert [(u.kind, u.bar.timeframe) for u in out] == [("final", "5m")]
    assert agg.stats.bars_finalised == 2


def test_grace_lets_a_late_tick_into_a_forming_bar_then_the_next_tick_finalises() -> None:
    agg = BarAggregator(("1m",), grace=timedelta(seconds=2), started_at=at(9, 0))
    agg.on_tick(tick(at(9, 15, 30), 100.0, 10))
    out = agg.on_tick(tick(at(9, 16, 1), 101.0, 20))  # next minute, within the grace
    assert [u.kind for u in out] == ["forming"] and out[0].bar.start == at(9, 16)
    out = agg.on_tick(tick(at(9, 15, 59), 99.0, 15))  # reordered packet: still forming
    assert [(u.kind, u.bar.start) for u in out] == [("forming", at(9, 15))]
    assert (out[0].bar.low, out[0].bar.close, out[0].bar.volume) == (99.0, 99.0, 10)
    out = agg.on_tick(tick(at(9, 16, 2), 102.0, 30))  # watermark reaches end + grace
    assert [(u.kind, u.bar.start) for u in out] == [("final", at(9, 15)), ("forming", at(9, 16))]
    assert bar_tuple(out[0].bar) == (100.0, 100.0, 99.0, 99.0, 10, 1, 100.0, None)


def test_late_tick_revises_a_final_bar_until_the_late_window_ends() -> None:
    agg = BarAggregator(
        ("1m", "5m"), late_window=timedelta(minutes=3), started_at=at(9, 0), forming=("1m", "5m")
    )
    agg.on_tick(tick(at(9, 15, 10), 100.0, 10))
    agg.on_tick(tick(at(9, 15, 50), 101.0, 20))
    assert finals(agg.on_time(at(9, 16, 5)))[0].high == 101.0
    out = agg.on_tick(tick(at(9, 15, 40), 105.0, 20))  # late: new high, no new volume
    assert [(u.kind, u.bar.timeframe) for u in out] == [("revised", "1m"), ("forming", "5m")]
    assert out[0].bar.revision == 1 and out[0].bar.high == 105.0 and out[0].bar.close == 101.0
    out = agg.on_tick(tick(at(9, 15, 5), 99.0, 20))  # earlier than the open: new open
    assert out[0].bar.revision == 2 and out[0].bar.open == 99.0
    assert agg.on_tick(tick(at(9, 15, 20), 100.0, 20)) == []  # changes nothing: no revision
    agg.on_time(at(9, 19, 2))  # 09:15 bar end + grace + late window
    assert agg.on_tick(tick(at(9, 15, 30), 50.0, 20)) == []
    s = agg.stats
    assert (s.revisions, s.ignored_too_late, s.ticks_processed) == (2, 1, 5)


def test_late_tick_for_a_rollup_that_is_final_revises_both() -> None:
    agg = BarAggregator(("1m", "3m"), started_at=at(9, 0))
    agg.on_tick(tick(at(9, 17, 30), 100.0, 10))
    agg.on_time(at(9, 18, 5))
    out = agg.on_tick(tick(at(9, 16, 0), 90.0, 10))  # minute never seen, period over
    kinds = [(u.kind, u.bar.timeframe, u.bar.start, u.bar.revision) for u in out]
    assert kinds == [("final", "1m", at(9, 16), 0), ("revised", "3m", at(9, 15), 1)]
    assert out[1].bar.open == 90.0 and out[1].bar.close == 100.0
    # exactly at end + grace counts as over
    agg = BarAggregator(("1m",), started_at=at(9, 0))
    agg.on_time(at(9, 16, 2))
    assert [u.kind for u in agg.on_tick(tick(at(9, 15, 30), 100.0, 10))] == ["final"]


def test_first_tick_counts_only_when_watching_since_before_the_open() -> None:
    # started mid-session (by default: at the first timestamp seen): baseline, counts 0
    agg = BarAggregator(("1m",))
    agg.on_tick(tick(at(10, 0, 5), 100.0, 5_000))
    agg.on_tick(tick(at(10, 0, 9), 100.0, 5_040))
    assert finals(agg.on_time(FAR_FUTURE))[0].volume == 40
    # told it has been running since before 09:15: the day's volume so far is real
    agg = BarAggregator(("1m",), started_at=at(9, 0))
    agg.on_tick(tick(at(10, 0, 5), 100.0, 5_000))
    bar = finals(agg.on_time(FAR_FUTURE))[0]
    assert (bar.volume, bar.trades_count, bar.vwap) == (5_000, 1, 100.0)
    # a pre-open tick starts the clock before the open
    agg = BarAggregator(("1m",))
    agg.on_tick(tick(at(9, 7, 0), 100.0, 0))
    agg.on_tick(tick(at(9, 15, 0), 100.0, 700, token=7))  # another instrument, first tick
    assert [b.volume for b in finals(agg.on_time(FAR_FUTURE))] == [0, 700]


def test_day_rollover_resets_the_baseline_and_counts_the_new_days_first_tick() -> None:
    agg = BarAggregator(("1m", "day"))  # starts mid-session on day 1
    d2 = D1 + timedelta(days=1)
    for ts, cum in ((at(14, 0), 100_000), (at(14, 1), 100_500), (at(15, 29), 101_000)):
        agg.on_tick(tick(ts, 100.0, cum))
    updates = agg.on_tick(tick(at(9, 15, 3, d=d2), 100.0, 300))  # lower: new day, not reset
    assert [(u.kind, u.bar.timeframe) for u in updates] == [
        ("final", "1m"),  # 15:29
        ("final", "day"),
        ("forming", "1m"),
    ]
    updates += agg.on_tick(tick(at(9, 15, 9, d=d2), 100.0, 450))
    latest = check_protocol(updates + agg.on_time(FAR_FUTURE))
    tok = 256 * 11 + 1
    assert latest[(tok, "day", at(0, 0))].volume == 1_000
    assert latest[(tok, "day", at(0, 0, d=d2))].volume == 450
    assert latest[(tok, "1m", at(9, 15, d=d2))].trades_count == 2
    assert agg.stats.volume_resets == 0


def test_resets_out_of_order_and_duplicates_never_double_count() -> None:
    agg = BarAggregator(("1m",), started_at=at(9, 0))
    feed = [
        tick(at(9, 20, 1), 100.0, 1_000),
        tick(at(9, 20, 3), 100.5, 1_300),
        tick(at(9, 20, 3), 100.5, 1_300),  # duplicate
        tick(at(9, 20, 2), 100.2, 1_100),  # older packet, arrives late: no volume
        tick(at(9, 20, 3), 100.1, 1_200),  # same second, lower: reordered, not a reset
        tick(at(9, 20, 9), 100.3, 40),  # newer and lower: reset, baseline 40
        tick(at(9, 20, 12), 100.4, 90),
        tick(at(9, 20, 4), 100.4, 90),  # older, equal volume: nothing
        tick(at(9, 20, 10), 100.4, 60),  # older than 09:20:12, lower: reordered, not a reset
        tick(at(9, 20, 13), 100.4, 95),
    ]
    for tk in feed:
        agg.on_tick(tk)
    bar = finals(agg.on_time(FAR_FUTURE))[0]
    assert bar.volume == 1_000 + 300 + 50 + 5
    assert bar.trades_count == 4
    assert (bar.open, bar.high, bar.low, bar.close) == (100.0, 100.5, 100.0, 100.4)
    pv = 100.0 * 1_000 + 100.5 * 300 + 100.4 * 55
    assert bar.vwap == pytest.approx(pv / 1_355)
    s = agg.stats
    assert (s.ignored_duplicate, s.volume_resets, s.ticks_processed) == (1, 1, 9)


def test_open_and_close_follow_timestamps_with_arrival_order_for_ties() -> None:
    agg = BarAggregator(("1m",), started_at=at(9, 0))
    for ts, price in ((at(9, 30, 20), 10.0), (at(9, 30, 5), 11.0), (at(9, 30, 5), 12.0),
                      (at(9, 30, 40), 13.0), (at(9, 30, 40), 14.0)):  # fmt: skip
        agg.on_tick(tick(ts, price, None))
    bar = finals(agg.on_time(FAR_FUTURE))[0]
    assert (bar.open, bar.close, bar.volume, bar.vwap, bar.trades_count) == (11.0, 14.0, 0, None, 0)


def test_ignored_ticks_are_counted() -> None:
    agg = BarAggregator(("1m",), max_future=timedelta(minutes=1))
    assert agg.on_tick(tick(None, 100.0, 1)) == []
    assert agg.on_tick(tick(datetime(2026, 3, 2, 9, 20), 100.0, 1)) == []  # naive
    assert agg.on_tick(tick(at(9, 20), 0.0, 1)) == []  # never traded
    agg.on_time(at(9, 20))
    assert agg.on_tick(tick(at(9, 21, 1), 100.0, 1)) == []  # ahead of the clock
    s = agg.stats
    assert (s.ignored_no_timestamp, s.ignored_invalid, s.ignored_future) == (1, 2, 1)
    assert s.ignored == 4 and s.ticks_processed == 0


def test_oi_is_the_latest_reported_in_the_bar_and_receive_time_is_a_fallback() -> None:
    agg = BarAggregator(("1m",), started_at=at(9, 0))
    agg.on_tick(tick(at(9, 40, 10), 100.0, 5, oi=1_000))
    agg.on_tick(tick(at(9, 40, 5), 100.0, 5, oi=900))  # older
    agg.on_tick(tick(at(9, 40, 11), 100.0, 5, oi=1_100))
    agg.on_tick(tick(at(9, 40, 11), 100.0, 5, oi=1_000))  # only OI differs: not a duplicate
    agg.on_tick(tick(None, 100.0, 6, received_at=at(9, 40, 20).astimezone(UTC)))  # no OI
    bar = finals(agg.on_time(FAR_FUTURE))[0]
    assert (bar.oi, bar.volume) == (1_000, 6)


def test_forming_updates_and_latest_bar() -> None:
    agg = BarAggregator(("1m", "5m", "day"), started_at=at(9, 0))
    out = agg.on_tick(tick(at(9, 16, 0), 100.0, 10))
    assert [u.bar.timeframe for u in out] == ["1m"]  # default: the shortest timeframe
    agg.on_tick(tick(at(9, 17, 0), 102.0, 15))
    five = agg.latest_bar(256 * 11 + 1, "5m")
    assert five is not None and not five.final
    assert (five.start, five.open, five.close, five.volume) == (at(9, 15), 100.0, 102.0, 15)
    assert agg.latest_bar(256 * 11 + 1, "1h") is None and agg.latest_bar(1, "1m") is None
    agg = BarAggregator(("1m", "5m"), forming=())
    assert agg.on_tick(tick(at(9, 16, 0), 100.0, 10)) == []
    agg = BarAggregator(("5m", "1h"), forming=("5m", "1h"))
    assert [u.bar.timeframe for u in agg.on_tick(tick(at(9, 16, 0), 100.0, 10))] == ["5m", "1h"]
    assert [u.bar.timeframe for u in agg.on_time(FAR_FUTURE)] == ["5m", "1h"]  # no 1m
    with pytest.raises(ValueError):
        BarAggregator(("1m",), forming=("5m",))


def test_to_dict_has_offsets() -> None:
    agg = BarAggregator(("day",), started_at=at(9, 0))
    agg.on_tick(tick(at(9, 16, 0), 100.0, 10))
    d = finals(agg.on_time(FAR_FUTURE), "day")[0].to_dict()
    assert d["start"] == "2026-03-02T00:00:00+05:30"
    assert d["final"] is True and d["revision"] == 0 and d["source"] == "live"
    assert d["vwap"] == 100.0 and d["timeframe"] == "day"
