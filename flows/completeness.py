"""The completeness flow: per symbol, timeframe and trading day, expected vs stored bars
with the API's quality labels. Runs after the nightly gap fill."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import psycopg
from prefect import flow

from flows import artifacts
from flows.common import TimeframeName, calendar, closed_reason, db_url, now, run_logger
from market_bridge.backfill import (
    CompletenessReport,
    completeness_report,
    default_targets,
    load_index,
    select_symbols,
    user_range,
)
from market_bridge.market.timeframes import parse_timeframe


def report_markdown(report: CompletenessReport) -> str:
    rows = report.rows
    expected = sum(r.expected for r in rows)
    actual = sum(min(r.actual, r.expected) for r in rows)
    overall = 100.0 * actual / expected if expected else 100.0
    days = f"{report.days[0]}..{report.days[-1]}" if len(report.days) > 1 else str(report.days[0])
    lines = [f"# Completeness {days}", "",
             f"{len(rows)} symbol-days, {actual} of {expected} expected bars ({overall:.1f}%).",
             "", "Worst symbol-days:", "", "| symbol | timeframe | day | expected | actual | % "
             "| quality |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.symbol} | {r.timeframe} | {r.day} | {r.expected} | {r.actual} | "
              f"{r.percent} | {r.quality} |" for r in report.worst(10)]
    if report.errors:
        lines += ["", "Not checked: " + "; ".join(f"{s}: {e}" for s, e in report.errors)]
    return "\n".join(lines)


@flow(name="completeness", description="Expected vs stored bars per symbol and trading day.")
def completeness_flow(
    watchlist: str | None = None,
    symbols: list[str] | None = None,
    from_date: date | None = None,
    to_date: date | None = None,
    timeframes: list[TimeframeName] | None = None,
) -> dict[str, Any]:
    """Expected vs stored bars per symbol, timeframe and trading day, with quality labels.

    Args:
        watchlist: A watchlist such as NIFTY50 (default: see symbols).
        symbols: Symbols to report (default: members of running collectors and every
            symbol with bars in the range).
        from_date: First day, IST (default: today; skipped on weekends and holidays).
        to_date: Last day, inclusive (default: today).
        timeframes: Bar intervals to report (default: 1m).
    """
    logger = run_logger()
    cal, current = calendar(), now()
    tfs = [parse_timeframe(t) for t in (timeframes or ["1m"])]
    if from_date is None and to_date is None:
        reason = closed_reason(cal, current.date())
        if reason:
            logger.info("%s; nothing to report (give from_date/to_date for other days)", reason)
            return {"status": "skipped", "reason": reason}
    start, end = user_range(from_date or to_date or current.date(), to_date, current)
    last_day = (end - timedelta(microseconds=1)).date()
    if not cal.trading_days(start.date(), last_day):
        reason = f"no NSE trading day from {start.date()} to {last_day}"
        logger.info("%s; nothing to report", reason)
        return {"status": "skipped", "reason": reason}
    with psycopg.connect(db_url(), connect_timeout=10) as conn:
        index = load_index(conn)
        if watchlist or symbols:
            chosen = select_symbols(watchlist, symbols)
        else:
            chosen, _ = default_targets(conn, tfs[0], (start, end), (start, end))
        report = completeness_report(conn, cal, index, chosen, tfs, start.date(), last_day,
                                     current)
    if not report.days:
        reason = f"no NSE trading session has started from {start.date()} to {last_day}"
        logger.info("%s; nothing to report", reason)
        return {"status": "skipped", "reason": reason}
    if not chosen:
        logger.info("no collectors configured and no bars stored: nothing to report")
        return {"status": "skipped", "reason": "no symbols"}
    text = report_markdown(report)
    logger.info(text.splitlines()[2])
    artifacts.table("completeness", [r.as_row() for r in report.rows],
                    f"completeness {report.days[0]}..{report.days[-1]}")
    artifacts.markdown("completeness-summary", text, "worst symbol-days")
    return {"status": "completed", "days": [d.isoformat() for d in report.days],
            "rows": len(report.rows), "below_good": sum(r.percent < 95.0 for r in report.rows)}
