-- The collectors control plane: desired state in md.collectors (written by the API and the
-- config loader), observed state in md.collector_status (heartbeats from streaming).
-- Every change of desired state bumps `generation` and is announced with
-- pg_notify('mb_control', name) in the same transaction, so a listener never sees the
-- notification before the row.

-- name: list_collectors
SELECT c.name, c.api_key, c.access_token, c.mode, c.symbols, c.watchlists, c.desired_state,
       c.auto_start, c.origin, c.generation, c.created_at, c.updated_at,
       s.name IS NOT NULL AS has_status,
       s.owner, s.state, s.running, s.subscribed_tokens, s.ticks_received, s.bars_created,
       s.errors, s.reconnects, s.last_tick_at, s.lag_ms, s.last_error, s.applied_generation,
       s.metrics, s.heartbeat_at,
       extract(epoch FROM now() - s.heartbeat_at)::double precision AS heartbeat_age_seconds
FROM md.collectors c
LEFT JOIN md.collector_status s ON s.name = c.name
ORDER BY c.name;

-- name: get_collector
SELECT c.name, c.api_key, c.access_token, c.mode, c.symbols, c.watchlists, c.desired_state,
       c.auto_start, c.origin, c.generation, c.created_at, c.updated_at,
       s.name IS NOT NULL AS has_status,
       s.owner, s.state, s.running, s.subscribed_tokens, s.ticks_received, s.bars_created,
       s.errors, s.reconnects, s.last_tick_at, s.lag_ms, s.last_error, s.applied_generation,
       s.metrics, s.heartbeat_at,
       extract(epoch FROM now() - s.heartbeat_at)::double precision AS heartbeat_age_seconds
FROM md.collectors c
LEFT JOIN md.collector_status s ON s.name = c.name
WHERE c.name = %(name)s;

-- name: insert_collector
INSERT INTO md.collectors (name, api_key, access_token, mode, symbols, watchlists,
                           desired_state, auto_start, origin)
VALUES (%(name)s, %(api_key)s, %(access_token)s, %(mode)s, %(symbols)s, %(watchlists)s,
        %(desired_state)s, %(auto_start)s, 'api')
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: lock_desired_state
SELECT mode, symbols, watchlists, desired_state
FROM md.collectors
WHERE name = %(name)s
FOR UPDATE;

-- name: update_desired_state
UPDATE md.collectors
SET mode = %(mode)s, symbols = %(symbols)s, watchlists = %(watchlists)s,
    desired_state = %(desired_state)s, generation = generation + 1, updated_at = now()
WHERE name = %(name)s
RETURNING generation;

-- name: update_credentials
UPDATE md.collectors
SET api_key = coalesce(%(api_key)s, api_key),
    access_token = coalesce(%(access_token)s, access_token),
    generation = generation + 1, updated_at = now()
WHERE name = %(name)s
RETURNING generation;

-- name: delete_collector
DELETE FROM md.collectors WHERE name = %(name)s RETURNING name;

-- name: notify_control
SELECT pg_notify('mb_control', %(name)s);
