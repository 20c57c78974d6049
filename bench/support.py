"""What the bench scripts share: a free port, a throwaway TimescaleDB, the Kite simulator
and the API in subprocesses, the CPU time of a process tree, percentiles.

Not a bench itself. The scripts run as ``.venv/bin/python bench/NAME.py``, which puts
bench/ first on ``sys.path``: they import this module as ``from support import ...``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg
from psycopg import sql

from market_bridge.db.cluster import LocalCluster
from market_bridge.db.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- database ----------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    dsn: str
    postgres_pid: int | None  # the throwaway cluster's postmaster (for its CPU), else None


@contextmanager
def database(
    url: str | None, *, durable: bool = False, name: str = "mb_bench", prefix: str = "mb-bench-pg-"
) -> Iterator[Database]:
    """A migrated database: ``url`` itself (migrated in place) when given, else database
    ``name`` in a throwaway TimescaleDB cluster on a free port in a temp dir, stopped and
    removed on exit. The throwaway cluster runs with fsync off (``fast_unsafe``) unless
    ``durable``: production settings, for benches that measure writes."""
    if url:
        migrate(url)
        yield Database(url, None)
        return
    base = Path(tempfile.mkdtemp(prefix=prefix))
    os_user = os.environ.get("MB_DB_OS_USER", "marketbridge")
    if os.geteuid() == 0:  # the server runs as the unprivileged user, as in the tests
        entry = pwd.getpwnam(os_user)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    cluster = LocalCluster(data_dir=base / "data", port=free_port(), os_user=os_user,
                           log_file=base / "postgres.log", fast_unsafe=not durable)  # fmt: skip
    try:
        status = cluster.start()
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        dsn = cluster.dsn(name)
        migrate(dsn)
        yield Database(dsn, status.pid)
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


# ---- subprocesses ------------------------------------------------------------------


def wait_until(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes],
               timeout: float, log: Path | None = None) -> None:  # fmt: skip
    """Poll ``ready`` every 0.2 s until it is true; SystemExit if ``proc`` exits first or
    ``timeout`` passes (with the tail of ``log``)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            why = "exited" if proc.poll() is not None else f"not ready after {timeout:g} s"
            tail = f"; see {log}:\n{log.read_text()[-2000:]}" if log and log.exists() else ""
            raise SystemExit(f"{what} did not come up ({why}){tail}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, timeout: float = 20) -> None:
    """Signal ``proc`` and wait for it; kill it if it has not exited within ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextmanager
def simulator(*args: str, all_plans: bool = False, timeout: float = 60) -> Iterator[str]:
    """The base URL (``http://127.0.0.1:PORT``; its WebSocket is ``ws://`` on the same
    port) of ``market-bridge simulate ARGS`` in a subprocess (its own process and GIL, as
    Kite is remote), once it answers; with ``all_plans``, once it has also built every
    instrument's day plan (so that the first seconds stream at full rate)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "market_bridge.cli.simulate", "--port",
                             str(port), *args], stdout=subprocess.DEVNULL)  # fmt: skip

    def ready() -> bool:
        try:
            with urllib.request.urlopen(base + "/sim/status", timeout=1) as resp:
                status = orjson.loads(resp.read())["data"]
        except OSError:
            return False
        return not all_plans or status["day_plans_cached"] >= status["instruments"]

    try:
        wait_until("the simulator", ready, proc, timeout)
        yield base
    finally:
        stop(proc, signal.SIGTERM, timeout=10)


@contextmanager
def api_process(
    dsn: str, log: Path, code: str, ready: Callable[[int], bool],
    env: dict[str, str] | None = None, timeout: float = 90,
) -> Iterator[tuple[int, int]]:  # fmt: skip
    """(port, pid) of the API started by the Python ``code`` (e.g. ``from api.server import
    serve; serve(workers=2)``) in a subprocess on a free port with ``DATABASE_URL=dsn``
    (proxies unset; ``env`` added), once ``ready(port)``; output to ``log``; SIGINT at
    the end."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    full |= {"DATABASE_URL": dsn, "MB_API_HOST": "127.0.0.1", "MB_API_PORT": str(port)}
    full |= env or {}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=full, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until("the API", lambda: ready(port), proc, timeout, log)
        yield port, proc.pid
    finally:
        stop(proc)


# ---- measuring ---------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a process and its descendants (/proc; Linux); NaN for None."""
    if pid is None:
        return float("nan")
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def descendants(pid: int) -> list[int]:
    try:
        kids = [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in descendants(k)]


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted values, nearest rank (q=1 is the maximum);
    NaN when there are none."""
    if not ordered:
        return float("nan")
    return float(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))])
