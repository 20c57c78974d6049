"""The gap-fill flow: find missing bars (trading minutes only), fetch exactly those from
Kite, check again, and close the feed gaps that were repaired. Nightly after the close."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any

import psycopg
from prefect import flow
from pydantic import Field

from flows import artifacts
from flows.common import (
    TimeframeName,
    calendar,
    closed_reason,
    db_url,
    kite_clients,
    now,
    run_logger,
)
from market_bridge.backfill import (
    GapFillResult,
    Progress,
    default_targets,
    fill_gaps,
    load_index,
    select_symbols,
    user_range,
)
from market_bridge.market.timeframes import parse_timeframe


class GapsRemain(RuntimeError):
    """Kite had no data for some missing bars (or requests failed); see the artifacts."""


def gap_rows(result: GapFillResult) -> list[dict[str, Any]]:
    after = {s.symbol: s for s in (result.after.symbols if result.after else ())}
    rows = []
    for s in result.before.symbols:
        a = after.get(s.symbol)
        rows.append({
            "symbol": s.symbol, "expected": s.expected, "present_before": s.present,
            "gaps_before": len(s.gaps), "missing_before": s.missing,
            "gaps_after": len(a.gaps) if a else None, "missing_after": a.missing if a else None,
            "first_gap": f"{s.gaps[0].start:%Y-%m-%d %H:%M}-{s.gaps[0].end:%H:%M}" if s.gaps else "",
        })
    return rows


def remaining_markdown(result: GapFillResult) -> str:
    lines = [f"# Gap fill {result.before.timeframe.name}", "", result.summary(), ""]
    left = result.after or result.before
    if left.gap_count:
        lines += ["| symbol | from | to (excl.) | bars |", "|---|---|---|---|"]
        for s in left.symbols:
            lines += [f"| {s.symbol} | {g.start:%Y-%m-%d %H:%M} | {g.end:%Y-%m-%d %H:%M} | "
                      f"{g.missing_bars} |" for g in s.gaps[:50]]
    return "\n".join(lines)


@flow(name="gap-fill", description="Find and fill missing bars, counting NSE trading minutes.")
def gap_fill_flow(
    watchlist: str | None = None,
    symbols: list[str] | None = None,
    from_date: date | None = None,
    to_date: date | None = None,
    timeframe: TimeframeName = "1m",
    concurrent: Annotated[int, Field(ge=1, le=64)] = 3,
    dry_run: bool = False,
    lookback_days: Annotated[int, Field(ge=0, le=60)] = 7,
) -> dict[str, Any]:
    """Find missing bars (NSE trading minutes only), fetch exactly those, check again.

    Args:
        watchlist: A watchlist such as NIFTY50 (default: see symbols).
        symbols: Symbols to check (default: members of running collectors, symbols with
            bars in the range, and symbols named by open feed gaps).
        from_date: First day, IST (default: today; skipped on weekends and holidays).
        to_date: Last day, inclusive (default: today).
        timeframe: Bar interval to check and fill.
        concurrent: Worker threads for the fill.
        dry_run: Only report the gaps; fetch nothing.
        lookback_days: Without dates, also repair open feed gaps this many days back.
    """
    logger = run_logger()
    cal, current = calendar(), now()
    tf = parse_timeframe(timeframe)
    if from_date is None and to_date is None:
        reason = closed_reason(cal, current.date())
        if reason:
            logger.info("%s; nothing to check (give from_date/to_date to check other days)",
                        reason)
            return {"status": "skipped", "reason": reason}
    start, end = user_range(from_date or to_date or current.date(), to_date, current)
    last_day = (end - timedelta(microseconds=1)).date()
    if not cal.trading_days(start.date(), last_day):
        reason = f"no NSE trading day from {start.date()} to {last_day}"
        logger.info("%s; nothing to check", reason)
        return {"status": "skipped", "reason": reason}
    dsn = db_url()
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        index = load_index(conn)
        if watchlist or symbols:
            chosen = select_symbols(watchlist, symbols)
        else:
            lookback = (start - timedelta(days=lookback_days), end)
            chosen, (start, end) = default_targets(conn, tf, (start, end), lookback)
    if not chosen:
        reason = "no collectors configured, no bars stored and no open feed gaps in the range"
        logger.info("%s; nothing to check", reason)
        return {"status": "skipped", "reason": reason}
    progress = artifacts.ProgressArtifact("gap-fill-progress", f"gap fill {tf.name}")

    def on_progress(p: Progress) -> None:
        progress.update(100.0 * p.done / p.total, force=p.done == p.total)

    result = fill_gaps(dsn, cal, index, chosen, tf, start, end,
                       None if dry_run else kite_clients(), concurrent, dry_run, on_progress)
    summary = result.summary()
    logger.info(summary)
    artifacts.table("gap-fill-summary", gap_rows(result), summary)
    artifacts.markdown("gap-fill-remaining", remaining_markdown(result), summary)
    for name, error in result.before.errors:
        logger.warning("%s: %s", name, error)
    left = result.after or result.before
    if not dry_run and left.gap_count:
        raise GapsRemain(f"{left.gap_count} gaps ({left.missing} bars) remain after the fill: "
                         f"{summary}")
    return {"status": "dry_run" if dry_run else "completed", "gaps_before":
            result.before.gap_count, "missing_before": result.before.missing,
            "gaps_after": left.gap_count, "bars_written": result.backfill.bars_written
            if result.backfill else 0, "feed_gaps_closed": result.feed_gaps_closed}
