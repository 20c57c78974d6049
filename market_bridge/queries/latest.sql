-- The newest stored values per symbol, for many symbols at once (the live stream's snapshot
-- on subscribe and its get_latest). One ordered index probe per symbol (LATERAL) instead of
-- a DISTINCT ON over the hypertable.

-- name: latest_ticks
SELECT k.exchange, k.symbol, t.instrument_token, t.tick_timestamp, t.price, t.quantity,
       t.volume_traded, t.average_price, t.total_buy_quantity, t.total_sell_quantity,
       t.bid_price, t.ask_price, t.oi, t.mode
FROM unnest(%(exchanges)s::text[], %(symbols)s::text[]) AS k (exchange, symbol)
CROSS JOIN LATERAL (
    SELECT d.instrument_token, d.tick_timestamp, d.price, d.quantity, d.volume_traded,
           d.average_price, d.total_buy_quantity, d.total_sell_quantity, d.bid_price,
           d.ask_price, d.oi, d.mode
    FROM md.tick_data d
    WHERE d.symbol = k.symbol AND d.exchange = k.exchange
    ORDER BY d.tick_timestamp DESC
    LIMIT 1
) t;

-- name: latest_bars
-- The newest bar per (exchange, symbol) at or after `since` (NULL: anywhere). latest.py
-- sends it unprepared with a recent `since` first (only recent chunks are opened), then
-- with NULL for the symbols that have none there. The bar columns come first, in
-- BarRow's order (latest.py builds LatestBar positionally).
SELECT b.bar_timestamp, b.open, b.high, b.low, b.close, b.volume, b.trades_count, b.vwap,
       b.oi, b.provenance, b.revision, k.exchange, k.symbol, b.instrument_token
FROM unnest(%(exchanges)s::text[], %(symbols)s::text[]) AS k (exchange, symbol)
CROSS JOIN LATERAL (
    SELECT i.instrument_token, i.bar_timestamp, i.open, i.high, i.low, i.close, i.volume,
           i.trades_count, i.vwap, i.oi, i.provenance, i.revision
    FROM md.intraday_bars i
    WHERE i.symbol = k.symbol AND i.timeframe = %(timeframe)s AND i.exchange = k.exchange
      AND i.bar_timestamp >= coalesce(%(since)s::timestamptz, '-infinity')
    ORDER BY i.bar_timestamp DESC
    LIMIT 1
) b;
