-- Compression, retention and continuous aggregates exist only in TimescaleDB's
-- community ('timescale') license. On the Apache edition these are skipped here and the
-- maintenance routine (market_bridge.db.maintenance) applies retention with drop_chunks.
-- The license is read, not guessed from an error.
CREATE TABLE md.storage_policy (
    table_name TEXT PRIMARY KEY,
    compress_after INTERVAL,
    retain_for INTERVAL NOT NULL,
    time_column TEXT NOT NULL
);
INSERT INTO md.storage_policy VALUES
    ('md.intraday_bars', INTERVAL '7 days', INTERVAL '365 days', 'bar_timestamp'),
    ('md.tick_data', INTERVAL '3 days', INTERVAL '30 days', 'tick_timestamp'),
    ('md.order_book', INTERVAL '3 days', INTERVAL '30 days', 'snapshot_timestamp');

DO $$
BEGIN
    IF current_setting('timescaledb.license', true) = 'timescale' THEN
        EXECUTE 'ALTER TABLE md.intraday_bars SET (timescaledb.compress,
                 timescaledb.compress_segmentby = ''exchange, symbol, timeframe'')';
        PERFORM add_compression_policy('md.intraday_bars', INTERVAL '7 days');
        PERFORM add_retention_policy('md.intraday_bars', INTERVAL '365 days');
        EXECUTE 'ALTER TABLE md.tick_data SET (timescaledb.compress,
                 timescaledb.compress_segmentby = ''exchange, symbol'')';
        PERFORM add_compression_policy('md.tick_data', INTERVAL '3 days');
        PERFORM add_retention_policy('md.tick_data', INTERVAL '30 days');
        EXECUTE 'ALTER TABLE md.order_book SET (timescaledb.compress,
                 timescaledb.compress_segmentby = ''exchange, symbol'')';
        PERFORM add_compression_policy('md.order_book', INTERVAL '3 days');
        PERFORM add_retention_policy('md.order_book', INTERVAL '30 days');
    ELSE
        RAISE NOTICE 'TimescaleDB license is %: compression and retention policies are not '
                     'available; run the maintenance flow to apply retention with drop_chunks',
                     coalesce(current_setting('timescaledb.license', true), 'unknown');
    END IF;
END
$$;
