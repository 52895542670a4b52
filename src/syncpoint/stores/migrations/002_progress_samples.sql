-- syncpoint PostgreSQL schema, migration 002: progress samples (the dashboard's history charts).
--
-- At most a bounded number of rows per run (syncpoint.samples.MAX_SAMPLES), one per (run_id, slot); a later
-- sample may take over a slot when the run's set is thinned out. Deleted with the run.

CREATE TABLE IF NOT EXISTS {schema}.samples (
    run_id text COLLATE "C" NOT NULL,
    slot integer NOT NULL,
    at timestamptz NOT NULL,
    items_ok bigint NOT NULL,
    items_failed bigint NOT NULL,
    records bigint NOT NULL,
    pages bigint NOT NULL,
    PRIMARY KEY (run_id, slot)
);

INSERT INTO {schema}.schema_migrations (version, name) VALUES (2, '002_progress_samples') ON CONFLICT DO NOTHING;
