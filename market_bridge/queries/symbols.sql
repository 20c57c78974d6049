-- Which symbols the platform knows: listed in md.instruments, or with stored bars or ticks
-- (data can arrive before the first instruments sync, e.g. from a backfill).
-- Two queries: the instruments lookup (a primary-key probe, ~0.2 ms) answers for listed
-- symbols; only the others are looked for in the hypertables, whose query has no time
-- bound and so has to consider every chunk.

-- name: listed_symbols
-- Of the given (exchange, symbol) pairs, those in md.instruments.
SELECT k.exchange, k.symbol
FROM unnest(%(exchanges)s::text[], %(symbols)s::text[]) AS k (exchange, symbol)
WHERE EXISTS (SELECT 1 FROM md.instruments i
              WHERE i.exchange = k.exchange AND i.tradingsymbol = k.symbol);

-- name: stored_symbols
-- Of the given (exchange, symbol) pairs, those with stored bars or ticks.
SELECT k.exchange, k.symbol
FROM unnest(%(exchanges)s::text[], %(symbols)s::text[]) AS k (exchange, symbol)
WHERE EXISTS (SELECT 1 FROM md.intraday_bars b
              WHERE b.exchange = k.exchange AND b.symbol = k.symbol)
   OR EXISTS (SELECT 1 FROM md.tick_data t
              WHERE t.exchange = k.exchange AND t.symbol = k.symbol);
