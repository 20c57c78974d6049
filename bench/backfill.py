"""Backfill throughput against the Kite simulator: how close we run to Kite's 3 requests/s.

    .venv/bin/python bench/backfill.py [--concurrent 10] [--watchlist NIFTY50] [--days 2]
                                       [--timeframe 1m] [--database-url URL]

Starts ``market-bridge simulate --session nse`` in a subprocess (its own process and GIL,
as Kite is remote) and, unless ``--database-url`` is given, a throwaway TimescaleDB
cluster in a temp dir. The same workload (the watchlist x the last ``--days`` trading
days before today) runs twice on empty bar tables: a baseline with ``--concurrent 1``,
then with ``--concurrent N``. Prints, for each, requests/s and its ratio to the 3 req/s
ceiling (1.00 = every slot used; above 1 would mean we break Kite's limit), 429 retries,
and bars written per second; then the speed-up of N workers over one. With one worker
each request's latency (simulator + network + database write) is spent inside the
rate-limit slot; more workers overlap it, so the ratio should approach 1.
"""

from __future__ import annotations

import argparse
import logging
from datetime import datetime, timedelta
from datetime import time as clock_time

import psycopg
from support import database, simulator

from market_bridge.backfill import KiteClients, backfill_symbols, select_symbols, sync_instruments
from market_bridge.backfill.engine import BackfillResult
from market_bridge.kite.models import IST
from market_bridge.kite.simulator import DEFAULT_ACCESS_TOKEN, DEFAULT_API_KEY
from market_bridge.market.calendar import TradingCalendar
from market_bridge.market.timeframes import parse_timeframe

CEILING = 3.0  # Kite's historical limit, requests/s per API key


def reset(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE md.intraday_bars, md.backfill_windows, md.backfill_runs")


def report(label: str, result: BackfillResult) -> float:
    rate = result.requests / result.elapsed_s
    sent = (result.requests + result.retries) / result.elapsed_s  # retries use slots too
    print(f"  {label:<14} {result.requests:>4} requests in {result.elapsed_s:6.2f}s = "
          f"{rate:5.2f} req/s = {rate / CEILING:4.2f} x the {CEILING:g} req/s ceiling "
          f"(sent incl. {result.retries} retries after 429: {sent / CEILING:4.2f} x); "
          f"{result.bars_written / result.elapsed_s:,.0f} bars written/s "
          f"({result.bars_written:,} bars)")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--concurrent", type=int, default=10)
    ap.add_argument("--watchlist", default="NIFTY50")
    ap.add_argument("--days", type=int, default=2, help="trading days before today")
    ap.add_argument("--timeframe", default="1m")
    ap.add_argument("--database-url", default=None, help="default: a throwaway cluster")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the client's per-retry warnings are counted

    cal = TradingCalendar()
    tf = parse_timeframe(args.timeframe)
    last = cal.previous_trading_day(datetime.now(IST).date())
    days = [last]
    while len(days) < args.days:
        days.append(cal.previous_trading_day(days[-1]))
    start = datetime.combine(days[-1], clock_time(0), IST)
    end = datetime.combine(last + timedelta(days=1), clock_time(0), IST)
    symbols = select_symbols(args.watchlist, None)

    with simulator("--session", "nse") as root, database(args.database_url) as db:
        dsn = db.dsn
        kite = KiteClients(DEFAULT_API_KEY, DEFAULT_ACCESS_TOKEN, root)
        sync_instruments(dsn, kite())
        print(f"backfill {len(symbols)} symbols ({args.watchlist}) x {args.days} trading days "
              f"of {tf.name} ({days[-1]}..{last}), simulator in a subprocess")
        rates = {}
        for workers in (1, args.concurrent):
            reset(dsn)
            result = backfill_symbols(dsn, cal, symbols, tf, start, end, kite,
                                      concurrent=workers)
            if result.errors:
                raise SystemExit(f"errors: {result.summary()}")
            rates[workers] = report(f"concurrent={workers}", result)
        print(f"  speed-up of {args.concurrent} workers over 1: "
              f"{rates[args.concurrent] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
