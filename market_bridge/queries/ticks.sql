-- Queries on md.tick_data. Ranges are half-open [start, end); NULL bounds are unbounded.

-- name: ticks_in_range
-- The most recent `limit` ticks of the range, oldest first.
SELECT * FROM (
    SELECT tick_timestamp, price, quantity, trade_type, volume_traded, volume_delta,
           average_price, total_buy_quantity, total_sell_quantity, bid_price, bid_quantity,
           ask_price, ask_quantity, oi, last_trade_time, received_at, mode
    FROM md.tick_data
    WHERE exchange = %(exchange)s AND symbol = %(symbol)s
      AND tick_timestamp >= coalesce(%(start)s::timestamptz, '-infinity')
      AND tick_timestamp < coalesce(%(end)s::timestamptz, 'infinity')
    ORDER BY tick_timestamp DESC
    LIMIT %(limit)s
) newest
ORDER BY tick_timestamp;
