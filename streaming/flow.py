"""The streaming deployment's flow: the same service as ``market-bridge stream``.

The flow runs until its run is cancelled (Prefect UI/API); cancellation reaches the
service as task cancellation, and the service's shutdown (stop collectors, flush live
messages and storage) runs before the flow run ends.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from streaming.service import StreamingConfig, StreamingService


@flow(name="streaming", log_prints=False)
async def streaming_flow(config_path: str | None = None, instance: str = "prefect") -> None:
    """Run the collectors until this flow run is cancelled."""
    config = StreamingConfig.from_environment(config_path, instance)
    service = StreamingService(config)
    get_run_logger().info("streaming process %s starting (feed %s)", service.process_id,
                          config.ws_root)  # fmt: skip
    await service.run()
