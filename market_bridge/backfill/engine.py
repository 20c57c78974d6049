"""Execute a plan: fetch each request from Kite, write the candles, record what is done.

Workers are threads (KiteConnect is synchronous); each has its own Kite client and its own
database connection (a psycopg connection must never be shared between threads). They all
share the process-wide 3 requests/s limiter, so ``concurrent`` overlaps network and
database latency but never raises the request rate. Results and progress callbacks are
handled on the calling thread.

Failure rules: a ``KiteInputError`` fails that symbol (its remaining requests are skipped)
and the others carry on; a request still failing after the client's retries is an error of
that symbol; an invalid or expired token (``KiteTokenError``) or a lost database stops the
whole run, with what was written so far kept and recorded.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from market_bridge.backfill import store
from market_bridge.backfill.plan import BackfillPlan, WorkUnit
from market_bridge.backfill.ranges import done_horizon
from market_bridge.kite.errors import KiteInputError, KiteRetryableError, KiteTokenError
from market_bridge.kite.models import IST
from market_bridge.kite.rest import KiteRest
from market_bridge.market.calendar import TradingCalendar

log = logging.getLogger(__name__)

KiteFactory = Callable[[], KiteRest]
Clock = Callable[[], datetime]


def now_ist() -> datetime:
    return datetime.now(IST)


@dataclass
class SymbolStats:
    symbol: str
    requests_planned: int = 0
    requests: int = 0  # requests made (each may have been retried)
    retries: int = 0
    bars_received: int = 0
    bars_new: int = 0
    bars_updated: int = 0  # replaced a live bar or a different historical one
    bars_unchanged: int = 0  # identical bar already stored: not written
    bars_ignored: int = 0  # outside the wanted stretches, or still forming
    requests_skipped: int = 0  # not made: the symbol had failed, or the run stopped
    errors: list[str] = field(default_factory=list)

    @property
    def bars_written(self) -> int:
        return self.bars_new + self.bars_updated

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bars_written": self.bars_written}


@dataclass(frozen=True, slots=True)
class Progress:
    done: int  # requests finished (made, failed or skipped)
    total: int
    symbol: str
    bars_written: int  # run totals so far
    bars_unchanged: int


@dataclass
class BackfillResult:
    plan: BackfillPlan
    stats: list[SymbolStats]
    run_id: uuid.UUID | None = None
    status: str = "completed"  # completed | completed_with_errors | stopped | nothing_to_do
    message: str | None = None
    elapsed_s: float = 0.0

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.stats)

    @property
    def retries(self) -> int:
        return sum(s.retries for s in self.stats)

    @property
    def bars_written(self) -> int:
        return sum(s.bars_written for s in self.stats)

    @property
    def bars_unchanged(self) -> int:
        return sum(s.bars_unchanged for s in self.stats)

    @property
    def errors(self) -> int:
        return sum(len(s.errors) for s in self.stats)

    @property
    def failed_symbols(self) -> list[str]:
        return [s.symbol for s in self.stats if s.failed]

    def summary(self) -> str:
        if self.status == "nothing_to_do":
            return (f"nothing to do: every requested stretch is already backfilled "
                    f"({self.plan.done_bars} bars); use --force to fetch again")
        text = (f"{self.status}: {self.requests} requests, {self.bars_written} bars written, "
                f"{self.bars_unchanged} already present, {self.errors} errors "
                f"in {self.elapsed_s:.1f}s")
        if self.requests and not self.bars_written and not self.errors:
            text += " — nothing new"
        if self.message:
            text += f". {self.message}"
        return text


class BackfillStopped(RuntimeError):
    """The run stopped early (token invalid/expired, database lost); ``result`` has what
    was done before that."""

    def __init__(self, message: str, result: BackfillResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True, slots=True)
class _Outcome:
    received: int
    ignored: int
    counts: store.WriteCounts
    retries: int


class _Fatal(Exception):
    """A worker hit something that must stop every worker."""


class _Workers:
    """Per-thread Kite clients and database connections, closed by the owner at the end."""

    def __init__(self, dsn: str, kite_factory: KiteFactory) -> None:
        self._dsn = dsn
        self._kite_factory = kite_factory
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[psycopg.Connection] = []

    def kite(self) -> KiteRest:
        kite: KiteRest | None = getattr(self._local, "kite", None)
        if kite is None:
            kite = self._local.kite = self._kite_factory()
        return kite

    def conn(self) -> psycopg.Connection:
        conn: psycopg.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._local.conn = psycopg.connect(self._dsn, connect_timeout=10)
            with self._lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()


def run_plan(
    plan: BackfillPlan,
    dsn: str,
    kite_factory: KiteFactory,
    calendar: TradingCalendar,
    concurrent: int = 3,
    on_progress: Callable[[Progress], None] | None = None,
    clock: Clock = now_ist,
) -> BackfillResult:
    """Fetch and write every unit of ``plan``; raise ``BackfillStopped`` on a fatal error."""
    if concurrent < 1:
        raise ValueError(f"concurrent must be at least 1 (got {concurrent})")
    stats = {s.symbol: SymbolStats(s.symbol, s.requests) for s in plan.symbols}
    for s in plan.symbols:
        if s.error:
            stats[s.symbol].errors.append(s.error)
    result = BackfillResult(plan, list(stats.values()))
    units = plan.units
    if not units:
        if not plan.errors:
            result.status = "nothing_to_do"
        else:
            result.status = "completed_with_errors"
        return result

    started = time.monotonic()
    horizon = done_horizon(calendar, plan.timeframe, plan.now)
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        store.require_schema(conn)
        run_id = result.run_id = store.start_run(
            conn, plan.kind, plan.timeframe, (plan.start, plan.end),
            [s.symbol for s in plan.symbols], plan.force)

    workers = _Workers(dsn, kite_factory)
    stop = threading.Event()
    failed_symbols: set[str] = {s.symbol for s in plan.symbols if s.error}

    def work(unit: WorkUnit) -> _Outcome | None:
        if stop.is_set() or unit.symbol in failed_symbols:
            return None
        kite = workers.kite()
        before = kite.retries
        try:
            candles = kite.historical(unit.instrument.instrument_token, plan.timeframe,
                                      unit.window)
        except KiteTokenError:
            stop.set()  # at once: workers must not spend requests on a dead token
            raise
        finally:
            retries = kite.retries - before
        now = clock()
        keep = [c for c in candles
                if unit.keeps(c.start) and plan.timeframe.bar_end(c.start) <= now]
        conn = workers.conn()
        try:
            span = (unit.keep[0][0], unit.keep[-1][1])
            counts = store.write_candles(conn, unit.instrument, plan.timeframe, keep, span)
            for a, b in unit.keep:
                if min(b, horizon) > a:
                    store.record_stretch(conn, run_id, unit.instrument, plan.timeframe,
                                         (unit.window.start, unit.window.end),
                                         (a, min(b, horizon)), len(candles), counts.written)
            conn.commit()
        except psycopg.OperationalError as exc:
            raise _Fatal(f"database unavailable while writing {unit.symbol}: {exc}") from exc
        except BaseException:
            conn.rollback()
            raise
        return _Outcome(len(candles), len(candles) - len(keep), counts, retries)

    fatal: str | None = None
    done = 0

    def stop_all(futures: dict[Future[_Outcome | None], WorkUnit]) -> None:
        stop.set()
        for other in futures:
            other.cancel()  # queued ones; running ones finish their one request

    try:
        with ThreadPoolExecutor(max_workers=concurrent, thread_name_prefix="backfill") as pool:
            futures: dict[Future[_Outcome | None], WorkUnit] = {
                pool.submit(work, u): u for u in units}
            try:
                for fut in as_completed(futures):
                    unit = futures[fut]
                    st = stats[unit.symbol]
                    done += 1
                    try:
                        outcome = fut.result()
                    except CancelledError:
                        outcome = None
                    except (KiteTokenError, _Fatal) as exc:
                        st.requests += 1
                        if fatal is None:
                            fatal = str(exc)
                            log.error("backfill stopped: %s", fatal)
                            stop_all(futures)
                        continue
                    except KiteInputError as exc:
                        st.requests += 1
                        st.errors.append(f"{_window_text(unit)}: Kite rejected the request: {exc}")
                        failed_symbols.add(unit.symbol)
                        continue
                    except KiteRetryableError as exc:
                        st.requests += 1
                        st.errors.append(f"{_window_text(unit)}: gave up after retries: {exc}")
                        continue
                    except Exception as exc:  # a bug or an unexpected reply: this request only
                        st.requests += 1
                        log.exception("backfill of %s failed", unit.symbol)
                        st.errors.append(f"{_window_text(unit)}: {type(exc).__name__}: {exc}")
                        continue
                    if outcome is None:
                        st.requests_skipped += 1
                    else:
                        st.requests += 1
                        st.retries += outcome.retries
                        st.bars_received += outcome.received
                        st.bars_ignored += outcome.ignored
                        st.bars_new += outcome.counts.new
                        st.bars_updated += outcome.counts.updated
                        st.bars_unchanged += outcome.counts.unchanged
                    if on_progress is not None:
                        on_progress(Progress(done, len(units), unit.symbol, result.bars_written,
                                             result.bars_unchanged))
            except BaseException as exc:  # Ctrl-C, a cancelled flow run, a failing callback
                fatal = fatal or f"interrupted ({type(exc).__name__})"
                stop_all(futures)
                raise
    finally:
        workers.close()
        result.elapsed_s = time.monotonic() - started
        if fatal is not None:
            result.status, result.message = "stopped", fatal
        elif result.errors:
            result.status = "completed_with_errors"
        _finish(dsn, result)
    if fatal is not None:
        raise BackfillStopped(fatal, result)
    return result


def _window_text(unit: WorkUnit) -> str:
    return f"{unit.window.start:%Y-%m-%d %H:%M}..{unit.window.end:%Y-%m-%d %H:%M}"


def _finish(dsn: str, result: BackfillResult) -> None:
    if result.run_id is None:
        return
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            store.finish_run(
                conn, result.run_id, result.status, result.requests, result.bars_written,
                result.bars_unchanged, result.errors, result.message,
                {s.symbol: s.as_dict() for s in result.stats})
    except psycopg.OperationalError as exc:  # the run's bars are committed; only the log is lost
        log.warning("could not record the end of backfill run %s: %s", result.run_id, exc)
