"""`market-bridge backfill | gaps | completeness | instruments sync | maintenance`.

The same jobs as the Prefect flows (market_bridge.backfill), run in the foreground with a
progress bar and a summary table. Wire them into the main app with ``register(app)`` and
call ``normalize_single_dash`` on argv first, so the seed's Go-style spellings
(``-watchlist NIFTY50 -from 2024-01-01 -dry-run``) work as well as ``--watchlist``.

Exit codes: 0 done, 1 the work failed (Kite, database, some symbols), 2 bad input.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta

import psycopg
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from market_bridge.backfill import (
    BackfillPlan,
    BackfillResult,
    BackfillStopped,
    GapReport,
    InvalidRange,
    KiteClients,
    KiteNotConfigured,
    NoInstruments,
    SchemaMissing,
    backfill_symbols,
    completeness_report,
    fill_gaps,
    find_symbol_gaps,
    load_index,
    now_ist,
    run_maintenance,
    select_symbols,
    sync_instruments,
    user_range,
)
from market_bridge.backfill import Progress as BackfillProgress
from market_bridge.backfill.ranges import Interval
from market_bridge.kite.errors import KiteError
from market_bridge.market.calendar import CalendarOverrideError, TradingCalendar
from market_bridge.market.timeframes import Timeframe, UnknownTimeframe, parse_timeframe

console = Console()
err = Console(stderr=True)

# The seed's Go `flag` spellings: one dash, long names. Click reads "-from" as "-f rom".
SINGLE_DASH_OPTIONS = frozenset({
    "-watchlist", "-symbols", "-from", "-to", "-dry-run", "-concurrent", "-timeframe",
    "-force", "-fill", "-exchange",
})  # fmt: skip


COMMANDS = ("backfill", "gaps", "completeness", "instruments", "maintenance")


def normalize_single_dash(argv: Sequence[str]) -> list[str]:
    """Rewrite known single-dash long options (``-from X``, ``-from=X``) to ``--from``.

    Only for this module's commands (the first positional argument is one of
    ``COMMANDS``), only the names above, and nothing after a bare ``--``; values are left
    alone, so a symbol or a date is never mistaken for an option.
    """
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        return list(argv)
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            out.extend(argv[i:])
            break
        name, eq, value = arg.partition("=")
        out.append(f"-{name}{eq}{value}" if name in SINGLE_DASH_OPTIONS else arg)
    return out


# ---- shared helpers -------------------------------------------------------------------------


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error[/red]: {escape(message)}")
    return typer.Exit(code)


def _timeframe(value: str) -> Timeframe:
    try:
        return parse_timeframe(value)
    except UnknownTimeframe as exc:
        raise _fail(f"--timeframe: {exc}", 2) from None


def _symbols(watchlist: str | None, symbols: str | None) -> list[str]:
    try:
        return select_symbols(watchlist, symbols)
    except ValueError as exc:  # unknown watchlist, invalid symbol, nothing given
        raise _fail(str(exc), 2) from None


def _range(raw_from: str | None, raw_to: str | None, default_days: int) -> Interval:
    try:
        return user_range(raw_from, raw_to, now_ist(), default_days)
    except InvalidRange as exc:
        raise _fail(str(exc), 2) from None


def _calendar() -> TradingCalendar:
    from market_bridge.market.calendar import default_calendar

    try:
        return default_calendar()
    except CalendarOverrideError as exc:
        raise _fail(str(exc), 2) from None


def _database() -> str:
    """Start the embedded database if it is ours (or use DATABASE_URL) and migrate."""
    from market_bridge.cli.db import start_database
    from market_bridge.settings import load_settings

    return start_database(load_settings(), quiet=True)


def _kite() -> KiteClients:
    try:
        return KiteClients.from_env()
    except KiteNotConfigured as exc:
        raise _fail(str(exc)) from None


@contextmanager
def _job_errors() -> Iterator[None]:
    """Failures of the work itself, as one line saying what to do next."""
    try:
        yield
    except (NoInstruments, SchemaMissing) as exc:
        raise _fail(str(exc)) from None
    except KiteError as exc:
        raise _fail(f"Kite: {exc}") from None
    except psycopg.OperationalError as exc:
        raise _fail(f"database unavailable: {str(exc).strip()}") from None


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TextColumn("requests"), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=err, transient=False)


# ---- backfill -------------------------------------------------------------------------------


def plan_table(plan: BackfillPlan) -> Table:
    table = Table(title=f"plan: {plan.timeframe.name} bars, {plan.start:%Y-%m-%d %H:%M} to "
                        f"{plan.end:%Y-%m-%d %H:%M} IST")
    for col in ("symbol", "requests", "expected bars", "already done", "to fetch", "note"):
        table.add_column(col, justify="left" if col in ("symbol", "note") else "right")
    for s in plan.symbols:
        table.add_row(s.symbol, str(s.requests), str(s.expected_bars), str(s.done_bars),
                      str(s.bars_to_fetch), escape(s.error or ""))
    return table


def plan_line(plan: BackfillPlan) -> str:
    return (f"{len(plan.symbols)} symbols, {plan.requests} requests, {plan.expected_bars} "
            f"expected bars ({plan.bars_to_fetch} to fetch, {plan.done_bars} already done), "
            f"estimated at least {timedelta(seconds=round(plan.estimated_seconds))} at "
            f"{plan.rate_per_s:g} requests/s")


def result_table(result: BackfillResult) -> Table:
    table = Table(title="backfill summary")
    for col in ("symbol", "requests", "retries", "written", "already present", "errors"):
        table.add_column(col, justify="left" if col in ("symbol", "errors") else "right")
    for s in result.stats:
        errors = "; ".join(s.errors)
        table.add_row(s.symbol, str(s.requests), str(s.retries), str(s.bars_written),
                      str(s.bars_unchanged), f"[red]{escape(errors)}[/red]" if errors else "")
    table.add_section()
    table.add_row("total", str(result.requests), str(result.retries), str(result.bars_written),
                  str(result.bars_unchanged), str(result.errors))
    return table


def backfill_cmd(
    watchlist: str | None = typer.Option(
        None, "--watchlist", "-w", help="Watchlist(s), e.g. NIFTY50 or NIFTY50,BANKNIFTY."),
    symbols: str | None = typer.Option(
        None, "--symbols", "-s", help="Symbols, comma-separated: RELIANCE,TCS,BSE:SENSEX."),
    from_: str | None = typer.Option(
        None, "--from", help="First day (IST date) or RFC 3339 time. Default: 30 days before --to."),
    to: str | None = typer.Option(
        None, "--to", help="Last day, inclusive (default: today; only closed bars)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the plan (requests, expected bars, time); write nothing."),
    concurrent: int = typer.Option(
        3, "--concurrent", "-c", min=1, max=64,
        help="Worker threads; the 3 requests/s Kite limit holds whatever the number."),
    timeframe: str = typer.Option("1m", "--timeframe", "-t", help="1m 3m 5m 10m 15m 30m 1h day."),
    force: bool = typer.Option(
        False, "--force", help="Fetch stretches already backfilled again."),
) -> None:
    """Backfill historical bars from Kite: idempotent, resumable, rate-limited."""
    chosen = _symbols(watchlist, symbols)
    tf = _timeframe(timeframe)
    start, end = _range(from_, to, 30)
    cal = _calendar()
    dsn = _database()
    kite = None if dry_run else _kite()
    progress = _progress()
    task: list[TaskID] = []

    def on_plan(plan: BackfillPlan) -> None:
        if dry_run:
            return
        err.print(plan_line(plan))
        if plan.requests:
            progress.start()
            task.append(progress.add_task("backfill", total=plan.requests))

    def on_progress(p: BackfillProgress) -> None:
        progress.update(task[0], completed=p.done,
                        description=f"{p.symbol}: {p.bars_written} bars written")

    try:
        with _job_errors():
            result = backfill_symbols(dsn, cal, chosen, tf, start, end, kite,
                                      concurrent=concurrent, force=force, dry_run=dry_run,
                                      on_plan=on_plan, on_progress=on_progress)
    except BackfillStopped as exc:
        progress.stop()
        console.print(result_table(exc.result))
        raise _fail(f"backfill stopped: {exc}") from None
    finally:
        progress.stop()
    if dry_run:
        console.print(plan_table(result.plan))
        console.print(f"dry run: {plan_line(result.plan)}; nothing fetched or written")
        for note in result.plan.notes:
            console.print(f"note: {note}")
        if result.plan.errors:
            raise typer.Exit(1)
        return
    if result.status != "nothing_to_do":
        console.print(result_table(result))
    console.print(result.summary())
    if result.failed_symbols:
        raise _fail(f"{len(result.failed_symbols)} symbol(s) failed: "
                    f"{', '.join(result.failed_symbols)}; run again to retry them")


# ---- gaps and completeness ------------------------------------------------------------------


def gaps_table(report: GapReport, limit: int = 20) -> Table:
    table = Table(title=f"gaps in {report.timeframe.name} bars, {report.start:%Y-%m-%d %H:%M} to "
                        f"{report.end:%Y-%m-%d %H:%M} IST (trading minutes only)")
    for col in ("symbol", "expected", "present", "missing", "gap from", "to (excl.)", "bars"):
        table.add_column(col, justify="left" if col in ("symbol", "gap from", "to (excl.)")
                         else "right")
    for s in report.symbols:
        head = [s.symbol, str(s.expected), str(s.present), str(s.missing)]
        if not s.gaps:
            table.add_row(*head, "[green]none[/green]", "", "")
        for i, g in enumerate(s.gaps[:limit]):
            table.add_row(*(head if i == 0 else ["", "", "", ""]),
                          f"{g.start:%Y-%m-%d %H:%M}", f"{g.end:%Y-%m-%d %H:%M}",
                          str(g.missing_bars))
        if len(s.gaps) > limit:
            table.add_row("", "", "", "", f"... {len(s.gaps) - limit} more", "", "")
    return table


def gaps_cmd(
    watchlist: str | None = typer.Option(None, "--watchlist", "-w", help="Watchlist(s)."),
    symbols: str | None = typer.Option(None, "--symbols", "-s", help="Symbols, comma-separated."),
    from_: str | None = typer.Option(None, "--from", help="First day (default: today)."),
    to: str | None = typer.Option(None, "--to", help="Last day, inclusive (default: today)."),
    timeframe: str = typer.Option("1m", "--timeframe", "-t"),
    fill: bool = typer.Option(False, "--fill", help="Backfill exactly the missing bars."),
    concurrent: int = typer.Option(3, "--concurrent", "-c", min=1, max=64),
) -> None:
    """List missing bars (weekends and NSE holidays never count); --fill repairs them."""
    chosen = _symbols(watchlist, symbols)
    tf = _timeframe(timeframe)
    start, end = _range(from_, to, 0)
    cal = _calendar()
    dsn = _database()
    with _job_errors():
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            index = load_index(conn)
            report = find_symbol_gaps(conn, cal, index, chosen, tf, start, end, now_ist())
        console.print(gaps_table(report))
        for name, error in report.errors:
            err.print(f"[yellow]{escape(name)}[/yellow]: {escape(error)}")
        console.print(f"{report.gap_count} gaps, {report.missing} missing bars")
        if not fill or not report.gap_count:
            if report.errors:
                raise typer.Exit(1)
            return
        kite = _kite()
        progress = _progress()
        task = progress.add_task("gap fill", total=None)
        progress.start()

        def on_progress(p: BackfillProgress) -> None:
            progress.update(task, total=p.total, completed=p.done,
                            description=f"{p.symbol}: {p.bars_written} bars written")

        try:
            result = fill_gaps(dsn, cal, index, chosen, tf, start, end, kite, concurrent,
                               on_progress=on_progress)
        except BackfillStopped as exc:
            raise _fail(f"gap fill stopped: {exc}") from None
        finally:
            progress.stop()
    if result.after is not None and result.after.gap_count:
        console.print(gaps_table(result.after))
    console.print(result.summary())
    if result.after is not None and result.after.gap_count:
        raise _fail("some bars are still missing (Kite has no data for them, or requests "
                    "failed); see above")


_QUALITY_STYLE = {"excellent": "green", "good": "green", "fair": "yellow", "poor": "red",
                  "no_session": "dim"}


def completeness_cmd(
    watchlist: str | None = typer.Option(None, "--watchlist", "-w", help="Watchlist(s)."),
    symbols: str | None = typer.Option(None, "--symbols", "-s", help="Symbols, comma-separated."),
    from_: str | None = typer.Option(None, "--from", help="First day (default: today)."),
    to: str | None = typer.Option(None, "--to", help="Last day, inclusive (default: today)."),
    timeframe: str = typer.Option(
        "1m", "--timeframe", "-t", help="One or more, comma-separated: 1m,5m."),
) -> None:
    """Expected vs stored bars per symbol, timeframe and trading day, with quality labels."""
    chosen = _symbols(watchlist, symbols)
    tfs = [_timeframe(t) for t in timeframe.split(",") if t.strip()] or [_timeframe("1m")]
    start, end = _range(from_, to, 0)
    cal = _calendar()
    dsn = _database()
    last_day = (end - timedelta(microseconds=1)).date()
    with _job_errors(), psycopg.connect(dsn, connect_timeout=10) as conn:
        report = completeness_report(conn, cal, load_index(conn), chosen, tfs, start.date(),
                                     last_day, now_ist())
    if not report.days:
        console.print(f"no NSE trading session from {start.date()} to {last_day} "
                      "(weekends and holidays): nothing to report")
        return
    table = Table(title="completeness (trading minutes only)")
    for col in ("symbol", "timeframe", "day", "expected", "actual", "%", "quality"):
        table.add_column(col, justify="right" if col in ("expected", "actual", "%") else "left")
    for r in report.rows:
        style = _QUALITY_STYLE.get(r.quality, "")
        table.add_row(r.symbol, r.timeframe, r.day.isoformat(), str(r.expected), str(r.actual),
                      f"{r.percent:.1f}", f"[{style}]{r.quality}[/{style}]")
    console.print(table)
    for name, error in report.errors:
        err.print(f"[yellow]{escape(name)}[/yellow]: {escape(error)}")
    if report.errors:
        raise typer.Exit(1)


# ---- instruments and maintenance ------------------------------------------------------------

instruments_app = typer.Typer(help="Kite's instrument list in md.instruments.",
                              no_args_is_help=True)


@instruments_app.command("sync")
def instruments_sync_cmd(
    exchange: str | None = typer.Option(
        None, "--exchange", "-e", help="One exchange (NSE, BSE, NFO, ...); default: all."),
) -> None:
    """Download Kite's instruments dump and upsert it (run daily before the open)."""
    dsn = _database()
    kite = _kite()
    with _job_errors(), console.status("downloading Kite's instruments dump"):
        result = sync_instruments(dsn, kite(), exchange.upper() if exchange else None)
    console.print(f"instruments: {result.total} synced ({result.before} rows before)")
    table = Table()
    table.add_column("exchange")
    table.add_column("instruments", justify="right")
    for exch, count in sorted(result.by_exchange.items()):
        table.add_row(exch, str(count))
    console.print(table)


def maintenance_cmd() -> None:
    """Apply retention (drop_chunks on the Apache edition) and show table sizes."""
    dsn = _database()
    with _job_errors():
        report = run_maintenance(dsn)
    caps = report.capabilities
    retention = {r.table: r for r in report.retention}
    table = Table(title=f"TimescaleDB {caps.version} ({caps.license} license)")
    for col in ("table", "size", "chunks", "compression", "retention", "dropped chunks"):
        table.add_column(col)
    for s in report.sizes:
        r = retention.get(s.table)
        table.add_row(s.table, f"{s.total_bytes / 1e6:.1f} MB", str(s.chunks), s.compression,
                      f"{r.retain_for.days} days via {r.via}" if r else "",
                      str(r.dropped_chunks) if r else "")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add these commands to the main ``market-bridge`` app."""
    app.command("backfill")(backfill_cmd)
    app.command("gaps")(gaps_cmd)
    app.command("completeness")(completeness_cmd)
    app.command("maintenance")(maintenance_cmd)
    app.add_typer(instruments_app, name="instruments")
