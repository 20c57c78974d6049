"""Every batch deployment, served from one process: ``python -m flows.deployments``.

Schedules are in IST (Asia/Kolkata), weekdays only where the market matters; flows that
find a holiday exit early saying so. Backfill has no schedule: it is run from the UI's
"Run" button (custom parameters) or the CLI. The streaming service's long-running
deployment is built by its own module and passed in ``extra`` (one serve process, one
place that lists what runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from prefect import serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron, Schedule

from flows.backfill import backfill_flow
from flows.completeness import completeness_flow
from flows.gap_fill import gap_fill_flow
from flows.housekeeping import instruments_sync_flow, maintenance_flow

TIMEZONE = "Asia/Kolkata"
SCHEDULES = {
    "instruments-sync": "30 8 * * 1-5",  # before the 09:15 open: today's listings
    "gap-fill": "30 16 * * 1-5",  # after the 15:30 close and Kite's settling
    "completeness": "0 17 * * 1-5",  # after the gap fill has had its half hour
    "maintenance": "0 2 * * 6",  # Saturday night: no session, no streaming load
}
TAGS = ["market-bridge", "batch"]


def build_deployments() -> list[RunnerDeployment]:
    # Module entrypoints ("flows.backfill.backfill_flow"), not file paths: the runner
    # imports them in a fresh process, whatever directory the server was started from.
    module = EntrypointType.MODULE_PATH

    def cron(name: str) -> Schedule:
        return Cron(SCHEDULES[name], timezone=TIMEZONE)

    deployments = [
        backfill_flow.to_deployment(
            name="backfill", entrypoint_type=module, tags=TAGS,
            description="Manual: historical candles for a watchlist or symbols (UI: Run > "
                        "Custom run)."),
        gap_fill_flow.to_deployment(
            name="gap-fill", schedule=cron("gap-fill"), entrypoint_type=module, tags=TAGS,
            description="Nightly: fill today's missing bars and open feed gaps."),
        completeness_flow.to_deployment(
            name="completeness", schedule=cron("completeness"), entrypoint_type=module,
            tags=TAGS, description="Nightly: completeness per symbol and day, after gap-fill."),
        instruments_sync_flow.to_deployment(
            name="instruments-sync", schedule=cron("instruments-sync"),
            entrypoint_type=module, tags=TAGS,
            description="Daily before the open: Kite's instruments dump."),
        maintenance_flow.to_deployment(
            name="maintenance", schedule=cron("maintenance"), entrypoint_type=module,
            tags=TAGS, description="Weekly: retention and table sizes."),
    ]
    # to_deployment is sync-compatible: called from sync code it returns the deployment.
    return [cast(RunnerDeployment, d) for d in deployments]


def serve_deployments(
    extra: Sequence[RunnerDeployment] = (), limit: int | None = None
) -> None:
    """Serve the batch deployments plus ``extra`` (e.g. the streaming deployment) until
    interrupted. Schedules stay active when this process stops (``pause_on_shutdown=False``),
    so runs due meanwhile start when it is back."""
    serve(*build_deployments(), *extra, pause_on_shutdown=False, limit=limit)


if __name__ == "__main__":
    serve_deployments()
