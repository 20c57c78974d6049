-- Exactly-once ingestion: every batch the streaming writer commits records its id in the
-- same transaction. A batch whose commit outcome was unknown (connection lost during
-- COMMIT) or that was spooled to disk is replayed only if its id is absent.
CREATE TABLE md.ingest_batches (
    batch_id UUID PRIMARY KEY,
    kind TEXT NOT NULL,
    rows INTEGER NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ingest_batches_committed_idx ON md.ingest_batches (committed_at);
