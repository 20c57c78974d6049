"""The backfill flow: historical candles from Kite into md.intraday_bars.

Thin over ``market_bridge.backfill``: idempotent (identical bars are not rewritten),
resumable (stretches already done are skipped unless ``force``), 3 requests/s whatever
``concurrent`` is. Shows a progress bar and a per-symbol table in the flow run's page.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from prefect import flow
from pydantic import Field

from flows import artifacts
from flows.common import TimeframeName, calendar, db_url, kite_clients, now, run_logger
from market_bridge.backfill import (
    BackfillPlan,
    BackfillResult,
    BackfillStopped,
    Progress,
    backfill_symbols,
    select_symbols,
    user_range,
)
from market_bridge.market.timeframes import parse_timeframe


class BackfillErrors(RuntimeError):
    """Some symbols failed; the others were backfilled (see the run's table artifact)."""


def result_rows(result: BackfillResult) -> list[dict[str, Any]]:
    return [
        {"symbol": s.symbol, "requests": s.requests, "retries": s.retries,
         "bars_written": s.bars_written, "already_present": s.bars_unchanged,
         "skipped_requests": s.requests_skipped, "errors": "; ".join(s.errors)}
        for s in result.stats
    ]


def plan_text(plan: BackfillPlan) -> str:
    return (f"{len(plan.symbols)} symbols, {plan.timeframe.name} bars from {plan.start:%Y-%m-%d %H:%M} "
            f"to {plan.end:%Y-%m-%d %H:%M} IST: {plan.requests} requests, "
            f"{plan.bars_to_fetch} bars expected to fetch ({plan.done_bars} already done), "
            f"about {plan.estimated_seconds:.0f}s at {plan.rate_per_s:g} req/s")


@flow(name="backfill", description="Historical candles from Kite for a watchlist or symbols.")
def backfill_flow(
    watchlist: str | None = None,
    symbols: list[str] | None = None,
    from_date: date | None = None,
    to_date: date | None = None,
    timeframe: TimeframeName = "1m",
    concurrent: Annotated[int, Field(ge=1, le=64)] = 3,
    dry_run: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Backfill historical bars from Kite: idempotent, resumable, 3 requests/s.

    Args:
        watchlist: A watchlist such as NIFTY50 (comma-separate several).
        symbols: Symbols such as RELIANCE or BSE:SENSEX, added to the watchlist's.
        from_date: First day, IST (default: 30 days before the last day).
        to_date: Last day, inclusive (default: today; only closed bars are written).
        timeframe: Bar interval, fetched from Kite at that interval.
        concurrent: Worker threads (the 3 requests/s limit holds whatever the number).
        dry_run: Only plan: requests, expected bars, estimated time; write nothing.
        force: Fetch stretches already backfilled again.
    """
    logger = run_logger()
    chosen = select_symbols(watchlist, symbols)
    tf = parse_timeframe(timeframe)
    start, end = user_range(from_date, to_date, now())
    progress = artifacts.ProgressArtifact("backfill-progress", f"backfill {tf.name}")

    def on_plan(plan: BackfillPlan) -> None:
        logger.info("plan: %s", plan_text(plan))
        for symbol, error in plan.errors:
            logger.warning("%s: %s", symbol, error)
        progress.update(0.0, force=True)

    def on_progress(p: Progress) -> None:
        progress.update(100.0 * p.done / p.total, force=p.done == p.total)

    try:
        result = backfill_symbols(
            db_url(), calendar(), chosen, tf, start, end,
            None if dry_run else kite_clients(), concurrent=concurrent, force=force,
            dry_run=dry_run, on_plan=on_plan, on_progress=on_progress)
    except BackfillStopped as exc:
        artifacts.table("backfill-summary", result_rows(exc.result), f"stopped: {exc}")
        raise
    progress.update(100.0, force=True)
    summary = plan_text(result.plan) if dry_run else result.summary()
    logger.info(summary)
    artifacts.table("backfill-summary", result_rows(result), summary)
    if result.failed_symbols:
        raise BackfillErrors(
            f"{len(result.failed_symbols)} of {len(result.stats)} symbols failed "
            f"({', '.join(result.failed_symbols[:10])}); the others were written: {summary}")
    return {"status": result.status, "requests": result.requests if not dry_run
            else result.plan.requests, "bars_written": result.bars_written,
            "already_present": result.bars_unchanged, "expected_bars": result.plan.expected_bars}
