-- Durable queues: limits enforced in the database, across every worker.

ALTER TABLE {schema}.workflows
    ADD COLUMN queue_name    text,
    ADD COLUMN priority      integer,
    ADD COLUMN dedup_key     text,
    ADD COLUMN partition_key text,
    ADD COLUMN debounce_key  text,
    -- a DELAYED workflow becomes claimable at available_at
    ADD COLUMN available_at  timestamptz,
    -- when it was claimed from its queue (rate limits count these)
    ADD COLUMN started_at    timestamptz,
    ADD COLUMN enqueued_at   timestamptz;

-- What can be claimed: unprioritised work first, then by priority, FIFO within each.
CREATE INDEX workflows_queued ON {schema}.workflows
    (queue_name, priority NULLS FIRST, enqueued_at)
    WHERE status IN ('ENQUEUED', 'DELAYED');
-- What runs now, per queue (global and per-worker concurrency).
CREATE INDEX workflows_queue_running ON {schema}.workflows (queue_name, executor_id)
    WHERE status = 'PENDING' AND queue_name IS NOT NULL;
-- Recent starts per queue (rate limits).
CREATE INDEX workflows_queue_started ON {schema}.workflows (queue_name, started_at)
    WHERE started_at IS NOT NULL;
-- A deduplication key is held while its workflow is waiting or running.
CREATE UNIQUE INDEX workflows_dedup ON {schema}.workflows (queue_name, dedup_key)
    WHERE dedup_key IS NOT NULL AND status IN ('ENQUEUED', 'DELAYED', 'PENDING');
-- One waiting run per debounce key.
CREATE UNIQUE INDEX workflows_debounce ON {schema}.workflows (queue_name, debounce_key)
    WHERE debounce_key IS NOT NULL AND status = 'DELAYED';

CREATE TABLE {schema}.queues (
    name                  text PRIMARY KEY,
    concurrency           integer,
    worker_concurrency    integer,
    rate_limit            integer,
    rate_period           double precision,
    priority              boolean NOT NULL DEFAULT false,
    partition_concurrency integer,
    updated_at            timestamptz NOT NULL DEFAULT now()
);
