-- The streaming side of the collectors control plane (see market_bridge/collect/control.py).
-- Desired state is read from md.collectors; observed state is written to
-- md.collector_status, md.streaming_processes and md.feed_gaps.

-- name: upsert_config_collector
-- collectors.yaml wins for rows it created (origin 'config'); rows created through the API
-- are left alone. auto_start means "desired running" at every start of the service.
-- Only a real change bumps the generation (and is returned, to be announced).
INSERT INTO md.collectors AS c (name, api_key, access_token, mode, symbols, watchlists,
                                desired_state, auto_start, origin)
VALUES (%(name)s, %(api_key)s, %(access_token)s, %(mode)s, %(symbols)s, %(watchlists)s,
        CASE WHEN %(auto_start)s THEN 'running' ELSE 'stopped' END, %(auto_start)s, 'config')
ON CONFLICT (name) DO UPDATE SET
    api_key = EXCLUDED.api_key,
    access_token = EXCLUDED.access_token,
    mode = EXCLUDED.mode,
    symbols = EXCLUDED.symbols,
    watchlists = EXCLUDED.watchlists,
    auto_start = EXCLUDED.auto_start,
    desired_state = CASE WHEN EXCLUDED.auto_start THEN 'running' ELSE c.desired_state END,
    generation = c.generation + 1,
    updated_at = now()
WHERE c.origin = 'config'
  AND (c.api_key, c.access_token, c.mode, c.symbols, c.watchlists, c.auto_start,
       c.desired_state)
      IS DISTINCT FROM
      (EXCLUDED.api_key, EXCLUDED.access_token, EXCLUDED.mode, EXCLUDED.symbols,
       EXCLUDED.watchlists, EXCLUDED.auto_start,
       CASE WHEN EXCLUDED.auto_start THEN 'running' ELSE c.desired_state END)
RETURNING name;

-- name: api_owned_names
SELECT name FROM md.collectors WHERE name = ANY(%(names)s) AND origin = 'api' ORDER BY name;

-- name: notify_control
SELECT pg_notify('mb_control', %(name)s);

-- name: desired_collectors
SELECT name, api_key, access_token, mode, symbols, watchlists, desired_state, generation
FROM md.collectors
ORDER BY name;

-- name: try_lock
SELECT pg_try_advisory_lock(%(key)s);

-- name: unlock
SELECT pg_advisory_unlock(%(key)s);

-- name: previous_status
SELECT owner, state, running, last_tick_at, heartbeat_at, now() AS db_now
FROM md.collector_status
WHERE name = %(name)s;

-- name: upsert_status
-- Skipped when the collector was deleted meanwhile (the status row would violate its FK).
INSERT INTO md.collector_status AS s (name, owner, state, running, subscribed_tokens,
    ticks_received, bars_created, errors, reconnects, last_tick_at, lag_ms, last_error,
    applied_generation, metrics, heartbeat_at)
SELECT %(name)s, %(owner)s, %(state)s, %(running)s, %(subscribed_tokens)s,
       %(ticks_received)s, %(bars_created)s, %(errors)s, %(reconnects)s, %(last_tick_at)s,
       %(lag_ms)s, %(last_error)s, %(applied_generation)s, %(metrics)s, now()
WHERE EXISTS (SELECT 1 FROM md.collectors WHERE name = %(name)s)
ON CONFLICT (name) DO UPDATE SET
    owner = EXCLUDED.owner, state = EXCLUDED.state, running = EXCLUDED.running,
    subscribed_tokens = EXCLUDED.subscribed_tokens, ticks_received = EXCLUDED.ticks_received,
    bars_created = EXCLUDED.bars_created, errors = EXCLUDED.errors,
    reconnects = EXCLUDED.reconnects,
    last_tick_at = coalesce(EXCLUDED.last_tick_at, s.last_tick_at),
    lag_ms = EXCLUDED.lag_ms, last_error = EXCLUDED.last_error,
    applied_generation = EXCLUDED.applied_generation, metrics = EXCLUDED.metrics,
    heartbeat_at = now();

-- name: upsert_process
INSERT INTO md.streaming_processes AS p (process_id, host, pid, started_at, heartbeat_at,
                                         collectors, metrics)
VALUES (%(process_id)s, %(host)s, %(pid)s, %(started_at)s, now(), %(collectors)s, %(metrics)s)
ON CONFLICT (process_id) DO UPDATE SET
    heartbeat_at = now(), collectors = EXCLUDED.collectors, metrics = EXCLUDED.metrics;

-- name: delete_process
DELETE FROM md.streaming_processes WHERE process_id = %(process_id)s;

-- name: insert_gap
INSERT INTO md.feed_gaps (collector, symbols, gap_start, gap_end, reason)
VALUES (%(collector)s, %(symbols)s, %(gap_start)s, %(gap_end)s, %(reason)s)
RETURNING id;

-- name: prune_processes
-- Rows of processes that stopped heartbeating (killed): a live process re-registers with
-- its next heartbeat anyway.
DELETE FROM md.streaming_processes
WHERE heartbeat_at < now() - make_interval(secs => %(older_than)s)
  AND process_id <> %(process_id)s;
