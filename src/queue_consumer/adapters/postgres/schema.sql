-- queue_consumer's PostgreSQL queue: two tables and a version row, in a schema of their own.
--
-- PostgresQueue runs this very file on first use (declare=true, the default), with :"schema"
-- replaced by the schema it was given (queue_consumer unless told otherwise), in one
-- transaction that holds an advisory lock, so that consumers starting at once do not race.
-- Teams that apply migrations themselves run it once and open the queue with declare=false:
--
--     psql -v schema=queue_consumer -v ON_ERROR_STOP=1 -1 -f schema.sql "$DATABASE_URL"
--
-- Every statement is idempotent. Many named queues share the tables (the queue column).

CREATE SCHEMA IF NOT EXISTS :"schema";

-- One row per message waiting or leased. A row is
--   waiting  when lease IS NULL: visible from visible_at on (a delay or a retry backoff);
--   leased   when lease IS NOT NULL and visible_at > now(): visible_at is the lease expiry;
--   expired  when lease IS NOT NULL and visible_at <= now(): its consumer died or stalled,
--            and the next get() leases it again with a fresh token (no rescuer job).
-- All times are the server's clock.
CREATE TABLE IF NOT EXISTS :"schema".messages (
    id          bigserial   PRIMARY KEY,
    queue       text        NOT NULL,
    kind        text        NOT NULL,  -- s (str), b (bytes), j (JSON): how to read body back
    body        bytea       NOT NULL,
    headers     jsonb,                 -- e.g. trace context
    group_key   text,                  -- strict FIFO: one message of a group leased at a time
    attempts    integer     NOT NULL DEFAULT 0,  -- deliveries so far
    visible_at  timestamptz NOT NULL DEFAULT now(),
    lease       uuid,                  -- the current delivery's token; NULL while waiting
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now()
) WITH (
    -- Every message is inserted, updated (leased) and deleted once: the table churns.
    -- Vacuum it after 1% of dead rows (the default waits for 20%), so that get()'s index
    -- scan does not wade through dead tuples; see the README (autovacuum).
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02
);

-- get(): the visible messages of one queue, oldest due first, straight off the index.
CREATE INDEX IF NOT EXISTS messages_due ON :"schema".messages (queue, visible_at, id);

-- get() with message groups: is there an older message of this group? (strict FIFO)
CREATE INDEX IF NOT EXISTS messages_group ON :"schema".messages (queue, group_key, id)
    WHERE group_key IS NOT NULL;

-- Messages that failed max_attempts deliveries; redrive() moves them back.
CREATE TABLE IF NOT EXISTS :"schema".dead_letters (
    id          bigint      PRIMARY KEY,
    queue       text        NOT NULL,
    kind        text        NOT NULL,
    body        bytea       NOT NULL,
    headers     jsonb,
    group_key   text,
    attempts    integer     NOT NULL,
    last_error  text,
    created_at  timestamptz NOT NULL,
    died_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS dead_letters_queue ON :"schema".dead_letters (queue, died_at, id);

-- The layout's version: a queue_consumer that knows an older one refuses to use these tables.
CREATE TABLE IF NOT EXISTS :"schema".schema_version (version integer NOT NULL);
INSERT INTO :"schema".schema_version (version)
    SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM :"schema".schema_version);
