"""The streaming deployment's flow: the same service as ``market-bridge stream``.

The flow runs the collectors until its run is cancelled (Prefect UI/API), then stops them
and flushes everything before the run ends **Cancelled**. How cancellation arrives: the
serving process (``market-bridge flows serve``) runs each flow run in a subprocess and, on
cancel, sends it SIGTERM (SIGKILL 30 s later if it is still alive). Prefect's own SIGTERM
handler raises an exception wherever the main thread happens to be, which could cut the
flush short; so for the duration of the run this flow replaces it with an event-loop
handler that cancels the service task only: the service's shielded shutdown stops the
collectors (final bars written, status ``shutdown``, locks released), flushes live
messages and the storage writer, and the flow then returns a ``Cancelled`` state with a
summary. SIGINT (Ctrl-C when the flow is run in a terminal) does the same.

The run's page shows a log line per collector taken or changing state, a final summary
line and a ``streaming-summary`` table artifact (per collector: state, ticks, bars).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import psycopg
from prefect import flow, get_run_logger
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.exceptions import MissingContextError
from prefect.states import Cancelled, State

from streaming.service import StreamingConfig, StreamingService

DEPLOYMENT = "streaming"
SUMMARY_ARTIFACT = "streaming-summary"
REPORT_INTERVAL = 1.0  # seconds between looks at the collectors' states

Logger = logging.Logger | logging.LoggerAdapter[Any]


def run_logger() -> Logger:
    """The flow run's logger (shown in the UI), or a plain one outside a flow run."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@flow(name="streaming", log_prints=False)
async def streaming_flow(
    config_path: str | None = None, instance: str = "prefect", replay_feed: bool = False
) -> State | dict[str, Any]:
    """Run the collectors until this flow run is cancelled, then flush and report.

    ``config_path``: collectors.yaml (default ``$MB_COLLECTORS_CONFIG`` or
    ``~/.market-bridge/collectors.yaml``). ``instance``: names the disk spool; two runs at
    once on one machine need different names. ``replay_feed``: the feed replays a past day
    (the simulator's ``--replay``), so old exchange timestamps are expected."""
    logger = run_logger()
    config = StreamingConfig.from_environment(config_path, instance, replay_feed=replay_feed)
    service = StreamingService(config)
    logger.info("streaming process %s starting (feed %s, spool %s)", service.process_id,
                config.ws_root, config.spool_dir)  # fmt: skip
    task = asyncio.create_task(service.run(), name="streaming-service")
    reporter = asyncio.create_task(_report(service, logger), name="streaming-report")
    with _cancel_on_signals(task) as received:
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if not received:  # the service cannot end by itself: only a bug gets here
                task.result()
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            summary = await _summary(service, logger)
    why = f"stopped by {received[0]}" if received else "stopped"
    message = (f"streaming {why}: {summary['ticks_written']} ticks, {summary['bars_written']} "
               f"bars, {summary['depth_written']} order books written; writer backlog "
               f"{summary['backlog']}, spool files {summary['spool_files']}")  # fmt: skip
    logger.info(message)
    if received:
        return Cancelled(message=message, data=summary)
    return summary


def build_deployment() -> RunnerDeployment:
    """The long-running deployment (no schedule: started with the UI's Run button or
    ``prefect deployment run streaming/streaming``, stopped by cancelling its run).
    ``market-bridge flows serve`` serves it with the batch deployments."""
    deployment = streaming_flow.to_deployment(
        name=DEPLOYMENT,
        entrypoint_type=EntrypointType.MODULE_PATH,  # importable from any directory
        tags=["market-bridge", "streaming"],
        description="Long-running: the collectors until the run is cancelled; cancelling "
                    "flushes every tick and bar and ends the run Cancelled.",
    )  # fmt: skip
    return cast(RunnerDeployment, deployment)


@contextlib.contextmanager
def _cancel_on_signals(task: asyncio.Task[None]) -> Iterator[list[str]]:
    """SIGTERM/SIGINT cancel ``task`` (once) instead of interrupting whatever runs; the
    previous handlers (Prefect's) are put back afterwards. Yields the signals received.
    Outside the main thread (a flow called from a worker thread) nothing is installed."""
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def on_signal(sig: signal.Signals) -> None:
        if not received:  # a second signal must not cut the flush short
            received.append(sig.name)
            task.cancel()

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield received
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
            handler = previous[sig]
            if handler is not None:
                signal.signal(sig, cast(Callable[[int, Any], Any] | int, handler))


async def _report(service: StreamingService, logger: Logger) -> None:
    """A log line (on the run's page) per collector taken, changing state or released."""
    states: dict[str, str] = {}
    while True:
        await asyncio.sleep(REPORT_INTERVAL)
        owned = dict(service.manager.owned)
        for name, collector in owned.items():
            m = collector.metrics
            if states.get(name) != m.state:
                verb = "started" if name not in states else "now"
                logger.info("collector %s: %s %s (%d instruments subscribed, %d ticks so far)",
                            name, verb, m.state, m.subscribed_tokens, m.ticks_received)  # fmt: skip
                states[name] = m.state
        for name in set(states) - set(owned):
            logger.info("collector %s: released by this process", name)
            del states[name]


async def _summary(service: StreamingService, logger: Logger) -> dict[str, Any]:
    """What this run wrote, from the writer's counters and the final status rows the
    service wrote at shutdown; also a table artifact when running as a flow run."""
    m = service.writer.metrics
    collectors: list[dict[str, Any]] = []
    try:
        async with await psycopg.AsyncConnection.connect(
            service.config.dsn, autocommit=True, connect_timeout=5
        ) as conn:
            cur = await conn.execute(
                "SELECT name, state, ticks_received, bars_created, errors, reconnects "
                "FROM md.collector_status WHERE owner = %s ORDER BY name",
                (service.process_id,),
            )
            keys = ("collector", "state", "ticks", "final_bars", "errors", "reconnects")
            collectors = [dict(zip(keys, row, strict=True)) for row in await cur.fetchall()]
    except psycopg.Error as exc:
        logger.warning("could not read the collectors' final status: %s", exc)
    summary: dict[str, Any] = {
        "process": service.process_id,
        "ticks_written": m.rows_written["ticks"],
        "bars_written": m.rows_written["bars"],
        "depth_written": m.rows_written["depth"],
        "backlog": service.writer.backlog,
        "spool_files": m.spool_files,
        "collectors": collectors,
    }
    await _artifact(summary, logger)
    return summary


async def _artifact(summary: dict[str, Any], logger: Logger) -> None:
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return
    from prefect.artifacts import acreate_table_artifact

    rows = summary["collectors"] or [{"collector": "(none)"}]
    try:
        await acreate_table_artifact(
            rows, key=SUMMARY_ARTIFACT,
            description=f"Streaming process {summary['process']}: "
                        f"{summary['ticks_written']} ticks, {summary['bars_written']} bars "
                        f"written; spool files left {summary['spool_files']}.",
        )  # fmt: skip
    except Exception as exc:  # the API being unreachable must not hide the summary
        logger.warning("could not create the %s artifact: %s", SUMMARY_ARTIFACT, exc)
