"""``market-bridge api`` with two Sanic worker processes: each worker LISTENs on its own
connection, and every client gets the live feed whichever worker accepted it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import pytest

from .conftest import free_port
from .test_api_stream_support import notify, recv, subscribe, ws_client
from .test_api_support import insert_instruments

ROOT = Path(__file__).resolve().parents[1]
# The hub names its LISTEN session after the worker's pid.
LISTENERS = """SELECT application_name FROM pg_stat_activity
               WHERE datname = current_database()
                 AND application_name LIKE 'market-bridge-api-ws:%'"""


@pytest.fixture(scope="module")
def api_port(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    insert_instruments(module_db_url, [("NSE", "ITC", 424961, "EQ")])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env |= {"DATABASE_URL": module_db_url, "MB_API_HOST": "127.0.0.1", "MB_API_PORT": str(port)}
    log = tmp_path_factory.mktemp("api-workers") / "api.log"  # a file: a full pipe would block
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from api.server import serve; serve(workers=2)"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_listening(module_db_url, port, proc, log, workers=2)
        yield port
    finally:
        proc.send_signal(signal.SIGINT)  # Sanic's graceful shutdown of all workers
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_listening(
    dsn: str, port: int, proc: subprocess.Popen[bytes], log: Path, workers: int
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the API exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            up = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code < 600
        except httpx.HTTPError:
            up = False
        if up and len(_listeners(dsn)) >= workers:
            return
        time.sleep(0.2)
    raise AssertionError(
        f"{workers} workers did not LISTEN in time (saw {_listeners(dsn)}): "
        f"{log.read_text()[-2000:]}"
    )


def _listeners(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [row[0] for row in conn.execute(LISTENERS).fetchall()]


def test_each_worker_listens_and_every_client_gets_the_feed(
    api_port: int, module_db_url: str
) -> None:
    names = _listeners(module_db_url)
    assert len(set(names)) == 2, names  # one LISTEN per worker process (pid in the name)
    with ExitStack() as stack:
        clients = [stack.enter_context(ws_client(api_port)) for _ in range(6)]
        for ws in clients:
            subscribe(ws, ["ITC"])
        live = [{"type": "tick", "symbol": "ITC", "data": {"price": 441.5}}]
        notify(module_db_url, live)
        for ws in clients:
            assert recv(ws) == live[0]
