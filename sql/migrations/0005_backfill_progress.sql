-- Backfill bookkeeping. A run is one backfill or gap fill; each stretch of history it
-- fetched and wrote completely is recorded (in the same transaction as its bars), so a
-- repeated or interrupted backfill skips what is done unless forced. Stretches of a day
-- still trading (or not yet settled) are written but not recorded (docs/flows.md).
CREATE TABLE md.backfill_runs (
    run_id UUID PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('backfill', 'gap_fill')),
    timeframe TEXT NOT NULL,
    range_start TIMESTAMPTZ NOT NULL,
    range_end TIMESTAMPTZ NOT NULL,
    symbols TEXT[] NOT NULL,
    forced BOOLEAN NOT NULL DEFAULT false,
    status TEXT NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'completed', 'completed_with_errors', 'stopped',
                          'failed')),
    requests INTEGER NOT NULL DEFAULT 0,
    bars_written BIGINT NOT NULL DEFAULT 0,
    bars_unchanged BIGINT NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    stats JSONB NOT NULL DEFAULT '{}'::jsonb,  -- per-symbol counts
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);
CREATE INDEX backfill_runs_started_idx ON md.backfill_runs (started_at DESC);

CREATE TABLE md.backfill_windows (
    id BIGSERIAL PRIMARY KEY,
    run_id UUID NOT NULL REFERENCES md.backfill_runs (run_id) ON DELETE CASCADE,
    exchange TEXT NOT NULL,
    symbol TEXT NOT NULL,
    timeframe TEXT NOT NULL,
    request_start TIMESTAMPTZ NOT NULL,  -- the Kite request this stretch came from
    request_end TIMESTAMPTZ NOT NULL,
    covered_start TIMESTAMPTZ NOT NULL,  -- history known complete: [covered_start, covered_end)
    covered_end TIMESTAMPTZ NOT NULL,
    bars_received INTEGER NOT NULL,
    bars_written INTEGER NOT NULL,
    completed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (covered_end > covered_start)
);
-- Serves "what is done for this symbol and timeframe" when planning.
CREATE INDEX backfill_windows_lookup_idx
    ON md.backfill_windows (exchange, symbol, timeframe, covered_start);
