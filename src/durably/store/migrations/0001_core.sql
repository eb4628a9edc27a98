-- durably core schema: workflows, their recorded operations, and live executors.
-- The schema's quoted name is put in for each schema placeholder before this file runs
-- (never in a comment: a newline in the name would end the comment).

CREATE TABLE {schema}.executors (
    id            text PRIMARY KEY,
    app_name      text,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    lease_seconds double precision NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.workflows (
    id                    text PRIMARY KEY,
    name                  text NOT NULL,
    status                text NOT NULL,
    inputs                jsonb NOT NULL,
    output                jsonb,
    error                 jsonb,
    executor_id           text,
    -- fencing epoch: bumped under the row lock by every change of owner
    epoch                 bigint NOT NULL DEFAULT 1,
    recovery_attempts     integer NOT NULL DEFAULT 0,
    max_recovery_attempts integer NOT NULL,
    parent_id             text,
    parent_step           integer,
    forked_from           text,
    codec                 text NOT NULL DEFAULT 'json',
    created_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at          timestamptz
) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);

-- Recovery and takeover scan only unfinished workflows.
CREATE INDEX workflows_unfinished ON {schema}.workflows (executor_id)
    WHERE status = 'PENDING';
-- Listings filter by status and time.
CREATE INDEX workflows_created ON {schema}.workflows (created_at);
CREATE INDEX workflows_parent ON {schema}.workflows (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE {schema}.operations (
    workflow_id  text NOT NULL,
    step         integer NOT NULL,
    name         text NOT NULL,
    kind         text NOT NULL,
    output       jsonb,
    error        jsonb,
    child_id     text,
    started_at   timestamptz NOT NULL,
    completed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workflow_id, step)
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
