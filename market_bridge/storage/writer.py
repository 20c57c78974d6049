"""The streaming writer: batches ticks, bars and depth snapshots into TimescaleDB.

Batching: whatever has queued is written as soon as the previous write finishes (so
latency stays low at low rates), up to ``max_batch`` rows, waiting at most ``max_wait``
seconds for more (so batches grow at high rates). Ticks go in with binary COPY.

No data lost: every batch gets an id, committed in the same transaction into
``md.ingest_batches``. When the database is unreachable, batches stay queued in memory
up to ``memory_limit`` rows; beyond that the oldest are spooled to ``spool_dir`` (one file
per batch, in order). When the database is back, the spool is replayed first, then
memory, in order; a batch whose id is already recorded (its commit had succeeded but
the acknowledgement was lost) is skipped, so nothing is written twice. Spool files left
by a previous process are replayed at start. ``close()`` flushes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg

from market_bridge.storage.rows import BAR_COLUMNS, DEPTH_COLUMNS, TICK_COLUMNS, TICK_TYPES

log = logging.getLogger(__name__)

Kind = Literal["ticks", "bars", "depth"]

_COPY_TICKS = "COPY md.tick_data ({}) FROM STDIN (FORMAT BINARY)".format(", ".join(TICK_COLUMNS))
_BAR_UPSERT = """
INSERT INTO md.intraday_bars ({cols}, updated_at)
VALUES ({params}, now())
ON CONFLICT (exchange, symbol, bar_timestamp, timeframe) DO UPDATE SET
    instrument_token = EXCLUDED.instrument_token, open = EXCLUDED.open,
    high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trades_count = EXCLUDED.trades_count, vwap = EXCLUDED.vwap,
    oi = EXCLUDED.oi, provenance = EXCLUDED.provenance, revision = EXCLUDED.revision,
    updated_at = now()
WHERE EXCLUDED.provenance = 'historical'
   OR (md.intraday_bars.provenance = 'live' AND EXCLUDED.revision >= md.intraday_bars.revision)
""".format(cols=", ".join(BAR_COLUMNS), params=", ".join(["%s"] * len(BAR_COLUMNS)))
_DEPTH_INSERT = """
INSERT INTO md.order_book ({cols}) VALUES ({params})
ON CONFLICT (exchange, symbol, snapshot_timestamp) DO NOTHING
""".format(cols=", ".join(DEPTH_COLUMNS), params=", ".join(["%s"] * len(DEPTH_COLUMNS)))
_CLAIM = """INSERT INTO md.ingest_batches (batch_id, kind, rows) VALUES (%s, %s, %s)
            ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id"""


@dataclass
class Batch:
    kind: Kind
    rows: list[tuple[Any, ...]]
    batch_id: uuid.UUID = field(default_factory=uuid.uuid4)
    enqueued_ns: list[int] = field(default_factory=list)  # per-row enqueue times (latency)


@dataclass
class WriterMetrics:
    rows_written: dict[str, int] = field(default_factory=lambda: {"ticks": 0, "bars": 0,
                                                                   "depth": 0})
    batches_written: int = 0
    batches_skipped_duplicate: int = 0
    spooled_batches: int = 0
    replayed_batches: int = 0
    db_failures: int = 0
    db_up: bool = True
    queued_rows: int = 0
    spool_files: int = 0
    last_error: str | None = None


class StorageWriter:
    def __init__(
        self,
        dsn: str,
        spool_dir: Path,
        max_batch: int = 20_000,
        max_wait: float = 0.002,
        memory_limit: int = 1_000_000,
        retry_interval: float = 0.5,
        track_latency: bool = False,
    ) -> None:
        self.dsn = dsn
        self.spool_dir = spool_dir
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.memory_limit = memory_limit
        self.retry_interval = retry_interval
        self.track_latency = track_latency
        self.metrics = WriterMetrics()
        self.latencies_ns: list[int] = []  # enqueue -> commit, when track_latency
        self._incoming: dict[Kind, list[tuple[Any, ...]]] = {"ticks": [], "bars": [],
                                                              "depth": []}
        self._incoming_ns: list[int] = []
        self._pending: deque[Batch] = deque()  # cut batches not yet committed (in memory)
        self._pending_rows = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._spool_seq = 0
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._spool_seq = max((self._seq_of(p) for p in self._spool_files()), default=0)

    # -- producer side (sync, cheap: called from the hot path) ---------------------------
    def put(self, kind: Kind, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        self._incoming[kind].extend(rows)
        if self.track_latency and kind == "ticks":
            now = time.perf_counter_ns()
            self._incoming_ns.extend([now] * len(rows))
        self._wake.set()

    @property
    def backlog(self) -> int:
        return self._pending_rows + sum(len(v) for v in self._incoming.values())

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="storage-writer")

    async def close(self, timeout: float = 30.0) -> None:
        """Flush everything (memory and spool) then stop; spool what cannot be written."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._cut_batches()
        while self._pending:  # database still down: keep it on disk for the next start
            self._spool(self._pending.popleft())
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()

    # -- the loop -----------------------------------------------------------------------
    def _cut_batches(self) -> None:
        for kind, rows in self._incoming.items():
            while rows:
                chunk, rest = rows[: self.max_batch], rows[self.max_batch :]
                batch = Batch(kind, chunk)
                if kind == "ticks" and self.track_latency:
                    batch.enqueued_ns = self._incoming_ns[: len(chunk)]
                    self._incoming_ns = self._incoming_ns[len(chunk) :]
                self._pending.append(batch)
                self._pending_rows += len(chunk)
                rows = rest
            self._incoming[kind] = []
        while self._pending_rows > self.memory_limit and len(self._pending) > 1:
            oldest = self._pending.popleft()
            self._pending_rows -= len(oldest.rows)
            self._spool(oldest)
        self.metrics.queued_rows = self._pending_rows

    async def _run(self) -> None:
        while True:
            if not self._closing and not self._pending and not self.backlog:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.5 if self._spool_files() else None)
            if 0 < self.backlog < self.max_batch and self.max_wait > 0 and not self._closing:
                await asyncio.sleep(self.max_wait)  # let a burst coalesce into one batch
            self._cut_batches()
            try:
                await self._drain()
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                await self._on_db_failure(exc)
                if self._closing:
                    return
                continue
            if self._closing and not self.backlog and not self._spool_files():
                return

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await psycopg.AsyncConnection.connect(self.dsn, connect_timeout=5)
            if not self.metrics.db_up:
                log.warning("database is back: replaying %d queued rows and %d spool files",
                            self._pending_rows, len(self._spool_files()))
            self.metrics.db_up = True
        return self._conn

    async def _on_db_failure(self, exc: BaseException) -> None:
        self.metrics.db_failures += 1
        self.metrics.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if self.metrics.db_up:
            log.error("database unavailable (%s); buffering in memory, then spooling to %s",
                      self.metrics.last_error, self.spool_dir)
        self.metrics.db_up = False
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn = None
        if not self._closing:
            await asyncio.sleep(self.retry_interval)

    async def _drain(self) -> None:
        # Oldest first: spool files predate anything still in memory.
        for path in self._spool_files():
            with path.open("rb") as fh:
                batch: Batch = pickle.load(fh)
            await self._write(batch)
            path.unlink()
            self.metrics.replayed_batches += 1
        self.metrics.spool_files = 0
        while self._pending:
            batch = self._pending[0]
            await self._write(batch)
            self._pending.popleft()
            self._pending_rows -= len(batch.rows)
            if batch.enqueued_ns:
                now = time.perf_counter_ns()
                self.latencies_ns.extend(now - t for t in batch.enqueued_ns)
        self.metrics.queued_rows = self._pending_rows

    async def _write(self, batch: Batch) -> None:
        conn = await self._connection()
        async with conn.transaction():
            claimed = await (await conn.execute(
                _CLAIM, (batch.batch_id, batch.kind, len(batch.rows)))).fetchone()
            if claimed is None:
                self.metrics.batches_skipped_duplicate += 1
                return
            async with conn.cursor() as cur:
                if batch.kind == "ticks":
                    async with cur.copy(_COPY_TICKS) as copy:
                        copy.set_types(list(TICK_TYPES))
                        for row in batch.rows:
                            await copy.write_row(row)
                elif batch.kind == "bars":
                    await cur.executemany(_BAR_UPSERT, batch.rows)
                else:
                    await cur.executemany(_DEPTH_INSERT, batch.rows)
        self.metrics.batches_written += 1
        self.metrics.rows_written[batch.kind] += len(batch.rows)

    # -- spool --------------------------------------------------------------------------
    def _spool_files(self) -> list[Path]:
        return sorted(self.spool_dir.glob("*.batch"))

    @staticmethod
    def _seq_of(path: Path) -> int:
        try:
            return int(path.name.split("-", 1)[0])
        except ValueError:
            return 0

    def _spool(self, batch: Batch) -> None:
        self._spool_seq += 1
        path = self.spool_dir / f"{self._spool_seq:012d}-{batch.kind}.batch"
        tmp = path.with_suffix(".tmp")
        batch.enqueued_ns = []
        with tmp.open("wb") as fh:
            pickle.dump(batch, fh, protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # a crash leaves either no file or a whole one
        self.metrics.spooled_batches += 1
        self.metrics.spool_files += 1
