-- Which symbols the platform knows: listed in md.instruments, or with stored bars or ticks
-- (data can arrive before the first instruments sync, e.g. from a backfill).

-- name: known_symbols
-- Of the given (exchange, symbol) pairs, those that are known.
SELECT k.exchange, k.symbol
FROM unnest(%(exchanges)s::text[], %(symbols)s::text[]) AS k (exchange, symbol)
WHERE EXISTS (SELECT 1 FROM md.instruments i
              WHERE i.exchange = k.exchange AND i.tradingsymbol = k.symbol)
   OR EXISTS (SELECT 1 FROM md.intraday_bars b
              WHERE b.exchange = k.exchange AND b.symbol = k.symbol)
   OR EXISTS (SELECT 1 FROM md.tick_data t
              WHERE t.exchange = k.exchange AND t.symbol = k.symbol);
