"""The streaming writer: batches ticks, bars and depth snapshots into TimescaleDB.

Lanes, each with its own connection and task: ticks (``tick_lanes``, 2 by default: lane 0
and the last lanes), order books and bars (lane 1), so that the upsert of a minute's bars
or a frame's books (a COPY into a temporary table and an ``INSERT ... SELECT``, several
ms) never holds up the commit of ticks. Each lane writes when idle: when no write of its
own is in flight, whatever has queued is written at once (latency stays low at low
rates); while one is in flight, new rows accumulate and go together in the next write
(batches grow with the rate, up to ``max_batch`` rows per batch). With two tick lanes a
frame's ticks do not wait for the tick write in flight: an idle tick lane takes them
(rows of ``md.tick_data`` have no order; each batch is still claimed exactly once). One
write is one transaction with every batch of the lane that is ready: one commit, one WAL
flush. Bars keep their order (one lane, in order).

Ticks and order books are binary COPY payloads encoded by the producer in bulk
(``pgcopy``: ``put`` encodes row tuples, ``put_encoded`` takes tuples already encoded,
e.g. from numpy columns); order books go through a temporary table so that duplicates
are skipped (``ON CONFLICT DO NOTHING``); bars likewise (binary COPY into a temporary
table, then one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` with the rules of
``_BAR_UPSERT``, see ``_BAR_MERGE``).

No data lost: every batch gets an id, committed in the same transaction into
``md.ingest_batches``. When the database is unreachable, batches stay queued in memory
up to ``memory_limit`` rows; beyond that the oldest are spooled to ``spool_dir`` (one file
per batch, in order). When the database is back, the spool is replayed first, then
memory, in order (lane 0 replays the spool; lane 1 waits until it is empty, so older
bars are applied first); a batch whose id is already recorded (its commit had succeeded
but the acknowledgement was lost) is skipped, so nothing is written twice. Spool files left
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

from market_bridge.storage import pgcopy
from market_bridge.storage.rows import BAR_COLUMNS

log = logging.getLogger(__name__)

Kind = Literal["ticks", "bars", "depth"]
_KINDS: tuple[Kind, ...] = ("ticks", "depth", "bars")

_COPY_TICKS = "COPY md.tick_data ({}) FROM STDIN (FORMAT BINARY)".format(
    ", ".join(pgcopy.COPY_TICK_COLUMNS)
)
_DEPTH_COLS = ", ".join(pgcopy.COPY_DEPTH_COLUMNS)
_DEPTH_STAGE = """CREATE TEMP TABLE IF NOT EXISTS mb_depth_stage
    (LIKE md.order_book INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"""
_COPY_DEPTH = f"COPY mb_depth_stage ({_DEPTH_COLS}) FROM STDIN (FORMAT BINARY)"
_DEPTH_INSERT = (  # constant column names only
    f"INSERT INTO md.order_book ({_DEPTH_COLS}) SELECT {_DEPTH_COLS} FROM mb_depth_stage "  # noqa: S608
    "ON CONFLICT (exchange, symbol, snapshot_timestamp) DO NOTHING"
)
# The provenance rule of every bar write: a historical bar replaces anything; a live one
# replaces only a live one of the same or a lower revision.
_BAR_ON_CONFLICT = """
ON CONFLICT (exchange, symbol, bar_timestamp, timeframe) DO UPDATE SET
    instrument_token = EXCLUDED.instrument_token, open = EXCLUDED.open,
    high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
    volume = EXCLUDED.volume, trades_count = EXCLUDED.trades_count, vwap = EXCLUDED.vwap,
    oi = EXCLUDED.oi, provenance = EXCLUDED.provenance, revision = EXCLUDED.revision,
    updated_at = now()
WHERE EXCLUDED.provenance = 'historical'
   OR (md.intraday_bars.provenance = 'live' AND EXCLUDED.revision >= md.intraday_bars.revision)
"""
_BAR_COLS = ", ".join(BAR_COLUMNS)
_BAR_UPSERT = f"""
INSERT INTO md.intraday_bars ({_BAR_COLS}, updated_at)
VALUES ({", ".join(["%s"] * len(BAR_COLUMNS))}, now())"""  # noqa: S608 (constant column names only)
_BAR_UPSERT += _BAR_ON_CONFLICT
_BAR_STAGE = """CREATE TEMP TABLE IF NOT EXISTS mb_bar_stage
    (seq integer NOT NULL, LIKE md.intraday_bars INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"""
_COPY_BARS = "COPY mb_bar_stage ({}) FROM STDIN (FORMAT BINARY)".format(
    ", ".join(pgcopy.COPY_BAR_COLUMNS)
)
# _BAR_UPSERT for a whole write at once. Applying rows one by one (executemany, in order)
# leaves, per bar: the last historical row if there is one (a live row never replaces a
# historical one), else the last row of the highest revision, if that revision is >= the
# stored live one. One row per bar is picked that way (ON CONFLICT cannot touch a row twice
# in one statement), then upserted with the same WHERE, so the outcome is the same.
_BAR_MERGE = f"""
INSERT INTO md.intraday_bars ({_BAR_COLS}, updated_at)
SELECT DISTINCT ON (exchange, symbol, bar_timestamp, timeframe) {_BAR_COLS}, now()
  FROM mb_bar_stage
 ORDER BY exchange, symbol, bar_timestamp, timeframe, (provenance = 'historical') DESC,
          CASE WHEN provenance = 'historical' THEN 0 ELSE revision END DESC, seq DESC"""  # noqa: S608 (constant column names only)
_BAR_MERGE += _BAR_ON_CONFLICT
_CLAIM = """INSERT INTO md.ingest_batches (batch_id, kind, rows)
            SELECT * FROM unnest(%s::uuid[], %s::text[], %s::int[])
            ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id"""


@dataclass
class Batch:
    """Rows written (and claimed in ``md.ingest_batches``) together, exactly once.
    Ticks and depth: encoded COPY tuples (``data``); bars: row tuples (``rows``)."""

    kind: Kind
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    count: int = 0
    batch_id: uuid.UUID = field(default_factory=uuid.uuid4)
    # (rows, enqueue time) per put, for the latency figures (track_latency)
    enqueued: list[tuple[int, int]] = field(default_factory=list)


def _normalized(batch: Batch) -> Batch:
    """A batch as this version writes it (spool files of older versions held row tuples
    for every kind and no ``data``/``count``)."""
    state = vars(batch)
    if "data" not in state:
        rows = state.get("rows", [])
        batch.data, batch.count, batch.enqueued = [], len(rows), []
        if batch.kind == "ticks":
            batch.data, batch.rows = [pgcopy.encode_tick_rows(rows)], []
        elif batch.kind == "depth":
            batch.data, batch.rows = [pgcopy.encode_depth_rows(rows)], []
    return batch


@dataclass
class WriterMetrics:
    rows_written: dict[str, int] = field(
        default_factory=lambda: {"ticks": 0, "bars": 0, "depth": 0}
    )
    batches_written: int = 0
    transactions: int = 0
    batches_skipped_duplicate: int = 0
    spooled_batches: int = 0
    replayed_batches: int = 0
    db_failures: int = 0
    db_up: bool = True
    queued_rows: int = 0
    spool_files: int = 0
    last_error: str | None = None


class _Incoming:
    __slots__ = ("chunks", "count")

    def __init__(self) -> None:
        # (bytes for ticks/depth or a row-tuple list for bars, rows, enqueue ns or 0)
        self.chunks: list[tuple[Any, int, int]] = []
        self.count = 0


class _Lane:
    """One connection and the batches it writes. Lane 0 writes ticks (and replays the
    spool), lane 1 order books and bars, so that a slow upsert of a minute's bars or a
    frame's books never holds up the commit of ticks; lanes 2.. write ticks too."""

    __slots__ = ("busy", "conn", "index", "kinds", "pending", "task", "wake")

    def __init__(self, index: int, kinds: tuple[Kind, ...]) -> None:
        self.index = index
        self.kinds = kinds
        self.pending: deque[Batch] = deque()  # cut batches not yet committed, in order
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        self.busy = False  # a write (or replay) in flight


class StorageWriter:
    def __init__(
        self,
        dsn: str,
        spool_dir: Path,
        max_batch: int = 50_000,
        max_wait: float = 0.0,
        memory_limit: int = 1_000_000,
        retry_interval: float = 0.5,
        track_latency: bool = False,
        tick_lanes: int = 2,
    ) -> None:
        self.dsn = dsn
        self.spool_dir = spool_dir
        self.max_batch = max_batch
        # optional extra coalescing delay before a write; 0 = write when idle (default)
        self.max_wait = max_wait
        self.memory_limit = memory_limit
        self.retry_interval = retry_interval
        self.track_latency = track_latency
        self.metrics = WriterMetrics()
        # (enqueue ns, enqueue -> commit ns) per put of tick rows, when track_latency
        self._latencies: list[tuple[int, int, int]] = []
        self._incoming: dict[Kind, _Incoming] = {k: _Incoming() for k in _KINDS}
        self._lanes = (_Lane(0, ("ticks",)), _Lane(1, ("depth", "bars")),
                       *(_Lane(i, ("ticks",)) for i in range(2, 1 + max(1, tick_lanes))))
        self._tick_lanes = [lane for lane in self._lanes if "ticks" in lane.kinds]
        # the lane that cuts the batches of a kind when no lane task does (close)
        self._lane_of: dict[Kind, _Lane] = {
            k: lane for lane in reversed(self._lanes) for k in lane.kinds}
        self._pending_rows = 0  # rows in the lanes' pending batches
        self._closing = False
        self._spool_seq = 0
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        existing = self._spool_files()
        self._spool_seq = max((self._seq_of(p) for p in existing), default=0)
        # spool files on disk (this writer is the only one using spool_dir): the lanes look
        # at it on every loop, a directory listing each time would cost every write
        self._spooled = len(existing)
        self.metrics.spool_files = self._spooled

    # -- producer side (sync, cheap: called from the hot path) ---------------------------
    def put(self, kind: Kind, rows: Sequence[tuple[Any, ...]]) -> None:
        """Queue row tuples (``storage.rows`` column order); ticks and depth are encoded
        here, so a bad value raises in the producer, not in the writer."""
        if not rows:
            return
        if kind == "ticks":
            self._add(kind, pgcopy.encode_tick_rows(rows), len(rows))
        elif kind == "depth":
            self._add(kind, pgcopy.encode_depth_rows(rows), len(rows))
        else:
            self._add(kind, list(rows), len(rows))

    def put_encoded(self, kind: Literal["ticks", "depth"], data: bytes, count: int) -> None:
        """Queue ``count`` tuples already encoded for binary COPY (``pgcopy``)."""
        if count:
            self._add(kind, data, count)

    def _add(self, kind: Kind, chunk: Any, count: int) -> None:
        inc = self._incoming[kind]
        if kind != "ticks":
            inc.chunks.append((chunk, count, 0))
            inc.count += count
            self._lane_of[kind].wake.set()
            return
        inc.chunks.append((chunk, count, time.perf_counter_ns() if self.track_latency else 0))
        inc.count += count
        for lane in self._tick_lanes:  # an idle tick lane, else all (the first done takes it)
            if not lane.busy:
                lane.wake.set()
                return
        for lane in self._tick_lanes:
            lane.wake.set()

    @property
    def latencies_ns(self) -> list[int]:
        """Enqueue -> commit per tick row, in enqueue order (``track_latency``)."""
        out: list[int] = []
        for _, count, lat in sorted(self._latencies):
            out.extend([lat] * count)
        return out

    @property
    def backlog(self) -> int:
        return self._pending_rows + sum(v.count for v in self._incoming.values())

    def _lane_backlog(self, lane: _Lane) -> int:
        return len(lane.pending) + sum(self._incoming[k].count for k in lane.kinds)

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        for lane in self._lanes:
            lane.task = asyncio.create_task(self._run(lane), name=f"storage-writer-{lane.index}")

    async def close(self, timeout: float = 30.0) -> None:
        """Flush everything (memory and spool) then stop; spool what cannot be written."""
        self._closing = True
        tasks = [lane.task for lane in self._lanes if lane.task is not None]
        for lane in self._lanes:
            lane.wake.set()
        if tasks:
            done, running = await asyncio.wait(tasks, timeout=timeout)
            for task in running:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._cut_batches()
        for lane in self._lanes:  # database still down: keep it on disk for the next start
            while lane.pending:
                batch = lane.pending.popleft()
                self._pending_rows -= batch.count
                self._spool(batch)
            if lane.conn is not None:
                with contextlib.suppress(Exception):
                    await lane.conn.close()
        self.metrics.queued_rows = self._pending_rows

    # -- the loop -----------------------------------------------------------------------
    def _cut_batches(self, kinds: tuple[Kind, ...] = _KINDS, into: _Lane | None = None) -> None:
        """Incoming rows of ``kinds`` into batches of lane ``into`` (default: the kind's
        lane)."""
        for kind in kinds:
            inc = self._incoming[kind]
            if not inc.count:
                continue
            self._incoming[kind] = _Incoming()
            lane = into or self._lane_of[kind]
            batch = Batch(kind)
            for chunk, count, enqueued in inc.chunks:
                if kind == "bars":
                    batch.rows.extend(chunk)
                else:
                    batch.data.append(chunk)
                batch.count += count
                if enqueued:
                    batch.enqueued.append((count, enqueued))
                if batch.count >= self.max_batch:
                    self._push(lane, batch)
                    batch = Batch(kind)
            if batch.count:
                self._push(lane, batch)
        # over the memory bound: the oldest batches of these lanes to disk (only of lanes
        # whose task is the caller, or stopped: never under a write in flight). Order
        # matters only for bars, and the spool is replayed before any bar in memory.
        for lane in [into] if into else dict.fromkeys(self._lane_of[k] for k in kinds):
            while self._pending_rows > self.memory_limit and len(lane.pending) > 1:
                oldest = lane.pending.popleft()
                self._pending_rows -= oldest.count
                self._spool(oldest)
        self.metrics.queued_rows = self._pending_rows

    def _push(self, lane: _Lane, batch: Batch) -> None:
        lane.pending.append(batch)
        self._pending_rows += batch.count

    async def _run(self, lane: _Lane) -> None:
        # connect now rather than at the first write (which would wait for it); a
        # database that is down is handled by the first write
        with contextlib.suppress(psycopg.Error, OSError):
            await self._connection(lane)
        replays = lane.index == 0  # the spool (any kind, in order) is replayed by lane 0
        waits_for_spool = lane.index == 1  # bars: older ones may be in the spool
        while True:
            spooled = self._spooled > 0
            if not self._closing and not self._lane_backlog(lane) and not (replays and spooled):
                lane.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.wake.wait(), 0.5 if spooled else None)
                continue
            if self.max_wait > 0 and not self._closing and (
                0 < self._lane_backlog(lane) < self.max_batch
            ):
                await asyncio.sleep(self.max_wait)  # optional: let a burst coalesce
            self._cut_batches(lane.kinds, lane)  # may spool: look at the spool after it
            spooled = waits_for_spool and self._spooled > 0
            lane.busy = True
            try:
                if replays:
                    await self._replay(lane)
                elif spooled:
                    # older bars may be in the spool: lane 0 replays it first
                    if self._closing and self._lanes[0].task is not None and (
                        self._lanes[0].task.done()
                    ):
                        return  # lane 0 gave up (database down): close() spools the rest
                    await asyncio.sleep(0.05)
                    continue
                await self._drain(lane)
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                await self._on_db_failure(lane, exc)
                if self._closing:
                    return
                continue
            finally:
                lane.busy = False
            if self._closing and not self._lane_backlog(lane) and not (
                replays and self._spooled
            ):
                return

    async def _connection(self, lane: _Lane) -> psycopg.AsyncConnection[Any]:
        if lane.conn is None or lane.conn.closed or lane.conn.broken:
            conn = await psycopg.AsyncConnection.connect(self.dsn, connect_timeout=5)
            await conn.execute(_DEPTH_STAGE)
            await conn.execute(_BAR_STAGE)
            await conn.commit()
            lane.conn = conn
            if not self.metrics.db_up:
                log.warning(
                    "database is back: replaying %d queued rows and %d spool files",
                    self._pending_rows,
                    self._spooled,
                )
            self.metrics.db_up = True
        return lane.conn

    async def _on_db_failure(self, lane: _Lane, exc: BaseException) -> None:
        self.metrics.db_failures += 1
        self.metrics.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if self.metrics.db_up:
            log.error(
                "database unavailable (%s); buffering in memory, then spooling to %s",
                self.metrics.last_error,
                self.spool_dir,
            )
        self.metrics.db_up = False
        if lane.conn is not None:
            with contextlib.suppress(Exception):
                await lane.conn.close()
        lane.conn = None
        if not self._closing:
            await asyncio.sleep(self.retry_interval)

    async def _replay(self, lane: _Lane) -> None:
        # Oldest first: spool files predate anything still in memory.
        for path in self._spool_files():
            with path.open("rb") as fh:
                batch: Batch = _normalized(pickle.load(fh))
            await self._write(lane, [batch])
            path.unlink()
            self._spooled -= 1
            self.metrics.spool_files = self._spooled
            self.metrics.replayed_batches += 1

    async def _drain(self, lane: _Lane) -> None:
        pending = lane.pending
        while pending:
            # everything cut so far in one transaction (one commit), in order
            group: list[Batch] = []
            rows = 0
            for batch in pending:
                if group and rows + batch.count > 4 * self.max_batch:
                    break
                group.append(batch)
                rows += batch.count
            await self._write(lane, group)
            for batch in group:
                pending.popleft()
                self._pending_rows -= batch.count
            self._track(group)
        self.metrics.queued_rows = self._pending_rows

    def _track(self, batches: list[Batch]) -> None:
        """Enqueue -> commit times of tick rows (``track_latency``)."""
        if any(b.enqueued for b in batches):
            now = time.perf_counter_ns()
            lat = self._latencies
            for batch in batches:
                for count, t in batch.enqueued:
                    lat.append((t, count, now - t))
                batch.enqueued = []

    async def _write(self, lane: _Lane, batches: list[Batch]) -> None:
        conn = await self._connection(lane)
        try:
            # BEGIN and the claim in one round trip (pipeline); COPY cannot be pipelined
            async with conn.pipeline():
                cur = await conn.execute(_CLAIM, (
                    [b.batch_id for b in batches], [b.kind for b in batches],
                    [b.count for b in batches]))  # fmt: skip
            claimed = {row[0] for row in await cur.fetchall()}
            todo = [b for b in batches if b.batch_id in claimed]
            self.metrics.batches_skipped_duplicate += len(batches) - len(todo)
            ticks = [chunk for b in todo if b.kind == "ticks" for chunk in b.data]
            depth = [chunk for b in todo if b.kind == "depth" for chunk in b.data]
            bars = [row for b in todo if b.kind == "bars" for row in b.rows]
            async with conn.cursor() as cur:
                if ticks:
                    async with cur.copy(_COPY_TICKS) as copy:
                        await copy.write(b"".join([pgcopy.HEADER, *ticks, pgcopy.TRAILER]))
                if depth:
                    async with cur.copy(_COPY_DEPTH) as copy:
                        await copy.write(b"".join([pgcopy.HEADER, *depth, pgcopy.TRAILER]))
                    await cur.execute(_DEPTH_INSERT)
                if bars:
                    async with cur.copy(_COPY_BARS) as copy:
                        await copy.write(
                            b"".join([pgcopy.HEADER, pgcopy.encode_bar_rows(bars), pgcopy.TRAILER])
                        )
                    await cur.execute(_BAR_MERGE)
            await conn.commit()
        except BaseException:
            if not conn.closed and not conn.broken:
                with contextlib.suppress(psycopg.Error, OSError):
                    await conn.rollback()
            raise
        self.metrics.transactions += 1
        for batch in todo:
            self.metrics.batches_written += 1
            self.metrics.rows_written[batch.kind] += batch.count

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
        batch.enqueued = []
        with tmp.open("wb") as fh:
            pickle.dump(batch, fh, protocol=pickle.HIGHEST_PROTOCOL)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # a crash leaves either no file or a whole one
        self.metrics.spooled_batches += 1
        self._spooled += 1
        self.metrics.spool_files = self._spooled
