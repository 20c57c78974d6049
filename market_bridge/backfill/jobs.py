"""Entry points the CLI and the flows share: plan, then run, a backfill of symbols."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import psycopg

from market_bridge.backfill import store
from market_bridge.backfill.engine import (
    BackfillResult,
    Clock,
    KiteFactory,
    Progress,
    SymbolStats,
    now_ist,
    run_plan,
)
from market_bridge.backfill.housekeeping import sync_instruments
from market_bridge.backfill.plan import BackfillPlan, plan_backfill, resolve_symbols
from market_bridge.instruments import InstrumentIndex
from market_bridge.market.calendar import TradingCalendar
from market_bridge.market.timeframes import Timeframe


class NoInstruments(RuntimeError):
    def __init__(self) -> None:
        super().__init__("md.instruments is empty: run `market-bridge instruments sync` "
                         "(or the instruments-sync flow) first")


def load_index(conn: psycopg.Connection) -> InstrumentIndex:
    index = InstrumentIndex.load(conn)
    if len(index) == 0:
        raise NoInstruments()
    return index


def ensure_instruments(dsn: str, kite_factory: KiteFactory) -> int:
    """Sync instruments when the table is empty (a fresh install); returns rows added."""
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        row = conn.execute("SELECT EXISTS (SELECT 1 FROM md.instruments)").fetchone()
    if row and row[0]:
        return 0
    return sync_instruments(dsn, kite_factory()).total


def prepare_backfill(
    dsn: str,
    calendar: TradingCalendar,
    symbols: Sequence[str],
    timeframe: Timeframe,
    start: datetime,
    end: datetime,
    force: bool = False,
    now: datetime | None = None,
) -> BackfillPlan:
    """The plan for ``[start, end)``, skipping stretches already done unless ``force``.
    Reads the database, writes nothing."""
    now = now or now_ist()
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        store.require_schema(conn)
        index = load_index(conn)
        known = [inst for _, inst, _ in resolve_symbols(symbols, index) if inst is not None]
        done = {} if force else store.done_stretches(conn, known, timeframe, (start, end))
    return plan_backfill(symbols, index, timeframe, start, end, calendar, now, done, force)


def dry_run_result(plan: BackfillPlan) -> BackfillResult:
    """What a dry run reports: the plan, with nothing fetched or written."""
    stats = [SymbolStats(s.symbol, s.requests) for s in plan.symbols]
    for st, sp in zip(stats, plan.symbols, strict=True):
        if sp.error:
            st.errors.append(sp.error)
    return BackfillResult(plan, stats, status="dry_run")


def backfill_symbols(
    dsn: str,
    calendar: TradingCalendar,
    symbols: Sequence[str],
    timeframe: Timeframe,
    start: datetime,
    end: datetime,
    kite_factory: KiteFactory | None,
    concurrent: int = 3,
    force: bool = False,
    dry_run: bool = False,
    on_plan: Callable[[BackfillPlan], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    clock: Clock = now_ist,
) -> BackfillResult:
    """Backfill ``symbols`` over ``[start, end)``: idempotent and resumable (see
    docs/flows.md). A dry run plans and returns without fetching or writing anything.
    Raises ``BackfillStopped`` on a token error or a lost database."""
    if not dry_run:
        if kite_factory is None:
            raise ValueError("backfill_symbols needs a Kite client factory unless dry_run")
        ensure_instruments(dsn, kite_factory)
    plan = prepare_backfill(dsn, calendar, symbols, timeframe, start, end, force, clock())
    if on_plan is not None:
        on_plan(plan)
    if dry_run:
        return dry_run_result(plan)
    assert kite_factory is not None
    return run_plan(plan, dsn, kite_factory, calendar, concurrent, on_progress, clock)
