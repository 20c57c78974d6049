-- Streaming processes report what they own and their process-wide metrics (storage writer,
-- live publisher) with each heartbeat; feed gaps are looked up per collector and time.
ALTER TABLE md.streaming_processes
    ADD COLUMN collectors TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN metrics JSONB NOT NULL DEFAULT '{}'::jsonb;

CREATE INDEX feed_gaps_collector_start_idx ON md.feed_gaps (collector, gap_start);
