-- syncpoint PostgreSQL schema, migration 001: runs, tasks, phases, ledger, state, locks.
--
-- "{schema}" stands for the schema name; syncpoint substitutes a quoted identifier. To run this file by
-- hand:   sed 's/{schema}/"crawler"/g' 001_initial.sql | psql -v ON_ERROR_STOP=1 --single-transaction "$URL"
-- Text columns that are sorted use COLLATE "C" (byte order), the order every syncpoint backend returns.

CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {schema}.runs (
    run_id text COLLATE "C" PRIMARY KEY,
    job text COLLATE "C" NOT NULL,
    key text COLLATE "C",
    status text NOT NULL,
    config json NOT NULL,
    config_digest text NOT NULL,
    params json NOT NULL,
    started_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    ended_at timestamptz,
    attempts bigint NOT NULL,
    error text,
    exit_code integer
);
CREATE INDEX IF NOT EXISTS runs_by_job ON {schema}.runs (job, started_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_by_start ON {schema}.runs (started_at DESC, run_id DESC);

CREATE TABLE IF NOT EXISTS {schema}.tasks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    position bigint NOT NULL,
    status text NOT NULL,
    cursor json,
    pages bigint NOT NULL,
    records bigint NOT NULL,
    ok bigint NOT NULL,
    failed bigint NOT NULL,
    total bigint,
    error text,
    retryable boolean NOT NULL,
    started_at timestamptz,
    updated_at timestamptz,
    completed_at timestamptz,
    UNIQUE (run_id, name)
);

CREATE TABLE IF NOT EXISTS {schema}.phases (
    run_id text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    position bigint NOT NULL,
    completed_at timestamptz,
    PRIMARY KEY (run_id, name)
);

-- One row per item ID and task; outcome 0 = ok, 1 = failed (retryable), 2 = failed (permanent);
-- kind 0 = the item ledger, 1 = the watermark's boundary IDs.
CREATE TABLE IF NOT EXISTS {schema}.ledger (
    task_id bigint NOT NULL,
    kind smallint NOT NULL,
    item_id text COLLATE "C" NOT NULL,
    outcome smallint NOT NULL,
    error text,
    PRIMARY KEY (task_id, kind, item_id)
);

CREATE TABLE IF NOT EXISTS {schema}.state (
    job text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value json,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (job, key)
);

-- Who holds a job's advisory lock; trusted only while backend_pid holds that advisory lock (pg_locks).
CREATE TABLE IF NOT EXISTS {schema}.locks (
    job text COLLATE "C" PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    since text NOT NULL,
    run_id text,
    backend_pid integer NOT NULL
);

INSERT INTO {schema}.schema_migrations (version, name) VALUES (1, '001_initial') ON CONFLICT DO NOTHING;
