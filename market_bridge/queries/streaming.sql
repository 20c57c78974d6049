-- Liveness of the database and of the streaming processes (md.streaming_processes).

-- name: ping
SELECT 1;

-- name: streaming_processes
SELECT process_id, host, pid, started_at, heartbeat_at, collectors,
       extract(epoch FROM now() - heartbeat_at)::double precision AS heartbeat_age_seconds
FROM md.streaming_processes
ORDER BY process_id;
