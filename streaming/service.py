"""The streaming service: one process running collectors until told to stop.

Wiring only: a storage writer and a live publisher shared by all collectors, and the
collector manager (market_bridge.collect) that owns, reconciles and reports them. ``run()``
runs until cancelled; cancellation (SIGTERM/SIGINT via ``serve``, or a Prefect flow-run
cancel) stops the collectors (their finished bars are stored, their status says
"shutdown"), flushes the live messages and then the writer (to the database, or to the
disk spool if it is down) before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from market_bridge.collect.collector import CollectorOptions, Credentials
from market_bridge.collect.manager import CollectorManager, ManagerOptions
from market_bridge.collect.publisher import LivePublisher
from market_bridge.collect.runtime import tune_gc
from market_bridge.config.collectors import CollectorsConfig, load_collectors_config
from market_bridge.db import database_url
from market_bridge.kite import credentials as kite_credentials
from market_bridge.settings import Settings, load_settings
from market_bridge.storage.writer import StorageWriter

log = logging.getLogger(__name__)

# The simulator's defaults (market_bridge.kite.simulator.config); repeated here so that the
# service does not import the simulator. Used only when KITE_WS_ROOT points at it.
SIMULATOR_CREDENTIALS = Credentials("mb_sim_key", "mb_sim_token")


_INSTANCE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class SpoolInUse(RuntimeError):
    pass


@dataclass(frozen=True)
class StreamingConfig:
    dsn: str = field(repr=False)
    spool_dir: Path
    ws_root: str
    collectors: CollectorsConfig | None = None
    default_credentials: Credentials | None = None
    publish_interval: float = 0.05
    manager: ManagerOptions | None = None  # ws_root/default_credentials above win

    @classmethod
    def from_environment(
        cls,
        config_path: str | Path | None = None,
        instance: str = "default",
        settings: Settings | None = None,
        dsn: str | None = None,
        replay_feed: bool = False,
    ) -> StreamingConfig:
        """Settings from the environment (DATABASE_URL or the embedded DB, KITE_WS_ROOT,
        MB_HOME) and collectors.yaml. Each concurrently running process needs its own
        ``instance`` name: it names the disk spool. ``replay_feed``: the feed replays a
        past day (simulator ``--replay``), so old exchange timestamps are expected."""
        if not _INSTANCE.match(instance):
            raise ValueError(f"instance name {instance!r}: use 1-64 letters, digits, '_', '.', '-'")
        settings = settings or load_settings()
        simulator = bool(os.environ.get("KITE_WS_ROOT"))
        # (the env var first: kite_credentials.ws_root() imports kiteconnect, which is slow)
        ws_root = os.environ.get("KITE_WS_ROOT") or kite_credentials.ws_root()
        collector = CollectorOptions(max_tick_age=None) if replay_feed else CollectorOptions()
        return cls(
            dsn=dsn or database_url(settings),
            spool_dir=settings.home / "spool" / f"streaming-{instance}",
            ws_root=ws_root,
            collectors=load_collectors_config(config_path),
            default_credentials=SIMULATOR_CREDENTIALS if simulator else None,
            manager=ManagerOptions(ws_root=ws_root, collector=collector),
        )


class StreamingService:
    def __init__(self, config: StreamingConfig) -> None:
        self.config = config
        self.writer = StorageWriter(config.dsn, config.spool_dir)
        self.publisher = LivePublisher(config.dsn, interval=config.publish_interval)
        base = config.manager or ManagerOptions(ws_root=config.ws_root)
        options = ManagerOptions(
            ws_root=config.ws_root,
            default_credentials=config.default_credentials,
            reconcile_interval=base.reconcile_interval,
            heartbeat_interval=base.heartbeat_interval,
            index_refresh=base.index_refresh,
            collector=base.collector,
        )
        self.manager = CollectorManager(
            config.dsn, self.writer, self.publisher, options, config=config.collectors,
            process_metrics=self.process_metrics,
        )  # fmt: skip
        self.stopped = asyncio.Event()

    @property
    def process_id(self) -> str:
        return self.manager.process.process_id

    def process_metrics(self) -> dict[str, Any]:
        writer = asdict(self.writer.metrics)
        writer["backlog"] = self.writer.backlog
        return {"writer": writer, "publisher": self.publisher.metrics.as_dict()}

    async def run(self) -> None:
        """Collect until cancelled; then stop and flush everything, and return."""
        lock = _lock_spool(self.config.spool_dir)
        try:
            await self.writer.start()
            await self.publisher.start()
            tune_gc()
            log.info("streaming %s: feed %s, spool %s", self.process_id, self.config.ws_root,
                     self.config.spool_dir)  # fmt: skip
            try:
                await self.manager.run()
            finally:
                # shielded: a second cancel must not cut the flush short
                await asyncio.shield(self._shutdown())
        finally:
            lock.close()
            self.stopped.set()

    async def _shutdown(self) -> None:
        log.info("streaming %s: stopping collectors and flushing", self.process_id)
        try:
            await self.manager.close()
        finally:
            await self.publisher.close()
            await self.writer.close()
        m = self.writer.metrics
        log.info("streaming %s: stopped (rows written %s, spool files %d)", self.process_id,
                 m.rows_written, m.spool_files)  # fmt: skip


def _lock_spool(spool_dir: Path) -> IO[str]:
    """One process per spool directory: two would replay each other's files."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    fh = (spool_dir / ".lock").open("w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise SpoolInUse(
            f"another streaming process uses {spool_dir}; give each process its own "
            "instance name (market-bridge stream --instance NAME)"
        ) from None
    return fh


async def serve(service: StreamingService) -> None:
    """Run ``service`` until SIGTERM or SIGINT, then let it flush and return."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(service.run())
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
