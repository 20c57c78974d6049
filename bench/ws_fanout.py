"""WS /stream/ws fan-out: N clients on a live feed from NOTIFY, broadcast latency p50/p95.

    .venv/bin/python bench/ws_fanout.py [--clients 2000] [--probes 20] [--symbols 50]
                                        [--per-client 5] [--rate 200] [--seconds 10]
                                        [--workers 1] [--client-procs 2]
                                        [--full-clients] [--database-url URL]

Processes, as in production: the API (``api.server.serve(workers=W)`` in a subprocess),
client processes, and this process, which publishes like the streaming service: every
50 ms the messages of that interval, packed with the publisher's ``pack`` into
``pg_notify('mb_live', ...)`` payloads sent in one statement. Unless ``--database-url``
is given, a throwaway TimescaleDB cluster runs in a temp dir.

Clients: ``--probes`` real clients (the ``websockets`` library, JSON decoding) measure
latency; the other ``--clients`` minus probes are load clients in ``--client-procs``
processes: real WebSocket connections (handshake, masked subscribe frame) that read and
discard bytes, so that on a small machine the clients' own JSON decoding does not eat the
CPU the server is being measured with (they do not answer pings either: the API runs
with ``SANIC_WEBSOCKET_PING_INTERVAL=3600``). ``--full-clients`` makes every client a probe
(heavier: the figures then include client-side queueing).

Each client subscribes to ``--per-client`` of ``--symbols`` symbols (round robin: every
symbol has about the same number of subscribers). The feed is ``--rate`` ticks/s in
total plus one final bar per symbol every second. Every message carries its NOTIFY time
(``sent_ns``, wall clock: one machine, one clock); a probe records ``received - sent``,
so latency is NOTIFY → PostgreSQL → hub → client queue and writer → socket → JSON
decode in the client. The publisher's own batching interval is not included. Bars must
all arrive; ticks may be conflated for a client that falls behind.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import multiprocessing as mp
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from market_bridge.collect.messages import LIVE_CHANNEL, pack
from market_bridge.db.cluster import LocalCluster
from market_bridge.db.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
FLUSH_S = 0.05  # the streaming service's publish interval
NOTIFY = "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- set-up ------------------------------------------------------------------------


@contextmanager
def database(url: str | None) -> Iterator[str]:
    if url:
        migrate(url)
        yield url
        return
    base = Path(tempfile.mkdtemp(prefix="mb-bench-pg-"))
    os_user = os.environ.get("MB_DB_OS_USER", "marketbridge")
    if os.geteuid() == 0:  # the server runs as the unprivileged user, as in the tests
        entry = pwd.getpwnam(os_user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    cluster = LocalCluster(data_dir=base / "data", port=free_port(), os_user=os_user,
                           log_file=base / "postgres.log", fast_unsafe=True)  # fmt: skip
    cluster.start()
    try:
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE mb_bench")
        dsn = cluster.dsn("mb_bench")
        migrate(dsn)
        yield dsn
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


def seed_instruments(dsn: str, symbols: list[str]) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO md.instruments (exchange, tradingsymbol, instrument_token, name,
                   instrument_type, segment)
               VALUES ('NSE', %s, %s, %s, 'EQ', 'NSE') ON CONFLICT DO NOTHING""",
            [(s, 900_000 + i, s) for i, s in enumerate(symbols)],
        )


@contextmanager
def api_server(dsn: str, workers: int, log: Path) -> Iterator[tuple[int, int]]:
    """(port, pid) of ``serve(workers=...)`` in a subprocess, once every worker LISTENs."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env |= {"DATABASE_URL": dsn, "MB_API_HOST": "127.0.0.1", "MB_API_PORT": str(port),
            # Load clients do not answer WebSocket pings: no pings during the run.
            "SANIC_WEBSOCKET_PING_INTERVAL": "3600"}  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", f"from api.server import serve; serve(workers={workers})"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while len(_listeners(dsn)) < workers:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the API did not start; see {log}:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _listeners(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'market-bridge-api-ws:%'"
        ).fetchall()
    return [r[0] for r in rows]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process tree (/proc; Linux)."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[int]:
    try:
        kids = [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def subscriptions(cid: int, symbols: list[str], per_client: int) -> list[str]:
    return [symbols[(cid * per_client + k) % len(symbols)] for k in range(per_client)]


# ---- clients (their own processes) -------------------------------------------------


@dataclass
class ClientResult:
    connected: int = 0
    latencies_us: bytes = b""  # array('q'): every live message a probe received
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
    run = _probes if kind == "probe" else _loaders
    results.put(asyncio.run(run(port, ids, symbols, per_client, ready, stop)))


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
    latencies = array("q")

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
    return result


def _masked_text_frame(payload: bytes) -> bytes:
    """One client→server text frame (clients must mask, RFC 6455 §5.3)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0xFE]) + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _loaders(port: int, ids: list[int], symbols: list[str], per_client: int,
                   ready: Any, stop: Any) -> ClientResult:  # fmt: skip
    result = ClientResult()
    opening = Opening(result, len(ids))

    async def one(cid: int) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as exc:
            opening.done(f"{type(exc).__name__}: {exc}")
            return
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(
                f"GET /stream/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
            subscribe = {"type": "subscribe", "symbols": subscriptions(cid, symbols, per_client)}
            writer.write(_masked_text_frame(orjson.dumps(subscribe)))
            first = await reader.read(65536)
            if b'"subscribed"' not in first:
                raise RuntimeError(f"no subscribed ack: {first[:80]!r}")
            opening.done()
            while chunk := await reader.read(65536):
                result.bytes_read += len(chunk)
            result.closed += 1  # the server closed it before we stopped
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            opening.done(f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()

    tasks = await _open_in_waves(ids, one, opening, ready)
    await asyncio.to_thread(stop.wait)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
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


_COUNTERS = ("mb_ws_messages_conflated_total", "mb_ws_slow_client_disconnects_total")


def pct(sorted_us: list[int], q: float) -> float:
    if not sorted_us:
        return float("nan")
    return sorted_us[min(len(sorted_us) - 1, round(q * (len(sorted_us) - 1)))] / 1000.0


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
    args = ap.parse_args()

    symbols = [f"BENCH{i:04d}" for i in range(args.symbols)]
    probes = args.clients if args.full_clients else min(args.probes, args.clients)
    ids = list(range(args.clients))
    shards = [("probe", ids[k : probes : args.client_procs]) for k in range(args.client_procs)]
    shards += [("load", ids[probes + k :: args.client_procs]) for k in range(args.client_procs)]
    shards = [(kind, part) for kind, part in shards if part]
    base = Path(tempfile.mkdtemp(prefix="mb-bench-ws-"))
    with database(args.database_url) as dsn:
        seed_instruments(dsn, symbols)
        with api_server(dsn, args.workers, base / "api.log") as (port, api_pid):
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
            print(f"{connected}/{args.clients} clients connected and subscribed in "
                  f"{time.monotonic() - t0:.1f} s ({probes} probes; "
                  f"{args.workers} API worker(s))")  # fmt: skip
            cpu0, t1 = cpu_seconds(api_pid), time.monotonic()
            published = publish(dsn, symbols, args.rate, args.seconds)
            n_probe_procs = sum(1 for kind, _ in shards if kind == "probe")
            collected = [results.get(timeout=300) for _ in range(n_probe_procs)]
            elapsed, cpu = time.monotonic() - t1, cpu_seconds(api_pid) - cpu0
            stop.set()
            collected += [results.get(timeout=60) for _ in range(len(procs) - n_probe_procs)]
            for p in procs:
                p.join(10)
            time.sleep(1.2)  # the hub flushes its counters once a second
            # With several workers /metrics answers from one of them: sum distinct answers.
            scrapes = {tuple(metric(port, n) for n in _COUNTERS) for _ in range(8 * args.workers)}
            conflated, slow = (sum(s[i] for s in scrapes) for i in range(2))

    lat: list[int] = []
    for r in collected:
        a = array("q")
        a.frombytes(r.latencies_us)
        lat.extend(a)
    lat.sort()

    def fan_out(clients: range) -> tuple[int, int]:
        subs = dict.fromkeys(symbols, 0)
        for cid in clients:
            for sym in subscriptions(cid, symbols, args.per_client):
                subs[sym] += 1
        return (sum(published.ticks[s] * n for s, n in subs.items()),
                sum(published.bars[s] * n for s, n in subs.items()))  # fmt: skip

    want_ticks, want_bars = fan_out(range(probes))
    all_ticks, all_bars = fan_out(range(args.clients))
    deliveries = all_ticks + all_bars - conflated
    got_ticks, got_bars = sum(r.ticks for r in collected), sum(r.bars for r in collected)
    closed = sum(r.closed for r in collected)
    errors = [e for r in collected for e in r.errors]
    mib = sum(r.bytes_read for r in collected) / 2**20
    print(
        f"feed: {published.messages} messages in {published.payloads} NOTIFY payloads over "
        f"{args.seconds:g} s ({args.rate:g} ticks/s + {len(symbols)} bars/s)"
    )
    print(
        f"fan-out: {deliveries:,.0f} messages to clients ({deliveries / elapsed:,.0f}/s over "
        f"{elapsed:.1f} s); API CPU {cpu:.1f} s = {cpu / elapsed:.0%} of one core "
        f"({cpu * 1e6 / max(deliveries, 1):.1f} us per message); load clients read "
        f"{mib:,.1f} MiB"
    )
    print(
        f"probes: bars {got_bars:,}/{want_bars:,} ({got_bars / max(want_bars, 1):.1%}), "
        f"ticks {got_ticks:,}/{want_ticks:,} ({got_ticks / max(want_ticks, 1):.1%}); "
        f"conflated {conflated:,.0f}, slow-client disconnects {slow:.0f}, closed {closed}"
    )
    print(
        f"broadcast latency ms ({len(lat):,} messages): p50 {pct(lat, 0.50):.1f}  "
        f"p95 {pct(lat, 0.95):.1f}  p99 {pct(lat, 0.99):.1f}  max {pct(lat, 1.0):.1f}  "
        f"mean {statistics.fmean(lat) / 1000 if lat else float('nan'):.1f}"
    )
    if errors:
        print(f"client errors ({len(errors)}): {errors[:3]}; the API's log: {base / 'api.log'}")
    else:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
