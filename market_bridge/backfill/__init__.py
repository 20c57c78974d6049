"""Historical data jobs shared by the CLI and the Prefect flows: backfill, gap detection
and fill, completeness reports, instruments sync and storage maintenance.

Pure planning (``plan``, ``ranges``) is separate from the I/O (``store`` for SQL, ``engine``
for fetching and writing with worker threads). See docs/flows.md for the semantics.
"""

from __future__ import annotations

from market_bridge.backfill.completeness import (
    CompletenessReport,
    DayCompleteness,
    completeness_report,
)
from market_bridge.backfill.engine import (
    BackfillResult,
    BackfillStopped,
    Progress,
    SymbolStats,
    now_ist,
    run_plan,
)
from market_bridge.backfill.gaps import (
    GapFillResult,
    GapReport,
    SymbolGaps,
    close_repaired_feed_gaps,
    default_targets,
    feed_gap_targets,
    fill_gaps,
    find_symbol_gaps,
)
from market_bridge.backfill.housekeeping import (
    InstrumentsSync,
    MaintenanceReport,
    run_maintenance,
    sync_instruments,
)
from market_bridge.backfill.jobs import (
    NoInstruments,
    backfill_symbols,
    ensure_instruments,
    load_index,
    prepare_backfill,
)
from market_bridge.backfill.kite_client import KiteClients, KiteNotConfigured
from market_bridge.backfill.plan import BackfillPlan, SymbolPlan, WorkUnit, plan_backfill
from market_bridge.backfill.ranges import InvalidRange, user_range
from market_bridge.backfill.store import SchemaMissing
from market_bridge.backfill.targets import NoSymbols, select_symbols

__all__ = [
    "BackfillPlan",
    "BackfillResult",
    "BackfillStopped",
    "CompletenessReport",
    "DayCompleteness",
    "GapFillResult",
    "GapReport",
    "InstrumentsSync",
    "InvalidRange",
    "KiteClients",
    "KiteNotConfigured",
    "MaintenanceReport",
    "NoInstruments",
    "NoSymbols",
    "Progress",
    "SchemaMissing",
    "SymbolGaps",
    "SymbolPlan",
    "SymbolStats",
    "WorkUnit",
    "backfill_symbols",
    "close_repaired_feed_gaps",
    "default_targets",
    "completeness_report",
    "ensure_instruments",
    "feed_gap_targets",
    "fill_gaps",
    "find_symbol_gaps",
    "load_index",
    "now_ist",
    "plan_backfill",
    "prepare_backfill",
    "run_maintenance",
    "run_plan",
    "select_symbols",
    "sync_instruments",
    "user_range",
]
