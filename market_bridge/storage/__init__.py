"""Writing market data to TimescaleDB: batched, binary COPY for ticks, idempotent upserts
for bars, and no data lost when the database goes away (memory, then a disk spool)."""
