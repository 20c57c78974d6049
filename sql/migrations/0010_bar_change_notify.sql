-- Announce every change of md.intraday_bars: NOTIFY mb_bars_changed, '<exchange>:<symbol>'
-- per changed row (PostgreSQL sends identical payloads of one transaction once, and only
-- when it commits), '*' after a TRUNCATE. The API's bar-response cache (api/bar_cache.py)
-- LISTENs and drops what a committed write made stale (docs/api.md, "Bar cache").
--
-- Row triggers: TimescaleDB copies them to every chunk, existing and future, so they fire
-- for INSERT (also COPY and INSERT ... ON CONFLICT), UPDATE and DELETE through the
-- hypertable or on a chunk directly. AFTER triggers: a row that ON CONFLICT skipped or left
-- unchanged (DO UPDATE ... WHERE false) announces nothing.
--
-- The notification is sent by the trigger's WHEN condition, which the executor evaluates
-- for each row (about 1 us). pg_notify returns void, never NULL, so the condition is always
-- false: no event is queued and the trigger's function never runs. The same pg_notify in a
-- PL/pgSQL trigger function cost 5-20 us of server CPU a row (+20-35 % on the streaming
-- writer's bar merge, +40 % on a COPY); this form +0-1 % on the merge, +5-13 % on a COPY
-- (docs/api.md, "Bar cache"; bench/api.py --trigger-cost).
--
-- Not announced (no row trigger fires): drop_chunks and the retention policy (the API
-- cache bounds that with a TTL), TRUNCATE of a single chunk, and writes made with
-- session_replication_role = replica.

CREATE FUNCTION md.bars_changed_noop() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Never runs: the triggers' WHEN conditions send the notification and are false.
    RETURN NULL;
END
$$;

CREATE TRIGGER mb_bars_changed_insert
    AFTER INSERT ON md.intraday_bars FOR EACH ROW
    WHEN (pg_notify('mb_bars_changed', NEW.exchange || ':' || NEW.symbol) IS NULL)
    EXECUTE FUNCTION md.bars_changed_noop();

-- An UPDATE that moves a bar to another symbol changes the answers of both.
CREATE TRIGGER mb_bars_changed_update
    AFTER UPDATE ON md.intraday_bars FOR EACH ROW
    WHEN (pg_notify('mb_bars_changed', NEW.exchange || ':' || NEW.symbol) IS NULL
          OR ((OLD.exchange <> NEW.exchange OR OLD.symbol <> NEW.symbol)
              AND pg_notify('mb_bars_changed', OLD.exchange || ':' || OLD.symbol) IS NULL))
    EXECUTE FUNCTION md.bars_changed_noop();

CREATE TRIGGER mb_bars_changed_delete
    AFTER DELETE ON md.intraday_bars FOR EACH ROW
    WHEN (pg_notify('mb_bars_changed', OLD.exchange || ':' || OLD.symbol) IS NULL)
    EXECUTE FUNCTION md.bars_changed_noop();

CREATE FUNCTION md.notify_bars_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mb_bars_changed', '*');  -- everything changed
    RETURN NULL;
END
$$;

CREATE TRIGGER mb_bars_changed_truncate
    AFTER TRUNCATE ON md.intraday_bars FOR EACH STATEMENT
    EXECUTE FUNCTION md.notify_bars_truncated();
