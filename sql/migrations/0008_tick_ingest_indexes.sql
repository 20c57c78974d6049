-- md.tick_data and md.order_book are written at feed rate (tens of thousands of rows a
-- second) and every read of them names a symbol: ticks_in_range, latest_ticks and the
-- symbol check use tick_data_symbol_ts_idx, order book reads the (exchange, symbol,
-- snapshot_timestamp) unique index. The time-only index that create_hypertable adds by
-- default serves no query (chunk exclusion works from the chunks' constraints, retention
-- drops whole chunks) and costs every insert an index update; drop it on both tables.
DROP INDEX IF EXISTS md.tick_data_tick_timestamp_idx;
DROP INDEX IF EXISTS md.order_book_snapshot_timestamp_idx;
