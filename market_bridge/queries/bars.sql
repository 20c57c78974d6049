-- Queries on md.intraday_bars. Ranges are half-open: bar_timestamp in [start, end); a NULL
-- bound means unbounded. IST day boundaries use 'Asia/Kolkata' explicitly so results do not
-- depend on the session's TimeZone setting.

-- The bar columns (BarRow, in this order) of bars_newest_first, latest_bar_since and
-- latest_bar. bars.py sends the queries with a recent lower bound unprepared, so that
-- they are planned with the bound's value and only the recent chunks are opened.

-- name: bars_newest_first
-- The most recent `limit` bars of the range, newest first (bars.py reverses them: the
-- reversal costs PostgreSQL nothing).
SELECT bar_timestamp, open, high, low, close, volume, trades_count, vwap, oi,
       provenance, revision
FROM md.intraday_bars
WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND timeframe = %(timeframe)s
  AND bar_timestamp >= coalesce(%(start)s::timestamptz, '-infinity')
  AND bar_timestamp < coalesce(%(end)s::timestamptz, 'infinity')
ORDER BY bar_timestamp DESC
LIMIT %(limit)s;

-- name: latest_bar_since
-- The newest bar at or after `since` (the recent window tried first).
SELECT bar_timestamp, open, high, low, close, volume, trades_count, vwap, oi,
       provenance, revision
FROM md.intraday_bars
WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND timeframe = %(timeframe)s
  AND bar_timestamp >= %(since)s
ORDER BY bar_timestamp DESC
LIMIT 1;

-- name: latest_bar
-- The newest bar, wherever it is (when the recent window has none).
SELECT bar_timestamp, open, high, low, close, volume, trades_count, vwap, oi,
       provenance, revision
FROM md.intraday_bars
WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND timeframe = %(timeframe)s
ORDER BY bar_timestamp DESC
LIMIT 1;

-- name: close_before
-- Close of the last bar strictly before `before` (the previous close for a range).
SELECT close
FROM md.intraday_bars
WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND timeframe = %(timeframe)s
  AND bar_timestamp < %(before)s
ORDER BY bar_timestamp DESC
LIMIT 1;

-- name: range_stats
-- Bar VWAP when the bar has one, else its typical price, weighted by volume.
SELECT count(*) AS bar_count,
       first(open, bar_timestamp) AS open,
       max(high) AS high,
       min(low) AS low,
       last(close, bar_timestamp) AS close,
       coalesce(sum(volume), 0)::bigint AS volume,
       sum(coalesce(vwap, (high + low + close) / 3.0) * volume)
           / nullif(sum(volume), 0)::double precision AS vwap,
       min(bar_timestamp) AS first_bar_at,
       max(bar_timestamp) AS last_bar_at
FROM md.intraday_bars
WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND timeframe = %(timeframe)s
  AND bar_timestamp >= coalesce(%(start)s::timestamptz, '-infinity')
  AND bar_timestamp < coalesce(%(end)s::timestamptz, 'infinity');

-- name: vwap_series
-- Cumulative VWAP per bar, reset at each IST midnight. The window reads from `day_start`
-- (IST midnight of the range's first day) so a range starting mid-session still gets the
-- session's VWAP, then only bars in [start, end) are returned: the most recent `limit`.
SELECT * FROM (
    SELECT bar_timestamp, close, volume, cumulative_volume, vwap
    FROM (
        SELECT bar_timestamp, close, volume,
               (sum(volume) OVER day_so_far)::bigint AS cumulative_volume,
               sum(coalesce(vwap, (high + low + close) / 3.0) * volume) OVER day_so_far
                   / nullif(sum(volume) OVER day_so_far, 0)::double precision AS vwap
        FROM md.intraday_bars
        WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND timeframe = %(timeframe)s
          AND bar_timestamp >= %(day_start)s
          AND bar_timestamp < coalesce(%(end)s::timestamptz, 'infinity')
        WINDOW day_so_far AS (
            PARTITION BY (bar_timestamp AT TIME ZONE 'Asia/Kolkata')::date
            ORDER BY bar_timestamp
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        )
    ) cumulative
    WHERE bar_timestamp >= %(start)s
    ORDER BY bar_timestamp DESC
    LIMIT %(limit)s
) newest
ORDER BY bar_timestamp;

-- name: bar_starts
SELECT bar_timestamp
FROM md.intraday_bars
WHERE exchange = %(exchange)s AND symbol = %(symbol)s AND timeframe = %(timeframe)s
  AND bar_timestamp >= %(start)s AND bar_timestamp < %(end)s
ORDER BY bar_timestamp;

-- name: latest_snapshots
-- Per symbol: the latest bar's close, the previous IST day's last close, and the volume
-- traded so far on the latest bar's IST day. One ordered index probe per symbol (LATERAL)
-- instead of a DISTINCT ON over the whole hypertable.
SELECT s.symbol, latest.bar_timestamp, latest.close AS last_price,
       prev.close AS previous_close, day_volume.volume
FROM unnest(%(symbols)s::text[]) AS s (symbol)
CROSS JOIN LATERAL (
    SELECT b.bar_timestamp, b.close
    FROM md.intraday_bars b
    WHERE b.exchange = %(exchange)s AND b.symbol = s.symbol AND b.timeframe = %(timeframe)s
    ORDER BY b.bar_timestamp DESC
    LIMIT 1
) latest
CROSS JOIN LATERAL (
    SELECT date_trunc('day', latest.bar_timestamp AT TIME ZONE 'Asia/Kolkata')
               AT TIME ZONE 'Asia/Kolkata' AS day_start
) d
LEFT JOIN LATERAL (
    SELECT b.close
    FROM md.intraday_bars b
    WHERE b.exchange = %(exchange)s AND b.symbol = s.symbol AND b.timeframe = %(timeframe)s
      AND b.bar_timestamp < d.day_start
    ORDER BY b.bar_timestamp DESC
    LIMIT 1
) prev ON true
CROSS JOIN LATERAL (
    SELECT coalesce(sum(b.volume), 0)::bigint AS volume
    FROM md.intraday_bars b
    WHERE b.exchange = %(exchange)s AND b.symbol = s.symbol AND b.timeframe = %(timeframe)s
      AND b.bar_timestamp >= d.day_start AND b.bar_timestamp <= latest.bar_timestamp
) day_volume;
