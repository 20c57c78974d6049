"""WS /stream/ws fan-out: N clients on a live feed from NOTIFY, broadcast latency p50/p95.

    .venv/bin/python bench/ws_fanout.py [--clients 2000] [--probes 20] [--symbols 50]
                                        [--per-client 5] [--rate 200] [--seconds 10]
                                        [--workers 1] [--client-procs 2]
                                        [--baseline task|send|none] [--profile]
                                        [--full-clients] [--database-url URL]

Runs: the API with the direct write path (``MB_WS_WRITE_PATH=direct``, the default),
then, with fresh clients and the same feed, each ``--baseline`` (default ``task``: the
previous hub, every message through the client's queue and writer task; ``send``: the
same with one ``ws.send`` per message). Prints each run, a table of both, the ratios
baseline / direct of latency p50/p95/p99 and API CPU per message, and the verdict
against the target (p95 <= 50 ms). ``--profile``: cProfile of the API worker(s) during
the measured window (top functions by own time; SIGUSR1 toggles it in the worker).

Processes, as in production: the API (``api.server.serve(workers=W)`` in a subprocess),
client processes, and this process, which publishes like the streaming service: every
50 ms the messages of that interval, packed with the publisher's ``pack`` into
``pg_notify('mb_live', ...)`` payloads sent in one statement. Unless ``--database-url``
is given, a throwaway TimescaleDB cluster runs in a temp dir.

Clients: ``--probes`` real clients (the ``websockets`` library, JSON decoding) measure
latency; the other ``--clients`` minus probes are load clients in ``--client-procs``
processes: real WebSocket connections (handshake, masked subscribe frame) that count and
discard bytes in an ``asyncio.Protocol`` on uvloop, so that on a small machine the
clients' own work does not eat the CPU the server is being measured with (they do not
answer pings either: the API runs with ``SANIC_WEBSOCKET_PING_INTERVAL=3600``). A
handshake that fails (a connection storm can see resets) is retried twice. ``--full-clients`` makes every client a probe
(heavier: the figures then include client-side queueing).

Each client subscribes to ``--per-client`` of ``--symbols`` symbols (round robin: every
symbol has about the same number of subscribers). The feed is ``--rate`` ticks/s in
total plus one final bar per symbol every second. Every message carries its NOTIFY time
(``sent_ns``, wall clock: one machine, one clock); a probe records ``received - sent``,
so latency is NOTIFY → PostgreSQL → hub → write (direct, or client queue and writer)
→ socket → JSON decode in the client. Bars are also reported on their own: each second's
bars reach every client at once, the burst that sets p95. The publisher's own batching interval is not included. Bars must
all arrive; ticks may be conflated for a client that falls behind.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import functools
import multiprocessing as mp
import os
import pstats
import re
import shutil
import signal
import statistics
import tempfile
import time
from array import array
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from support import ROOT, api_process, cpu_seconds, database, percentile

from market_bridge.collect.messages import LIVE_CHANNEL, pack

FLUSH_S = 0.05  # the streaming service's publish interval
TARGET_P95_MS = 50.0
NOTIFY = "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p"


# ---- set-up ------------------------------------------------------------------------


def seed_instruments(dsn: str, symbols: list[str]) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO md.instruments (exchange, tradingsymbol, instrument_token, name,
                   instrument_type, segment)
               VALUES ('NSE', %s, %s, %s, 'EQ', 'NSE') ON CONFLICT DO NOTHING""",
            [(s, 900_000 + i, s) for i, s in enumerate(symbols)],
        )


def api_server(
    dsn: str, workers: int, log: Path, write_path: str, profile: Path | None = None
) -> AbstractContextManager[tuple[int, int]]:
    """(port, pid) of ``serve(workers=...)`` in a subprocess, once every worker LISTENs."""
    env = {"SANIC_WEBSOCKET_PING_INTERVAL": "3600",  # load clients do not answer pings
           "MB_WS_WRITE_PATH": write_path}  # fmt: skip
    code = f"from api.server import serve; serve(workers={workers})"
    if profile is not None:
        env["MB_BENCH_PROFILE"] = str(profile)
        code = (f"import sys; sys.path.append({str(ROOT / 'bench')!r}); "
                f"from ws_fanout import serve_profiled; serve_profiled({workers})")  # fmt: skip
    return api_process(dsn, log, code, lambda _port: len(_listeners(dsn)) >= workers, env=env)


def profiled_app() -> Any:
    """The API workers' app factory under ``--profile``: SIGUSR1 starts cProfile in the
    worker, the next SIGUSR1 stops it and writes ``$MB_BENCH_PROFILE.<pid>``."""
    from api.app import DEFAULT_NAME, create_app
    from market_bridge.settings import load_settings

    app = create_app(load_settings(), DEFAULT_NAME)
    prof, on = cProfile.Profile(), [False]

    def toggle() -> None:
        if on[0]:
            prof.disable()
            prof.dump_stats(f"{os.environ['MB_BENCH_PROFILE']}.{os.getpid()}")
        else:
            prof.enable()
        on[0] = not on[0]

    @app.after_server_start
    async def profile_on_signal(app: Any) -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, toggle)

    return app


def serve_profiled(workers: int) -> None:
    from functools import partial

    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from market_bridge.settings import load_settings

    settings = load_settings()
    loader = AppLoader(factory=partial(profiled_app))
    app = loader.load()
    app.prepare(host=settings.api_host, port=settings.api_port, workers=workers,
                access_log=False, single_process=False)  # fmt: skip
    Sanic.serve(primary=app, app_loader=loader)


def worker_pids(dsn: str) -> list[int]:
    return [int(name.rsplit(":", 1)[1]) for name in _listeners(dsn)]


def profile_report(prefix: Path, pids: list[int]) -> None:
    files = [str(prefix) + f".{pid}" for pid in pids if Path(str(prefix) + f".{pid}").exists()]
    if not files:
        print("no profile written")
        return
    stats = pstats.Stats(*files)
    print(f"\nprofile of the API worker(s) during the run ({len(files)} file(s), top 30 by "
          f"own time; cProfile slows the worker down):")  # fmt: skip
    stats.sort_stats("tottime").print_stats(30)


def _listeners(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'market-bridge-api-ws:%'"
        ).fetchall()
    return [r[0] for r in rows]


def subscriptions(cid: int, symbols: list[str], per_client: int) -> list[str]:
    return [symbols[(cid * per_client + k) % len(symbols)] for k in range(per_client)]


# ---- clients (their own processes) -------------------------------------------------


@dataclass
class ClientResult:
    connected: int = 0
    latencies_us: bytes = b""  # array('q'): every live message a probe received
    bar_latencies_us: bytes = b""  # array('q'): the bars among them (the per-second burst)
    ticks: int = 0
    bars: int = 0
    bytes_read: int = 0  # load clients
    closed: int = 0  # connections the server closed
    errors: list[str] = field(default_factory=list)


class Opening:
    """Counts connections that opened (or failed to) and says when all have."""

    def __init__(self, result: ClientResult, expected: int) -> None:
        self.result, self.expected = result, expected
        self.settled = asyncio.Event()

    def done(self, error: str | None = None) -> None:
        if error is None:
            self.result.connected += 1
        else:
            self.result.errors.append(error)
        if self.result.connected + len(self.result.errors) >= self.expected:
            self.settled.set()


def client_process(kind: str, port: int, ids: list[int], symbols: list[str], per_client: int,
                   ready: Any, stop: Any, results: Any) -> None:  # fmt: skip
    import uvloop  # the clients' own overhead is not what is measured: the fastest loop

    run = _probes if kind == "probe" else _loaders
    results.put(uvloop.run(run(port, ids, symbols, per_client, ready, stop)))


async def _open_in_waves(ids: list[int], one: Any, opening: Opening, ready: Any) -> list[Any]:
    # Waves of 100: the server's accept backlog is finite.
    tasks = []
    for i in range(0, len(ids), 100):
        tasks += [asyncio.create_task(one(cid)) for cid in ids[i : i + 100]]
        await asyncio.sleep(0.05)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(opening.settled.wait(), 120)
    ready.put(opening.result.connected)
    return tasks


async def _probes(port: int, ids: list[int], symbols: list[str], per_client: int,
                  ready: Any, stop: Any) -> ClientResult:  # fmt: skip
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    result = ClientResult()
    opening = Opening(result, len(ids))
    latencies, bar_latencies = array("q"), array("q")

    async def one(cid: int) -> None:
        mine = subscriptions(cid, symbols, per_client)
        waiting = set(mine)
        try:
            async with connect(f"ws://127.0.0.1:{port}/stream/ws", ping_interval=None,
                               compression=None, max_queue=None, open_timeout=60,
                               proxy=None) as ws:  # fmt: skip
                await ws.send(orjson.dumps({"type": "subscribe", "symbols": mine}).decode())
                if orjson.loads(await ws.recv()).get("type") != "subscribed":
                    raise RuntimeError("no subscribed ack")
                opening.done()
                async for raw in ws:
                    now = time.time_ns()
                    msg = orjson.loads(raw)
                    data = msg.get("data") or {}
                    if "sent_ns" not in data:
                        continue
                    latencies.append((now - data["sent_ns"]) // 1000)
                    if msg["type"] == "bar":
                        bar_latencies.append(latencies[-1])
                    if msg["type"] == "tick":
                        result.ticks += 1
                    elif data.get("stop"):
                        waiting.discard(msg["symbol"])
                        if not waiting:
                            return
                    else:
                        result.bars += 1
        except ConnectionClosed:
            result.closed += 1
        except Exception as exc:  # handshake refused, reset...: count it, keep the others
            opening.done(f"{type(exc).__name__}: {exc}")

    tasks = await _open_in_waves(ids, one, opening, ready)
    await asyncio.gather(*tasks, return_exceptions=True)
    result.latencies_us = latencies.tobytes()
    result.bar_latencies_us = bar_latencies.tobytes()
    return result


def _masked_text_frame(payload: bytes) -> bytes:
    """One client→server text frame (clients must mask, RFC 6455 §5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0xFE]) + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class _Loader(asyncio.Protocol):
    """A load client: the handshake, one masked subscribe frame, then bytes counted and
    discarded in ``data_received`` (no task wake-up per read: the server, not the
    clients, is being measured)."""

    def __init__(self, port: int, subscribe: bytes, result: ClientResult) -> None:
        self.port, self.subscribe, self.result = port, subscribe, result
        self.settled: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.state = "handshake"
        self.buf = b""
        self.transport: Any = None  # uvloop's TCPTransport

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET /stream/ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        if self.state == "live":
            self.result.bytes_read += len(data)
            return
        self.buf += data
        if self.state == "handshake":
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                return self.fail(head.split(b"\r\n", 1)[0].decode())
            self.state, self.buf = "subscribing", rest
            assert self.transport is not None
            self.transport.write(_masked_text_frame(self.subscribe))
        if self.state == "subscribing" and self.buf:
            if b'"subscribed"' not in self.buf:
                return self.fail(f"no subscribed ack: {self.buf[:80]!r}")
            self.state, self.buf = "live", b""
            self.settled.set_result(None)

    def fail(self, error: str) -> None:
        self.state = "failed"
        if not self.settled.done():
            self.settled.set_result(error)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == "live":
            self.result.closed += 1  # the server closed it before we stopped
            self.state = "closed"
        elif self.state in ("handshake", "subscribing"):
            self.fail(f"connection lost during the handshake: {exc!r}")


def _same(client: _Loader) -> _Loader:
    return client


async def _loaders(port: int, ids: list[int], symbols: list[str], per_client: int,
                   ready: Any, stop: Any) -> ClientResult:  # fmt: skip
    result = ClientResult()
    opening = Opening(result, len(ids))
    loop = asyncio.get_running_loop()
    clients: list[_Loader] = []

    async def one(cid: int) -> None:
        subscribe = orjson.dumps(
            {"type": "subscribe", "symbols": subscriptions(cid, symbols, per_client)}
        )
        for attempt in range(3):  # a connection storm may see resets: retry, as clients do
            client = _Loader(port, subscribe, result)
            try:
                await loop.create_connection(functools.partial(_same, client), "127.0.0.1", port)
                error = await client.settled
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if error is None:
                clients.append(client)
                opening.done()
                return
            await asyncio.sleep(0.5 * (attempt + 1))
        opening.done(error)

    tasks = await _open_in_waves(ids, one, opening, ready)
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.to_thread(stop.wait)
    for client in clients:
        if client.state == "live":
            client.state = "stopped"
        if client.transport is not None:
            client.transport.abort()
    return result


# ---- the feed ----------------------------------------------------------------------


@dataclass
class Published:
    ticks: dict[str, int]
    bars: dict[str, int]
    payloads: int = 0
    messages: int = 0


def publish(dsn: str, symbols: list[str], rate: float, seconds: float) -> Published:
    """Ticks at ``rate``/s in total plus a final bar per symbol each second, flushed every
    50 ms like the streaming service; then one "stop" bar per symbol."""
    out = Published(dict.fromkeys(symbols, 0), dict.fromkeys(symbols, 0))
    owed = 0.0
    i = minute = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.monotonic()
        next_bar = start + 1.0
        while (now := time.monotonic()) - start < seconds:
            owed += rate * FLUSH_S
            batch: list[dict[str, Any]] = []
            while owed >= 1:
                sym = symbols[i % len(symbols)]
                batch.append({"type": "tick", "symbol": sym, "data": {"price": 100.0 + i % 7}})
                out.ticks[sym] += 1
                owed -= 1
                i += 1
            if now >= next_bar:
                batch += [_bar(sym, minute) for sym in symbols]
                for sym in symbols:
                    out.bars[sym] += 1
                minute += 1
                next_bar += 1.0
            out.messages += len(batch)
            out.payloads += _send(conn, batch)
            time.sleep(max(0.0, FLUSH_S - (time.monotonic() - now)))
        _send(conn, [_bar(sym, minute, stop=True) for sym in symbols])
    return out


def _bar(symbol: str, minute: int, stop: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {"timeframe": "1m", "start": f"m{minute}", "close": 100.0,
                            "final": True}  # fmt: skip
    if stop:
        data["stop"] = True
    return {"type": "bar", "symbol": symbol, "data": data}


def _send(conn: psycopg.Connection[Any], batch: list[dict[str, Any]]) -> int:
    sent = time.time_ns()
    for msg in batch:
        msg["data"]["sent_ns"] = sent
    payloads = pack(batch).payloads
    if payloads:
        conn.execute(NOTIFY, (LIVE_CHANNEL, payloads))
    return len(payloads)


# ---- report ------------------------------------------------------------------------


def metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    pattern = rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$"
    return sum(float(m.group(1)) for m in re.finditer(pattern, text, re.M))


_COUNTERS = ("mb_ws_messages_conflated_total", "mb_ws_slow_client_disconnects_total",
             "mb_ws_direct_writes_total")  # fmt: skip


def counters(port: int, workers: int) -> list[float]:
    """``_COUNTERS`` summed over the workers (/metrics answers from one of them: sum the
    distinct answers of several scrapes)."""
    scrapes = {tuple(metric(port, n) for n in _COUNTERS) for _ in range(8 * workers)}
    return [sum(s[i] for s in scrapes) for i in range(len(_COUNTERS))]


def pct(sorted_us: list[int], q: float) -> float:
    """The ``q`` quantile of sorted microseconds, in milliseconds."""
    return percentile(sorted_us, q) / 1000.0


@dataclass
class Run:
    """One measured run: the API with one write path, fresh clients, the same feed."""

    write_path: str
    connected: int
    connect_s: float
    published: Published
    elapsed: float
    cpu: float
    deliveries: float
    conflated: float
    slow: float
    writes: float  # direct writes (one per client per dispatch round)
    latencies_us: list[int]
    bar_latencies_us: list[int]
    got_ticks: int
    want_ticks: int
    got_bars: int
    want_bars: int
    closed: int
    errors: list[str]
    mib: float
    log: Path

    def pct(self, q: float) -> float:
        return pct(self.latencies_us, q)


def run_once(dsn: str, args: argparse.Namespace, symbols: list[str], write_path: str) -> Run:
    probes = args.clients if args.full_clients else min(args.probes, args.clients)
    ids = list(range(args.clients))
    shards = [("probe", ids[k : probes : args.client_procs]) for k in range(args.client_procs)]
    shards += [("load", ids[probes + k :: args.client_procs]) for k in range(args.client_procs)]
    shards = [(kind, part) for kind, part in shards if part]
    base = Path(tempfile.mkdtemp(prefix=f"mb-bench-ws-{write_path}-"))
    profile = base / "profile" if args.profile else None
    with api_server(dsn, args.workers, base / "api.log", write_path, profile) as (port, api_pid):
        workers = worker_pids(dsn)
        ctx = mp.get_context("spawn")
        ready, stop, results = ctx.Queue(), ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=client_process, args=(kind, port, part, symbols,
                                                          args.per_client, ready, stop,
                                                          results))
                 for kind, part in shards]  # fmt: skip
        t0 = time.monotonic()
        for p in procs:
            p.start()
        connected = sum(ready.get(timeout=300) for _ in procs)
        connect_s = time.monotonic() - t0
        if connected < args.clients:
            print(f"[{write_path}] WARNING: only {connected} of {args.clients} clients connected")
        print(f"[{write_path}] {connected}/{args.clients} clients connected and subscribed in "
              f"{connect_s:.1f} s ({probes} probes; {args.workers} API worker(s))",
              flush=True)  # fmt: skip
        time.sleep(1.2)  # the last snapshots settle; the hub flushes its counters (1 s)
        if profile is not None:
            for pid in workers:
                os.kill(pid, signal.SIGUSR1)
        before = counters(port, args.workers)
        cpu0, t1 = cpu_seconds(api_pid), time.monotonic()
        published = publish(dsn, symbols, args.rate, args.seconds)
        n_probe_procs = sum(1 for kind, _ in shards if kind == "probe")
        collected = [results.get(timeout=300) for _ in range(n_probe_procs)]
        elapsed, cpu = time.monotonic() - t1, cpu_seconds(api_pid) - cpu0
        if profile is not None:
            for pid in workers:
                os.kill(pid, signal.SIGUSR1)
            time.sleep(1.0)
            profile_report(profile, workers)
        stop.set()
        collected += [results.get(timeout=60) for _ in range(len(procs) - n_probe_procs)]
        for p in procs:
            p.join(10)
        time.sleep(1.2)  # the hub flushes its counters once a second
        # With several workers /metrics answers from one of them: sum distinct answers.
        after = counters(port, args.workers)
        conflated, slow = after[0] - before[0], after[1] - before[1]
        writes = after[2] - before[2]

    def merged(field: str) -> list[int]:
        out: list[int] = []
        for r in collected:
            a = array("q")
            a.frombytes(getattr(r, field))
            out.extend(a)
        return sorted(out)

    lat, bar_lat = merged("latencies_us"), merged("bar_latencies_us")

    def fan_out(clients: range) -> tuple[int, int]:
        subs = dict.fromkeys(symbols, 0)
        for cid in clients:
            for sym in subscriptions(cid, symbols, args.per_client):
                subs[sym] += 1
        return (sum(published.ticks[s] * n for s, n in subs.items()),
                sum(published.bars[s] * n for s, n in subs.items()))  # fmt: skip

    want_ticks, want_bars = fan_out(range(probes))
    all_ticks, all_bars = fan_out(range(args.clients))
    errors = [e for r in collected for e in r.errors]
    if not errors:
        shutil.rmtree(base, ignore_errors=True)
    return Run(
        write_path=write_path, connected=connected, connect_s=connect_s, published=published,
        elapsed=elapsed, cpu=cpu, deliveries=all_ticks + all_bars - conflated,
        conflated=conflated, slow=slow, writes=writes, latencies_us=lat, bar_latencies_us=bar_lat,
        got_ticks=sum(r.ticks for r in collected), want_ticks=want_ticks,
        got_bars=sum(r.bars for r in collected), want_bars=want_bars,
        closed=sum(r.closed for r in collected), errors=errors,
        mib=sum(r.bytes_read for r in collected) / 2**20, log=base / "api.log",
    )  # fmt: skip


def report(run: Run, args: argparse.Namespace, n_symbols: int) -> None:
    p, lat = run.published, run.latencies_us
    tag = f"[{run.write_path}]"
    print(f"{tag} feed: {p.messages} messages in {p.payloads} NOTIFY payloads over "
          f"{args.seconds:g} s ({args.rate:g} ticks/s + {n_symbols} bars/s)")  # fmt: skip
    print(f"{tag} fan-out: {run.deliveries:,.0f} messages to clients "
          f"({run.deliveries / run.elapsed:,.0f}/s over {run.elapsed:.1f} s); API CPU "
          f"{run.cpu:.1f} s = {run.cpu / run.elapsed:.0%} of one core "
          f"({run.cpu * 1e6 / max(run.deliveries, 1):.1f} us per message); "
          + (f"{run.writes:,.0f} direct writes ({run.deliveries / run.writes:.1f} messages "
             f"each); " if run.writes else "")
          + f"load clients read {run.mib:,.1f} MiB")  # fmt: skip
    print(f"{tag} probes: bars {run.got_bars:,}/{run.want_bars:,} "
          f"({run.got_bars / max(run.want_bars, 1):.1%}), ticks {run.got_ticks:,}/"
          f"{run.want_ticks:,} ({run.got_ticks / max(run.want_ticks, 1):.1%}); conflated "
          f"{run.conflated:,.0f}, slow-client disconnects {run.slow:.0f}, closed {run.closed}")  # fmt: skip
    print(f"{tag} broadcast latency ms ({len(lat):,} messages): p50 {run.pct(0.50):.1f}  "
          f"p95 {run.pct(0.95):.1f}  p99 {run.pct(0.99):.1f}  max {run.pct(1.0):.1f}  "
          f"mean {statistics.fmean(lat) / 1000 if lat else float('nan'):.1f}")  # fmt: skip
    bars = run.bar_latencies_us
    print(f"{tag}   of which bars ({len(bars):,}, sent in one burst per second): p50 "
          f"{pct(bars, 0.5):.1f}  p95 {pct(bars, 0.95):.1f}  max {pct(bars, 1.0):.1f}")  # fmt: skip
    if run.errors:
        print(f"{tag} client errors ({len(run.errors)}): {run.errors[:3]}; the API's log: "
              f"{run.log}")  # fmt: skip


def compare(new: Run, baselines: list[Run]) -> None:
    rows = [new, *baselines]
    print("\nwrite path   clients  msgs/s    us/msg  p50 ms   p95 ms   p99 ms")
    for r in rows:
        print(f"{r.write_path:<12} {r.connected:>7,} {r.deliveries / r.elapsed:>8,.0f} "
              f"{r.cpu * 1e6 / max(r.deliveries, 1):>8.1f} {r.pct(0.5):>7.1f} "
              f"{r.pct(0.95):>8.1f} {r.pct(0.99):>8.1f}")  # fmt: skip
    for b in baselines:

        def ratio(q: float, b: Run = b) -> str:
            return f"x{b.pct(q) / new.pct(q):.1f}" if new.pct(q) > 0 else "-"

        cpu_new = new.cpu / max(new.deliveries, 1)
        cpu_base = b.cpu / max(b.deliveries, 1)
        print(f"{b.write_path} / {new.write_path}: latency p50 {ratio(0.5)}, p95 {ratio(0.95)}, "
              f"p99 {ratio(0.99)}; CPU per message x{cpu_base / cpu_new:.1f}")  # fmt: skip
    verdict = "meets" if new.pct(0.95) <= TARGET_P95_MS else "misses"
    print(f"target p95 <= {TARGET_P95_MS:g} ms: {new.write_path} {verdict} it "
          f"(p95 {new.pct(0.95):.1f} ms)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clients", type=int, default=2000, help="connections in total")
    ap.add_argument("--probes", type=int, default=20, help="of which measure latency")
    ap.add_argument("--full-clients", action="store_true", help="every client is a probe")
    ap.add_argument("--symbols", type=int, default=50)
    ap.add_argument("--per-client", type=int, default=5)
    ap.add_argument("--rate", type=float, default=200.0, help="ticks per second, all symbols")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=1, help="Sanic worker processes")
    ap.add_argument("--client-procs", type=int, default=2, help="processes for the clients")
    ap.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    ap.add_argument("--profile", action="store_true",
                    help="cProfile the API worker(s) during the measured window")  # fmt: skip
    ap.add_argument("--baseline", default="task",
                    help="baseline write paths measured after the new one, comma-separated: "
                         "task (previous hub: per-client writer tasks), send (one ws.send "
                         "per message per client), none")  # fmt: skip
    args = ap.parse_args()
    for b in args.baseline.split(","):
        if b not in ("task", "send", "none", ""):
            ap.error(f"--baseline: unknown write path {b!r}")

    symbols = [f"BENCH{i:04d}" for i in range(args.symbols)]
    paths = ["direct", *(b for b in args.baseline.split(",") if b and b != "none")]
    with database(args.database_url) as db:
        dsn = db.dsn
        seed_instruments(dsn, symbols)
        runs = []
        for path in paths:
            runs.append(run_once(dsn, args, symbols, path))
            report(runs[-1], args, len(symbols))
    if len(runs) > 1:
        compare(runs[0], runs[1:])


if __name__ == "__main__":
    main()
