"""Kite Ticker codec: oracle tests against kiteconnect's own parser, round trips, fuzzing."""

from __future__ import annotations

import base64
import copy
import dataclasses
import math
import pickle
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kiteconnect import KiteTicker

from market_bridge.kite.codec import (
    FULL_PACKET,
    INDEX_FULL_PACKET,
    INDEX_QUOTE_PACKET,
    LTP_PACKET,
    PACKET_MODES,
    QUOTE_PACKET,
    DecodeResult,
    FrameError,
    SkippedPacket,
    TextMessage,
    TickColumns,
    decode_frame,
    decode_frame_columns,
    decode_frame_result,
    decode_frames_columns,
    decode_text,
    encode_frame,
    encode_heartbeat,
    encode_packet,
    encode_text,
    encode_ticks,
    price_divisor,
)
from market_bridge.kite.models import IST, MODES, DepthLevel, Mode, Tick

# Hypothesis budget: keep the whole file well under 30 s on 2 shared cores.
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Big generated frames: fewer examples.
HEAVY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KITE = KiteTicker("key", "token")  # no network until connect()

# zerodha/kiteconnect-mocks ticker_full.packet / ticker_quote.packet: raw packets, no frame header.
MOCK_FULL = base64.b64decode(
    "AAY6AQACZroAAAAHAAJlbQASMhcAA+m7AAWKAQACZPMAAmc8AAJhyQACZGxg4pR/AAAAAAAAAAAAAAAAYOKUfwAAAAUA"
    "AmacAAEAAAAAAIwAAmZ0AAIAAAAAAAIAAmZvAAEAAAAAANsAAmZqAAcAAAAAADIAAmZlAAEAAAAAAKwAAma6AAMAAAAA"
    "ACwAAma/AAMAAAAAAS4AAmbJAAMAAAAAAI0AAmbOAAIAAAAAAtQAAmbTAAUAAA=="
)
MOCK_QUOTE = base64.b64decode("AAY6AQACZoMAAAABAAJlaQAR8bIAA+n/AAWANwACZPMAAmc8AAJhyQACZGw=")
KNOWN_SEGMENTS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12]
NIFTY_50 = 1001 * 256 + 9


# --- strategies ----------------------------------------------------------------------------

u32 = st.integers(0, 2**32 - 1)
small = st.integers(0, 10**7)
raw_value = st.one_of(small, u32)  # realistic magnitudes mostly, the full range too
raw_time = st.one_of(st.just(0), st.integers(1_600_000_000, 1_900_000_000), u32)
segments = st.one_of(st.sampled_from(KNOWN_SEGMENTS), st.integers(0, 255))


@st.composite
def tokens(draw: st.DrawFn, segment: st.SearchStrategy[int] = segments) -> int:
    return draw(st.integers(0, 2**24 - 1)) * 256 + draw(segment)


def _time(raw: int) -> datetime | None:
    return datetime.fromtimestamp(raw, IST) if raw else None


def _change(last: float, close: float) -> float:
    return (last - close) * 100 / close if close != 0 else 0.0


@st.composite
def ticks(draw: st.DrawFn, modes: tuple[Mode, ...] = ("ltp", "quote", "full")) -> Tick:
    """Canonical ticks: exactly what the decoder would produce for some valid packet."""
    tok = draw(tokens())
    mode = draw(st.sampled_from(modes))
    div = price_divisor(tok)
    price = lambda raw: raw / div  # noqa: E731
    last = price(draw(raw_value))
    tradable = tok & 0xFF != 9
    if mode == "ltp":
        return Tick(tok, "ltp", tradable, last)
    o, h, lo, c = (price(draw(raw_value)) for _ in range(4))
    base: dict[str, Any] = dict(
        instrument_token=tok, mode=mode, tradable=tradable, last_price=last,
        open=o, high=h, low=lo, close=c, change=_change(last, c),
    )  # fmt: skip
    if not tradable:  # index packet: no volume, depth or trade time
        if mode == "full":
            base["exchange_timestamp"] = _time(draw(raw_time))
        return Tick(**base)
    base.update(
        last_traded_quantity=draw(raw_value),
        average_traded_price=price(draw(raw_value)),
        volume_traded=draw(raw_value),
        total_buy_quantity=draw(raw_value),
        total_sell_quantity=draw(raw_value),
    )
    if mode == "full":
        level = st.builds(
            DepthLevel, st.builds(price, raw_value), raw_value, st.integers(0, 0xFFFF)
        )
        base.update(
            last_trade_time=_time(draw(raw_time)),
            oi=draw(raw_value),
            oi_day_high=draw(raw_value),
            oi_day_low=draw(raw_value),
            exchange_timestamp=_time(draw(raw_time)),
            depth_buy=tuple(draw(st.lists(level, min_size=5, max_size=5))),
            depth_sell=tuple(draw(st.lists(level, min_size=5, max_size=5))),
        )
    return Tick(**base)


def frame_of(*ticks_: Tick) -> bytes:
    return encode_frame([encode_packet(t) for t in ticks_])


frames = st.lists(ticks(), min_size=0, max_size=6).map(lambda ts: frame_of(*ts))


# --- oracle: kiteconnect's view of a tick ----------------------------------------------------


def _kite_time(value: datetime | None) -> datetime:
    # kiteconnect: datetime.fromtimestamp(raw), naive local time, and 0 -> 1970 (we say None).
    return datetime.fromtimestamp(0 if value is None else int(value.timestamp()))


def kite_view(t: Tick) -> dict[str, Any]:
    """Our tick in kiteconnect's dict shape (same keys per packet kind, same values)."""
    d: dict[str, Any] = {
        "tradable": t.tradable,
        "mode": t.mode,
        "instrument_token": t.instrument_token,
        "last_price": t.last_price,
    }
    if t.mode == "ltp":
        return d
    d["ohlc"] = {"open": t.open, "high": t.high, "low": t.low, "close": t.close}
    d["change"] = t.change
    if t.volume_traded is None:  # index packet
        if t.mode == "full":
            d["exchange_timestamp"] = _kite_time(t.exchange_timestamp)
        return d
    d.update(
        last_traded_quantity=t.last_traded_quantity,
        average_traded_price=t.average_traded_price,
        volume_traded=t.volume_traded,
        total_buy_quantity=t.total_buy_quantity,
        total_sell_quantity=t.total_sell_quantity,
    )
    if t.mode == "full":
        d.update(
            last_trade_time=_kite_time(t.last_trade_time),
            oi=t.oi,
            oi_day_high=t.oi_day_high,
            oi_day_low=t.oi_day_low,
            exchange_timestamp=_kite_time(t.exchange_timestamp),
            depth={
                side: [{"quantity": x.quantity, "price": x.price, "orders": x.orders} for x in lv]
                for side, lv in (("buy", t.depth_buy), ("sell", t.depth_sell))
            },
        )
    return d


def packet_length_of(t: Tick) -> int:
    if t.mode == "ltp":
        return LTP_PACKET
    if t.volume_traded is None:
        return INDEX_QUOTE_PACKET if t.mode == "quote" else INDEX_FULL_PACKET
    return QUOTE_PACKET if t.mode == "quote" else FULL_PACKET


def grouped(ticks_: list[Tick]) -> list[Tick]:
    """Column row order: by packet kind in order of first appearance, stable within a kind."""
    first: dict[int, int] = {}
    for t in ticks_:
        first.setdefault(packet_length_of(t), len(first))
    return sorted(ticks_, key=lambda t: first[packet_length_of(t)])


FLOAT_FIELDS = ("last_price", "average_traded_price", "open", "high", "low", "close", "change")
INT_FIELDS = ("last_traded_quantity", "volume_traded", "total_buy_quantity",
              "total_sell_quantity", "oi", "oi_day_high", "oi_day_low")  # fmt: skip


def assert_columns_match(cols: TickColumns, expected: list[Tick]) -> None:
    assert len(cols) == len(expected)
    by_name = cols.as_dict()
    for i, t in enumerate(expected):
        assert cols.instrument_token[i] == t.instrument_token
        assert PACKET_MODES[int(cols.packet_length[i])] == t.mode
        assert cols.tradable[i] == t.tradable
        for name in FLOAT_FIELDS:
            want = getattr(t, name)
            got = by_name[name][i]
            assert math.isnan(got) if want is None else got == want, name
        for name in INT_FIELDS:
            assert by_name[name][i] == (getattr(t, name) or 0), name
        for name in ("last_trade_time", "exchange_timestamp"):
            ts = getattr(t, name)
            assert by_name[name][i] == (0 if ts is None else int(ts.timestamp())), name
        levels = t.depth_buy + t.depth_sell
        if levels:
            assert cols.depth_quantity[i].tolist() == [x.quantity for x in levels]
            assert cols.depth_price[i].tolist() == [x.price for x in levels]
            assert cols.depth_orders[i].tolist() == [x.orders for x in levels]
        else:
            assert not cols.depth_quantity[i].any() and np.isnan(cols.depth_price[i]).all()


# --- official mock packets -------------------------------------------------------------------


def test_official_full_packet() -> None:
    [t] = decode_frame(encode_frame([MOCK_FULL]))
    assert (t.instrument_token, t.mode, t.tradable) == (408065, "full", True)
    assert t.last_price == 1573.70
    assert (t.last_traded_quantity, t.average_traded_price) == (7, 1570.37)
    assert t.volume_traded == 1192471
    assert (t.total_buy_quantity, t.total_sell_quantity) == (256443, 363009)
    assert (t.open, t.high, t.low, t.close) == (1569.15, 1575.0, 1561.05, 1567.8)
    assert t.change == (1573.7 - 1567.8) * 100 / 1567.8
    when = datetime(2021, 7, 5, 10, 41, 27, tzinfo=IST)
    assert t.exchange_timestamp == t.last_trade_time == when
    assert t.exchange_timestamp is not None and t.exchange_timestamp.utcoffset() == timedelta(
        hours=5, minutes=30
    )
    assert t.exchange_timestamp.timestamp() == 1625461887
    assert (t.oi, t.oi_day_high, t.oi_day_low) == (0, 0, 0)
    assert t.depth_buy[0] == DepthLevel(1573.4, 5, 1)
    assert [x.price for x in t.depth_buy] == [1573.4, 1573.0, 1572.95, 1572.9, 1572.85]
    assert [x.quantity for x in t.depth_sell] == [172, 44, 302, 141, 724]
    assert [x.orders for x in t.depth_sell] == [3, 3, 3, 2, 5]
    assert encode_packet(t) == MOCK_FULL


def test_official_quote_packet() -> None:
    [t] = decode_frame(encode_frame([MOCK_QUOTE]))
    assert (t.mode, t.last_price, t.last_traded_quantity, t.volume_traded) == (
        "quote", 1573.15, 1, 1175986
    )  # fmt: skip
    assert t.exchange_timestamp is None and t.depth_buy == () and t.oi is None
    assert encode_packet(t) == MOCK_QUOTE


def test_hand_built_packets_of_every_kind() -> None:
    ts = 1625461887
    index_prices = (1570000, 1580000, 1560000, 1565000, 1569000)  # ltp high low open close
    frame = encode_frame(
        [
            struct.pack(">II", 408065, 157370),
            struct.pack(">IIIIIIi", NIFTY_50, *index_prices, 1000),
            struct.pack(">IIIIIIiI", NIFTY_50, *index_prices, -36, ts),
            MOCK_QUOTE,
            MOCK_FULL,
            # CDS (segment 3) divides by 1e7, BCD (6) and NCO (12) by 1e4
            struct.pack(">II", 1 * 256 + 3, 834_512_500),
            struct.pack(">II", 1 * 256 + 6, 834_512),
            struct.pack(">II", 1 * 256 + 12, 1_234_567),
        ]
    )
    ltp, iq, ifull, q, full, cds, bcd, nco = decode_frame(frame)
    assert (ltp.mode, ltp.last_price, ltp.change, ltp.open) == ("ltp", 1573.7, None, None)
    # index order on the wire: high, low, open, close
    assert (iq.mode, iq.tradable, iq.high, iq.low, iq.open, iq.close) == (
        "quote", False, 15800.0, 15600.0, 15650.0, 15690.0
    )  # fmt: skip
    assert iq.change == (15700.0 - 15690.0) * 100 / 15690.0
    assert iq.volume_traded is None and iq.exchange_timestamp is None
    assert (ifull.mode, ifull.exchange_timestamp) == ("full", datetime.fromtimestamp(ts, IST))
    assert (q.mode, full.mode) == ("quote", "full")
    assert (cds.last_price, bcd.last_price, nco.last_price) == (83.45125, 83.4512, 123.4567)
    assert [kite_view(t) for t in decode_frame(frame)] == KITE._parse_binary(frame)


# --- oracle and round trip -------------------------------------------------------------------


@FAST
@given(ticks())
def test_single_tick_matches_kiteconnect_and_round_trips(tick: Tick) -> None:
    packet = encode_packet(tick)
    expected_len = {
        "ltp": LTP_PACKET,
        "quote": INDEX_QUOTE_PACKET if tick.segment == 9 else QUOTE_PACKET,
        "full": INDEX_FULL_PACKET if tick.segment == 9 else FULL_PACKET,
    }[tick.mode]
    assert len(packet) == expected_len
    frame = encode_frame([packet])
    [ours] = decode_frame(frame)
    assert KITE._parse_binary(frame) == [kite_view(ours)]
    assert ours == tick and tick == ours
    assert encode_packet(ours) == packet


@HEAVY
@given(st.lists(ticks(), min_size=1, max_size=10))
def test_mixed_frames_match_kiteconnect_and_columns(batch: list[Tick]) -> None:
    frame = encode_ticks(batch)
    ours = decode_frame(frame)
    assert ours == batch
    assert KITE._parse_binary(frame) == [kite_view(t) for t in ours]
    assert_columns_match(decode_frame_columns(frame), grouped(batch))


def uniform_frames(min_size: int = 16) -> st.SearchStrategy[bytes]:
    """Frames of one packet kind, big enough for the columnar fast path (repeats are fine)."""

    def build(mode: Mode, seed: list[Tick], n: int) -> bytes:
        # one packet kind: indices have their own lengths, so leave them out of quote/full
        same = [t for t in seed if mode == "ltp" or t.tradable] or [Tick(1, mode, True, 1.0)]
        return encode_ticks((same * n)[:n])

    return st.sampled_from(MODES).flatmap(
        lambda mode: st.builds(
            build,
            st.just(mode),
            st.lists(ticks(modes=(mode,)), min_size=1, max_size=4),
            st.integers(min_size, 40),
        )
    )


@HEAVY
@given(uniform_frames(min_size=1))
def test_uniform_frames_in_columns(frame: bytes) -> None:
    assert_columns_match(decode_frame_columns(frame), decode_frame(frame))


@HEAVY
@given(st.lists(st.one_of(frames, uniform_frames(), st.just(b"\x00")), max_size=5))
def test_batches_of_frames_in_columns(batch: list[bytes]) -> None:
    expected = [t for frame in batch for t in decode_frame(frame)]
    assert_columns_match(decode_frames_columns(batch), grouped(expected))


def test_batch_errors_name_the_frame() -> None:
    good = encode_frame([MOCK_QUOTE])
    with pytest.raises(FrameError, match=r"^frame 2: 1 trailing bytes after 1 packets") as info:
        decode_frames_columns([good, b"\x00", good + b"\x00", good])
    assert info.value.offset == len(good)
    skipping = encode_frame([MOCK_QUOTE, b"\x01\x02\x03"])
    assert decode_frames_columns([good, skipping]).skipped == (SkippedPacket(50, 3, 1),)


def test_received_at_is_stamped_and_timestamp_falls_back_to_it() -> None:
    now = datetime(2024, 1, 2, 9, 15, tzinfo=IST)
    ltp, full = decode_frame(encode_frame([struct.pack(">II", 408065, 1), MOCK_FULL]), now)
    assert ltp.received_at == full.received_at == now
    assert ltp.timestamp == now and full.timestamp == full.exchange_timestamp


def test_zero_timestamps_decode_to_none() -> None:
    packet = bytearray(MOCK_FULL)
    packet[44:48] = packet[60:64] = bytes(4)
    [t] = decode_frame(encode_frame([bytes(packet)]))
    assert t.last_trade_time is None and t.exchange_timestamp is None
    assert encode_packet(t) == bytes(packet)


def test_close_zero_gives_zero_change_like_kiteconnect() -> None:
    t = Tick(256265, "quote", False, 100.0, open=1.0, high=1.0, low=1.0, close=0.0)
    [ours] = decode_frame(frame_of(t))
    assert ours.change == 0.0 == KITE._parse_binary(frame_of(t))[0]["change"]


def test_bytes_like_input() -> None:
    frame = encode_frame([MOCK_FULL, MOCK_QUOTE])
    expected = decode_frame(frame)
    assert decode_frame(bytearray(frame)) == expected
    assert decode_frame(memoryview(frame)) == expected
    assert_columns_match(decode_frame_columns(memoryview(frame)), expected)


# --- lazy depth behaves like a plain Tick ----------------------------------------------------


def test_lazily_parsed_depth_is_a_normal_tick() -> None:
    [t] = decode_frame(encode_frame([MOCK_FULL]))
    plain = Tick(**{f.name: getattr(t, f.name) for f in dataclasses.fields(Tick)})
    assert type(plain) is Tick and isinstance(t, Tick)
    assert t == plain and plain == t and not (t != plain)
    assert repr(t) == repr(plain)
    assert dataclasses.asdict(t) == dataclasses.asdict(plain)
    for other in (copy.copy(t), copy.deepcopy(t), pickle.loads(pickle.dumps(t))):
        assert other == plain
    assert dataclasses.replace(t, last_price=1.0) == dataclasses.replace(plain, last_price=1.0)
    assert t != dataclasses.replace(plain, depth_sell=())
    assert t != "Tick"


def test_depth_assignment_before_first_access() -> None:
    [t] = decode_frame(encode_frame([MOCK_FULL]))
    t.depth_buy = ()
    assert t.depth_buy == () and len(t.depth_sell) == 5  # the other side still parses
    [u] = decode_frame(encode_frame([MOCK_FULL]))
    u.depth_sell = (DepthLevel(1.0, 2, 3),)
    assert len(u.depth_buy) == 5 and u.depth_sell == (DepthLevel(1.0, 2, 3),)


# --- heartbeats, structure errors, unknown packets --------------------------------------------


@pytest.mark.parametrize("frame", [b"", b"\x00", b"\x07", encode_heartbeat(), b"\x00\x00"])
def test_heartbeats_and_empty_frames(frame: bytes) -> None:
    assert decode_frame(frame) == []
    assert len(decode_frame_columns(frame)) == 0
    assert encode_heartbeat() == b"\x00"


@pytest.mark.parametrize(
    ("frame", "message", "offset"),
    [
        (b"\x00\x02" + b"\x00\x08" + bytes(8), "declares 2 packets but ends after 1", 12),
        (b"\x00\x01\x00", "declares 1 packets but ends after 0", 2),
        (b"\x00\x01\x00\x08" + bytes(7), "packet 0 of length 8 runs past the end", 2),
        (b"\x00\x01\x00\x08" + bytes(9), "1 trailing bytes after 1 packets", 12),
        (b"\x00\x00\x00", "1 trailing bytes after 0 packets", 2),
    ],
)
def test_malformed_frames_raise_frame_error(frame: bytes, message: str, offset: int) -> None:
    for decode in (decode_frame, decode_frame_columns):
        with pytest.raises(FrameError, match=message) as info:
            decode(frame)
        assert info.value.offset == offset
        assert f"at byte {offset}" in str(info.value)
        assert isinstance(info.value, ValueError)


def test_unknown_packet_lengths_are_skipped_and_reported() -> None:
    frame = encode_frame([MOCK_QUOTE, b"\x01" * 10, struct.pack(">II", 408065, 5), b""])
    result = decode_frame_result(frame)
    assert isinstance(result, DecodeResult)
    assert [t.mode for t in result.ticks] == ["quote", "ltp"]
    assert result.skipped == (SkippedPacket(50, 10), SkippedPacket(72, 0))
    assert decode_frame(frame) == result.ticks
    # kiteconnect skips unknown lengths too, but crashes on packets shorter than a token
    without_empty = encode_frame([MOCK_QUOTE, b"\x01" * 10, struct.pack(">II", 408065, 5)])
    assert [kite_view(t) for t in result.ticks] == KITE._parse_binary(without_empty)
    with pytest.raises(struct.error):
        KITE._parse_binary(frame)
    cols = decode_frame_columns(frame)
    assert cols.skipped == result.skipped
    assert_columns_match(cols, result.ticks)


# --- fuzzing ---------------------------------------------------------------------------------


def decode_all(data: bytes) -> tuple[list[Tick], TickColumns] | None:
    """Both decoders; they must agree on whether a frame is valid, and on its values."""
    try:
        ticks_ = decode_frame(data)
    except FrameError:
        with pytest.raises(FrameError):
            decode_frame_columns(data)
        return None
    cols = decode_frame_columns(data)
    assert_columns_match(cols, grouped(ticks_))
    for t in ticks_:  # materialize lazy depth too
        assert len(t.depth_buy) in (0, 5)
    return ticks_, cols


@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_bytes_only_raise_frame_error(data: bytes) -> None:
    decode_all(data)


@FUZZ
@given(
    st.lists(st.sampled_from([8, 28, 32, 44, 184, 0, 3, 50]), max_size=8),
    st.integers(-2, 2),
    st.randoms(use_true_random=False),
)
def test_plausible_frames_with_random_bodies(lengths: list[int], skew: int, rnd: Any) -> None:
    body = [rnd.randbytes(n) for n in lengths]
    frame = bytearray(encode_frame(body))
    frame[0:2] = struct.pack(">H", max(0, len(lengths) + skew))
    result = decode_all(bytes(frame))
    assert (result is not None) == (skew == 0 or (skew < 0 and len(lengths) == 0))
    if skew == 0:
        assert len(decode_frame(bytes(frame))) == sum(n in PACKET_MODES for n in lengths)


@HEAVY
@given(frames.filter(lambda f: f != b"\x00\x00"), st.data())
def test_mutated_valid_frames(frame: bytes, data: st.DataObject) -> None:
    decode_all(frame)  # valid as built
    cut = data.draw(st.integers(2, len(frame) - 1))
    with pytest.raises(FrameError):
        decode_frame(frame[:cut])
    assert decode_frame(frame[:1]) == []  # a 1-byte prefix reads as a heartbeat
    extra = data.draw(st.binary(min_size=1, max_size=8))
    with pytest.raises(FrameError, match="trailing"):
        decode_frame(frame + extra)
    count = struct.unpack(">H", frame[:2])[0]
    for wrong in (count + 1, count - 1):
        with pytest.raises(FrameError):
            decode_frame_columns(struct.pack(">H", wrong) + frame[2:])
    flipped = bytearray(frame)
    flipped[data.draw(st.integers(0, len(frame) - 1))] ^= data.draw(st.integers(1, 255))
    decode_all(bytes(flipped))


@HEAVY
@given(uniform_frames(), st.data())
def test_mutated_uniform_frames(frame: bytes, data: st.DataObject) -> None:
    # damage that the columnar fast path must notice and hand over to full validation
    mutated = bytearray(frame)
    at = data.draw(st.integers(0, len(frame) - 1))
    mutated[at] ^= data.draw(st.integers(1, 255))
    decode_all(bytes(mutated))
    decode_all(frame[: data.draw(st.integers(0, len(frame) - 1))])


# --- encoder validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"last_price": -0.01}, "last_price"),
        ({"last_price": math.nan}, "last_price"),
        ({"last_price": math.inf}, "last_price"),
        ({"high": 43_000_000.0}, "high"),
        ({"volume_traded": -1}, "volume_traded"),
        ({"volume_traded": 2**32}, "volume_traded"),
        ({"oi": 1.5}, "oi"),
        ({"instrument_token": 2**32}, "instrument_token"),
        ({"exchange_timestamp": datetime(2024, 1, 1)}, "timezone-aware"),
        ({"last_trade_time": datetime(1960, 1, 1, tzinfo=IST)}, "last_trade_time"),
        ({"depth_buy": (DepthLevel(1.0, 1, 1),) * 6}, "6 levels"),
        ({"depth_sell": (DepthLevel(1.0, 1, 70_000),)}, r"depth_sell\[0\].orders"),
        ({"depth_buy": (DepthLevel(-1.0, 1, 1),)}, r"depth_buy\[0\].price"),
        ({"mode": "snapshot"}, "unknown mode"),
    ],
)
def test_encoder_rejects_what_the_wire_cannot_carry(changes: dict[str, Any], message: str) -> None:
    [t] = decode_frame(encode_frame([MOCK_FULL]))
    with pytest.raises(ValueError, match=message):
        encode_packet(dataclasses.replace(t, **changes))


def test_encoder_defaults_and_rounding() -> None:
    # Missing values go out as 0; prices round to the wire unit; short depth is zero-padded.
    t = Tick(408065, "full", True, 1573.7000001, depth_buy=(DepthLevel(1.0, 2, 3),))
    [back] = decode_frame(frame_of(t))
    assert back.last_price == 1573.7 and back.volume_traded == 0 and back.close == 0.0
    assert back.depth_buy[0] == DepthLevel(1.0, 2, 3)
    assert back.depth_buy[1:] == (DepthLevel(0.0, 0, 0),) * 4
    assert back.exchange_timestamp is None
    assert encode_packet(Tick(np.int64(256265), "ltp", False, np.float64(1.5)))  # type: ignore[arg-type]


def test_encoder_times_any_aware_zone_floor_to_seconds() -> None:
    utc = datetime(2021, 7, 5, 5, 11, 27, 999_999, tzinfo=UTC)
    t = Tick(NIFTY_50, "full", False, 1.0, exchange_timestamp=utc)
    [back] = decode_frame(frame_of(t))
    assert back.exchange_timestamp == datetime(2021, 7, 5, 10, 41, 27, tzinfo=IST)
    assert back.exchange_timestamp.tzinfo is IST


def test_frame_limits() -> None:
    assert encode_frame([]) == b"\x00\x00"
    with pytest.raises(ValueError, match="do not fit"):
        encode_frame([b""] * 65536)
    with pytest.raises(ValueError, match="packet 1"):
        encode_frame([b"", bytes(65536)])


# --- text messages ---------------------------------------------------------------------------


def test_text_messages_round_trip_and_match_kiteconnect() -> None:
    order = {"order_id": "220303000308932", "status": "COMPLETE", "filled_quantity": 1}
    seen: list[Any] = []
    kt = KiteTicker("key", "token")
    kt.on_order_update = lambda ws, data: seen.append(data)
    kt.on_error = lambda ws, code, reason: seen.append((code, reason))
    for kind, data in (("order", order), ("error", "Invalid token"), ("message", "hello")):
        text = encode_text(kind, data)  # type: ignore[arg-type]
        assert decode_text(text) == TextMessage(kind, data)  # type: ignore[arg-type]
        assert decode_text(text.encode()) == decode_text(text)
        kt._parse_text_message(text.encode())
    assert seen == [order, (0, "Invalid token")]
    assert decode_text('{"type": "message"}') == TextMessage("message", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"data": 1}', "unknown text message type None"),
        ('{"type": "tick", "data": 1}', "unknown text message type 'tick'"),
        ('{"type": "order", "data": "x"}', "must be an object"),
    ],
)
def test_malformed_text_messages(text: str | bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        decode_text(text)


def test_encode_text_validates() -> None:
    with pytest.raises(ValueError, match="unknown"):
        encode_text("tick", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dict"):
        encode_text("order", [1])


@FAST
@given(st.text(max_size=40) | st.binary(max_size=40))
def test_arbitrary_text_only_raises_frame_error(text: str | bytes) -> None:
    try:
        decode_text(text)
    except FrameError:
        pass
