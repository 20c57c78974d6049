-- Control plane for collectors: desired state written by the API / config loader,
-- reconciled by streaming processes, which report status and metrics back.
CREATE TABLE md.collectors (
    name TEXT PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    api_key TEXT,                  -- secret-adjacent: never returned unmasked
    access_token TEXT,             -- secret: never returned or logged
    mode TEXT NOT NULL DEFAULT 'quote' CHECK (mode IN ('ltp', 'quote', 'full')),
    symbols TEXT[] NOT NULL DEFAULT '{}',
    watchlists TEXT[] NOT NULL DEFAULT '{}',
    desired_state TEXT NOT NULL DEFAULT 'stopped'
        CHECK (desired_state IN ('running', 'stopped')),
    auto_start BOOLEAN NOT NULL DEFAULT false,
    origin TEXT NOT NULL DEFAULT 'api' CHECK (origin IN ('api', 'config')),
    generation BIGINT NOT NULL DEFAULT 1,   -- bumped on every change of desired state
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per collector, upserted by the streaming process that owns it (heartbeat).
CREATE TABLE md.collector_status (
    name TEXT PRIMARY KEY REFERENCES md.collectors (name) ON DELETE CASCADE,
    owner TEXT,                    -- streaming process id (host:pid:start)
    state TEXT NOT NULL DEFAULT 'stopped',
    running BOOLEAN NOT NULL DEFAULT false,
    subscribed_tokens INTEGER NOT NULL DEFAULT 0,
    ticks_received BIGINT NOT NULL DEFAULT 0,
    bars_created BIGINT NOT NULL DEFAULT 0,
    errors BIGINT NOT NULL DEFAULT 0,
    reconnects BIGINT NOT NULL DEFAULT 0,
    last_tick_at TIMESTAMPTZ,
    lag_ms DOUBLE PRECISION,
    last_error TEXT,
    applied_generation BIGINT NOT NULL DEFAULT 0,
    metrics JSONB NOT NULL DEFAULT '{}'::jsonb,
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Streaming processes alive (heartbeat); a dead one's collectors are taken over.
CREATE TABLE md.streaming_processes (
    process_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Periods where a feed was not collecting (process death, disconnect): the gap-fill flow
-- repairs them from the historical API and marks them filled.
CREATE TABLE md.feed_gaps (
    id BIGSERIAL PRIMARY KEY,
    collector TEXT NOT NULL,
    symbols TEXT[] NOT NULL DEFAULT '{}',
    gap_start TIMESTAMPTZ NOT NULL,
    gap_end TIMESTAMPTZ,
    reason TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    filled_at TIMESTAMPTZ
);
CREATE INDEX feed_gaps_open_idx ON md.feed_gaps (filled_at) WHERE filled_at IS NULL;
