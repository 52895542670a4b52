-- syncpoint PostgreSQL schema, migration 003: task leases for many workers sharing one run
-- (syncpoint.distributed; docs/ARCHITECTURE.md, "Many workers").
--
-- A lease is one task's right to commit. Its epoch (a fencing token) grows by one at every grant; every
-- commit of a leased task names its epoch and checks it in the same transaction (lease_fence below), so a
-- worker that lost its lease — paused, partitioned, presumed dead — writes nothing once another holds it.
-- The lease row is locked by that check until the commit ends, so commits and grants of one task are
-- serialised: a grant waits for an in-flight commit, and a commit after a grant fails.

CREATE TABLE IF NOT EXISTS {schema}.leases (
    run_id text COLLATE "C" NOT NULL,
    task text COLLATE "C" NOT NULL,
    job text COLLATE "C" NOT NULL,
    -- queued: waiting for a worker (queue_job may take it); leased: a worker holds it; finished: no more work
    state text NOT NULL CHECK (state IN ('queued', 'leased', 'finished')),
    epoch bigint NOT NULL DEFAULT 0,
    queue_job bigint,  -- the queue's job that may take the lease now; any other job is stale
    queued_at timestamptz NOT NULL,
    host text,
    pid integer,
    worker text,
    leased_at timestamptz,
    heartbeat_at timestamptz,
    commits bigint NOT NULL DEFAULT 0,
    failures integer NOT NULL DEFAULT 0,  -- attempts that failed with a retryable error
    takeovers integer NOT NULL DEFAULT 0,  -- grants that fenced a holder presumed dead
    stall_timeout double precision,  -- the holder's fleet's: no heartbeat for this long and it is presumed dead
    PRIMARY KEY (run_id, task)
);
-- not on heartbeat_at: every commit refreshes it, and an unindexed column keeps those updates HOT (no index write)
CREATE INDEX IF NOT EXISTS leases_open ON {schema}.leases (job, state) WHERE state <> 'finished';

-- One row per grant: who held which epoch, when it was granted, and its commits (the audit that shows, from
-- the store alone, that no commit of an epoch landed after the next epoch was granted).
CREATE TABLE IF NOT EXISTS {schema}.lease_grants (
    run_id text COLLATE "C" NOT NULL,
    task text COLLATE "C" NOT NULL,
    epoch bigint NOT NULL,
    granted_at timestamptz NOT NULL,
    host text,
    pid integer,
    commits bigint NOT NULL DEFAULT 0,
    last_commit_at timestamptz,
    PRIMARY KEY (run_id, task, epoch)
);

-- The fence, first statement of every commit of a leased task: raises SQLSTATE SPL01 unless the lease is held
-- at p_epoch. p_end: NULL keeps it held; 'queued' hands it back (a new queue job is deferred in the same
-- transaction); 'finished' ends it. p_failed counts a failed attempt. Counts the commit, refreshes the heartbeat.
CREATE OR REPLACE FUNCTION {schema}.lease_fence(p_run text, p_task text, p_epoch bigint, p_end text, p_failed boolean)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    found_epoch bigint;
    found_state text;
    stall double precision;
BEGIN
    UPDATE {schema}.leases
       SET commits = commits + 1, heartbeat_at = clock_timestamp(), state = coalesce(p_end, state),
           queued_at = CASE WHEN p_end = 'queued' THEN clock_timestamp() ELSE queued_at END,
           failures = failures + CASE WHEN p_failed THEN 1 ELSE 0 END
     WHERE run_id = p_run AND task = p_task AND epoch = p_epoch AND state = 'leased'
    RETURNING stall_timeout INTO stall;
    IF NOT FOUND THEN
        SELECT epoch, state INTO found_epoch, found_state FROM {schema}.leases WHERE run_id = p_run AND task = p_task;
        RAISE EXCEPTION USING ERRCODE = 'SPL01',
            MESSAGE = format('lost the lease on task %s of run %s: this worker holds epoch %s, the lease is %s at epoch %s',
                             p_task, p_run, p_epoch, coalesce(found_state, 'gone'), coalesce(found_epoch::text, '-'));
    END IF;
    UPDATE {schema}.lease_grants SET commits = commits + 1, last_commit_at = clock_timestamp()
     WHERE run_id = p_run AND task = p_task AND epoch = p_epoch;
    -- the lease row stays locked until this transaction ends: a worker paused in the middle of it (SIGSTOP,
    -- a partition) must not keep its successor waiting, so the server ends such a session after the stall
    -- timeout (this transaction only)
    IF stall IS NOT NULL THEN
        PERFORM set_config('idle_in_transaction_session_timeout', greatest(1000, (stall * 1000)::bigint)::text, true);
    END IF;
    RETURN true;
END;
$$;

-- After a lease finished: end the run if none of its leases is open, exactly once (the run row is locked, and
-- only a running run is ended). Failed when a task failed with a retryable error after its last attempt;
-- completed otherwise — permanent failures are counted, not fatal, as on one machine (syncpoint.failures).
CREATE OR REPLACE FUNCTION {schema}.finish_run_if_done(p_run text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    n_failed bigint;
    n_tasks bigint;
    ended text;
BEGIN
    PERFORM 1 FROM {schema}.runs WHERE run_id = p_run AND status = 'running' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM {schema}.leases WHERE run_id = p_run AND state <> 'finished') THEN
        RETURN NULL;
    END IF;
    SELECT count(*) FILTER (WHERE status = 'failed' AND retryable), count(*) INTO n_failed, n_tasks
      FROM {schema}.tasks WHERE run_id = p_run;
    ended := CASE WHEN n_failed > 0 THEN 'failed' ELSE 'completed' END;
    UPDATE {schema}.runs
       SET status = ended, exit_code = CASE WHEN n_failed > 0 THEN 1 ELSE 0 END,
           ended_at = clock_timestamp(), updated_at = clock_timestamp(),
           error = CASE WHEN n_failed > 0
                        THEN format('%s of %s task(s) failed with retryable errors after their last attempt; '
                                    'see syncpoint runs show %s', n_failed, n_tasks, p_run)
                   END
     WHERE run_id = p_run;
    RETURN ended;
END;
$$;

INSERT INTO {schema}.schema_migrations (version, name) VALUES (3, '003_leases') ON CONFLICT DO NOTHING;
