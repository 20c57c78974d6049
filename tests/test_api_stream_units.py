"""/stream/ws logic without sockets: request parsing, live payload routing, the conflating
queue, the subscription registry and the options."""

from __future__ import annotations

import asyncio
from datetime import datetime

import orjson
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from api.stream import frames, protocol
from api.stream.latest import Latest, snapshot_messages
from api.stream.options import StreamOptions, stream_options_from_env
from api.stream.protocol import GetLatest, Ping, RequestError, Subscribe, Unsubscribe
from api.stream.queue import ConflatingQueue, Put
from api.stream.registry import SubscriptionLimit, SubscriptionRegistry
from market_bridge.aggregation import Bar
from market_bridge.collect.messages import bar_data, message, pack
from market_bridge.kite.models import IST
from market_bridge.market.symbols import Symbol


def parse(raw: str | bytes, max_bytes: int = 1000, max_symbols: int = 3) -> protocol.Request:
    return protocol.parse_request(raw, max_bytes=max_bytes, max_symbols=max_symbols)


def parse_error(raw: str | bytes, **kw: int) -> RequestError:
    with pytest.raises(RequestError) as info:
        parse(raw, **kw)
    return info.value


# ---- requests ----------------------------------------------------------------------


def test_requests_normalise_symbols_and_keep_the_id() -> None:
    req = parse('{"type": "subscribe", "symbols": ["reliance", "NSE:RELIANCE", " tcs ", "bse:sensex"], "id": 7}',
                max_symbols=4)  # fmt: skip
    assert req == Subscribe(
        (Symbol("NSE", "RELIANCE"), Symbol("NSE", "TCS"), Symbol("BSE", "SENSEX")), 7
    )
    assert parse(b'{"type": "unsubscribe", "symbols": ["TCS"]}') == Unsubscribe(
        (Symbol("NSE", "TCS"),)
    )
    assert parse('{"type": "get_latest", "symbol": "nse:infy", "id": "a"}') == GetLatest(
        Symbol("NSE", "INFY"), "a"
    )
    assert parse('{"type": "ping"}') == Ping()


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("{not json", "invalid json"),
        ("[1, 2]", "invalid message"),
        ('{"symbols": ["TCS"]}', "invalid message"),
        ('{"type": 3}', "invalid message"),
        ('{"type": "subscribe", "id": {"x": 1}, "symbols": ["TCS"]}', "invalid message"),
        ('{"type": "hello"}', "unknown type"),
        ('{"type": "subscribe"}', "invalid symbols"),
        ('{"type": "subscribe", "symbols": "TCS"}', "invalid symbols"),
        ('{"type": "subscribe", "symbols": []}', "invalid symbols"),
        ('{"type": "subscribe", "symbols": ["TCS", 5]}', "invalid symbol"),
        ('{"type": "subscribe", "symbols": ["XYZ:TCS"]}', "invalid symbol"),
        ('{"type": "subscribe", "symbols": ["A", "B", "C", "D"]}', "subscription limit"),
        ('{"type": "get_latest"}', "invalid symbol"),
        ('{"type": "get_latest", "symbol": "TC$"}', "invalid symbol"),
    ],
)
def test_bad_requests_name_the_problem(raw: str, error: str) -> None:
    assert parse_error(raw).error == error


def test_errors_echo_the_request_type_and_id() -> None:
    exc = parse_error('{"type": "subscribe", "symbols": ["BAD:X"], "id": "s1"}')
    assert (exc.request, exc.id) == ("subscribe", "s1")
    reply = orjson.loads(protocol.error(exc))
    assert reply["type"] == "error" and reply["error"] == "invalid symbol"
    assert reply["request"] == "subscribe" and reply["id"] == "s1"
    assert "BAD" in reply["detail"]


def test_several_invalid_symbols_are_all_named() -> None:
    exc = parse_error('{"type": "subscribe", "symbols": ["BAD:X", "", "TCS"]}')
    assert isinstance(exc.detail, list) and len(exc.detail) == 2


def test_oversize_message_is_refused_before_parsing() -> None:
    big = '{"type": "ping", "pad": "' + "x" * 2000 + '"}'
    exc = parse_error(big)
    assert exc.error == "message too large" and "1000 bytes" in exc.detail
    # measured in bytes, not characters
    assert parse_error('{"type": "ping", "p": "' + "é" * 600 + '"}').error == "message too large"


# ---- live payloads -----------------------------------------------------------------


def _bar(final: bool, revision: int = 0, minute: int = 15) -> Bar:
    return Bar(738561, "1m", datetime(2024, 1, 30, 9, minute, tzinfo=IST), 10.0, 11.0, 9.5,
               10.5, 100, 3, 10.2, None, final, revision)  # fmt: skip


def test_payloads_are_routed_by_display_symbol_and_forwarded_verbatim() -> None:
    tick = message("tick", "RELIANCE", {"price": 2500.5})
    forming = message("bar", "RELIANCE", bar_data(_bar(final=False)))
    final = message("bar", "NSE:RELIANCE", bar_data(_bar(final=True)))
    status = message("status", "BSE:SENSEX", {"state": "feed_lost"})
    [payload] = pack([tick, forming, final, status]).payloads
    routed, bad = protocol.parse_payload(payload)
    assert bad == 0
    assert [(m.type, m.symbol, m.series) for m in routed] == [
        ("tick", "RELIANCE", "tick"),
        ("bar", "RELIANCE", "bar:1m"),
        ("bar", "RELIANCE", "bar:1m"),
        ("status", "BSE:SENSEX", "status"),
    ]
    assert orjson.loads(routed[0].data) == tick  # exactly as published
    assert routed[0].key == ("tick", "RELIANCE")
    assert routed[1].key == ("bar", "RELIANCE", "1m", "2024-01-30T09:15:00+05:30")
    assert routed[2].key is None and routed[3].key is None  # final bars, status: never dropped


def test_bad_live_messages_are_counted_not_fatal() -> None:
    good = {"type": "tick", "symbol": "TCS", "data": {}}
    payload = orjson.dumps(
        [good, 5, {"type": "tick"}, {"type": "tick", "symbol": "B$D", "data": {}}]
    )
    routed, bad = protocol.parse_payload(payload.decode())
    assert len(routed) == 1 and bad == 3
    assert protocol.parse_payload("not json") == ([], 1)
    assert len(protocol.parse_payload(orjson.dumps(good).decode())[0]) == 1  # bare object


def test_snapshot_never_follows_a_newer_live_message() -> None:
    values = {
        "RELIANCE": Latest({"price": 1.0}, {"close": 2.0}),
        "TCS": Latest({"price": 3.0}, {"close": 4.0}),
        "INFY": Latest(None, None),  # nothing stored
    }
    seen = {"RELIANCE": {"tick"}, "TCS": {"bar:1m", "bar:5m"}, "INFY": set[str]()}
    sent = [orjson.loads(m) for m in snapshot_messages(values, seen, "1m")]
    assert [(m["type"], m["symbol"], m["snapshot"]) for m in sent] == [
        ("bar", "RELIANCE", True),  # a live tick came first: the stored one is older
        ("tick", "TCS", True),  # a live 1m bar came first
    ]


# ---- the conflating queue ------------------------------------------------------------


def test_queue_conflates_latest_wins_and_keeps_publication_order() -> None:
    q = ConflatingQueue(max_pending=10)
    assert q.put(b"t1", "tick", 0.0, ("tick", "A")) is Put.QUEUED
    assert q.put(b"b1", "bar", 0.0) is Put.QUEUED
    assert q.put(b"t2", "tick", 0.0, ("tick", "A")) is Put.CONFLATED
    assert q.put(b"u1", "tick", 0.0, ("tick", "B")) is Put.QUEUED
    order = []
    while (entry := q.pop()) is not None:
        order.append(entry.frame.decode())
    # t2 moved behind b1: a replaced message never arrives after a newer one
    assert order == ["b1", "t2", "u1"]


def test_queue_overflows_only_on_undroppable_messages() -> None:
    q = ConflatingQueue(max_pending=2)
    for i in range(100):
        assert q.put(f"t{i}".encode(), "tick", 0.0, ("tick", "A")) is not Put.OVERFLOW
    assert q.put(b"b1", "bar", 0.0) is Put.QUEUED
    assert q.put(b"b2", "bar", 0.0) is Put.QUEUED
    assert q.put(b"b3", "bar", 0.0) is Put.OVERFLOW
    assert len(q) == 3 and q.undroppable == 2
    q.pop()  # the tick
    q.pop()
    assert q.put(b"b3", "bar", 0.0) is Put.QUEUED


def test_queue_batches_are_bounded_by_size_but_never_empty() -> None:
    q = ConflatingQueue(max_pending=10)
    for _ in range(5):
        q.put(b"x" * 100, "bar", 0.0)
    q.put(b"y" * 1000, "tick", 0.0, ("tick", "A"))
    assert [len(e.frame) for e in q.pop_batch(250)] == [100, 100, 100]  # stops once >= 250
    assert [len(e.frame) for e in q.pop_batch(10)] == [100]  # at least one
    assert [len(e.frame) for e in q.pop_batch(10_000)] == [100, 1000]
    assert q.pop_batch(10_000) == [] and q.undroppable == 0 and q.lag(5.0) == 0.0


def test_queue_lag_is_time_since_last_empty() -> None:
    q = ConflatingQueue(max_pending=5)
    assert q.lag(100.0) == 0.0
    q.put(b"a", "bar", 10.0)
    q.put(b"b", "bar", 12.0)
    assert q.lag(15.0) == 5.0
    q.pop()
    assert q.lag(16.0) == 6.0  # still behind
    q.pop()
    assert q.pop() is None and q.lag(20.0) == 0.0
    q.put(b"c", "bar", 30.0)
    assert q.lag(31.0) == 1.0
    assert q.clear() == 1 and len(q) == 0 and q.lag(40.0) == 0.0


# ---- frames ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 100_000])
def test_prebuilt_frames_parse_as_websocket_text_frames(size: int) -> None:
    payload = ("é" * (size // 2) + "x" * (size % 2)).encode()
    frame = frames.text_frame(payload)
    client = ClientProtocol(parse_uri("ws://127.0.0.1/stream/ws"), state=State.OPEN,
                            max_size=None)  # fmt: skip
    client.receive_data(frame + frame)
    events = [e for e in client.events_received() if isinstance(e, Frame)]
    assert [(e.opcode, e.fin, e.data) for e in events] == [(Opcode.TEXT, True, payload)] * 2
    assert frames.frame_payload(frame) == payload


def test_without_raw_frames_each_payload_goes_through_ws_send_as_text() -> None:
    class PlainSocket:  # what a WebSocket without Sanic's internals offers
        def __init__(self) -> None:
            self.sent: list[str | bytes] = []

        async def send(self, message: str | bytes) -> None:
            self.sent.append(message)

    ws = PlainSocket()
    assert not frames.supports_raw_frames(ws)
    batch = [frames.text_frame(b'{"a":1}'), frames.text_frame(("é" * 200).encode())]
    asyncio.run(frames.send_frames(ws, batch, raw=False))
    assert ws.sent == ['{"a":1}', "é" * 200]  # str: text frames, in order


# ---- the registry ------------------------------------------------------------------


def test_registry_limits_are_per_client_and_all_or_nothing() -> None:
    reg: SubscriptionRegistry[str] = SubscriptionRegistry()
    assert reg.add("c1", ["A", "B", "A"], limit=3) == ["A", "B"]
    assert reg.add("c1", ["B"], limit=3) == []  # idempotent
    with pytest.raises(SubscriptionLimit, match="at most 3"):
        reg.add("c1", ["C", "D"], limit=3)
    assert reg.symbols_of("c1") == {"A", "B"}
    assert reg.add("c2", ["A", "C", "D"], limit=3) == ["A", "C", "D"]  # own limit
    assert set(reg.subscribers("A")) == {"c1", "c2"}
    assert reg.remove("c1", ["A", "Z"]) == ["A"]
    assert set(reg.subscribers("A")) == {"c2"} and reg.total == 4 and reg.symbols == 4
    assert reg.drop("c2") == 3
    assert not reg.subscribers("A") and reg.symbols == 1 and reg.count("c1") == 1


# ---- options -------------------------------------------------------------------------


def test_options_from_env_and_validation() -> None:
    opts = stream_options_from_env({"MB_WS_MAX_SUBSCRIPTIONS": "50", "MB_WS_MAX_LAG": "2.5"})
    assert opts.max_subscriptions == 50 and opts.max_lag == 2.5
    assert stream_options_from_env({}) == StreamOptions()
    with pytest.raises(ValueError, match="MB_WS_MAX_PENDING"):
        stream_options_from_env({"MB_WS_MAX_PENDING": "lots"})
    with pytest.raises(ValueError, match="max_clients"):
        stream_options_from_env({"MB_WS_MAX_CLIENTS": "0"})


# ---- direct writes -------------------------------------------------------------------


class Transport:
    """What ``write_now`` uses of an asyncio transport (a stand-in for uvloop's)."""

    def __init__(self, buffered: int = 0) -> None:
        self.written: list[bytes] = []
        self.buffered = buffered
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered


class Connection:
    """The attributes of Sanic's ``WebsocketImplProtocol`` that ``write_now`` reads, with a
    real ``websockets`` server protocol and a real lock."""

    def __init__(self) -> None:
        self.ws_proto = ServerProtocol(state=State.OPEN)
        self.conn_mutex = asyncio.Lock()


def frames_of(data: bytes) -> list[tuple[Opcode, bytes]]:
    client = ClientProtocol(parse_uri("ws://127.0.0.1/stream/ws"), state=State.OPEN)
    client.receive_data(data)
    return [(e.opcode, bytes(e.data)) for e in client.events_received() if isinstance(e, Frame)]


def test_direct_writes_are_whole_frames_after_what_the_protocol_has_pending() -> None:
    ws, transport = Connection(), Transport()
    batch = [frames.text_frame(b'{"a":1}'), frames.text_frame(b'{"b":2}')]
    assert frames.write_now(ws, transport, batch, limit=1024) is frames.Direct.WRITTEN
    ws.ws_proto.send_pong(b"p")  # as if Sanic had not sent it yet: it must go first
    assert frames.write_now(ws, transport, batch[:1], limit=1024) is frames.Direct.WRITTEN
    assert len(transport.written) == 2  # one write per call
    assert frames_of(b"".join(transport.written)) == [
        (Opcode.TEXT, b'{"a":1}'), (Opcode.TEXT, b'{"b":2}'), (Opcode.PONG, b"p"),
        (Opcode.TEXT, b'{"a":1}'),
    ]  # fmt: skip
    assert ws.ws_proto.data_to_send() == []


def test_direct_writes_wait_for_a_backed_up_or_busy_connection_and_stop_at_close() -> None:
    frame = [frames.text_frame(b"{}")]
    ws = Connection()
    assert frames.write_now(ws, Transport(buffered=2048), frame, 1024) is frames.Direct.LATER

    async def while_locked() -> frames.Direct:  # a ping or close of Sanic's own in progress
        async with ws.conn_mutex:
            return frames.write_now(ws, Transport(), frame, 1024)

    assert asyncio.run(while_locked()) is frames.Direct.LATER
    ws.ws_proto.send_text(b"part", fin=False)  # a fragmented message being sent
    assert frames.write_now(ws, Transport(), frame, 1024) is frames.Direct.LATER
    ws = Connection()
    ws.ws_proto.send_close(1000)  # no data frame may follow a close frame
    transport = Transport()
    assert frames.write_now(ws, transport, frame, 1024) is frames.Direct.CLOSED
    closing = Transport()
    closing.closing = True
    assert frames.write_now(Connection(), closing, frame, 1024) is frames.Direct.CLOSED
    assert transport.written == [] and closing.written == []


def test_write_path_option() -> None:
    assert StreamOptions().write_path == "direct"
    assert stream_options_from_env({"MB_WS_WRITE_PATH": "task"}).write_path == "task"
    with pytest.raises(ValueError, match="write_path"):
        stream_options_from_env({"MB_WS_WRITE_PATH": "fast"})
