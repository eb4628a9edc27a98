-- Statements for another database a transaction step writes to (``database=``): there,
-- durably keeps only one small table of its own, the checkpoints of those transactions.

-- name: app_database_lock
-- Setup runs under this lock (in one transaction) so that concurrent processes agree.
SELECT pg_advisory_xact_lock(hashtext(%(key)s))

-- name: app_database_schema
CREATE SCHEMA IF NOT EXISTS {schema}

-- name: app_database_table
CREATE TABLE IF NOT EXISTS {schema}.transaction_outputs (
    workflow_id text NOT NULL,
    step        integer NOT NULL,
    output      jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, step)
)

-- name: record_transaction
-- The checkpoint of one transaction step, written in the user's transaction and sent
-- with its COMMIT. When that step already committed (its first run did, or a
-- predecessor's) no row is written and it fails with an error naming it: the COMMIT
-- then rolls back everything this run wrote.
WITH written AS (
    INSERT INTO {schema}.transaction_outputs (workflow_id, step, output)
    VALUES (%(workflow_id)s, %(step)s, %(output)s::jsonb)
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT CASE WHEN count(*) = 1 THEN 1
            ELSE ('durably: checkpoint not written, ' || count(*))::int END AS written
FROM written

-- name: transaction_output
-- What a transaction step committed, if it did.
SELECT output, output::text AS text
FROM {schema}.transaction_outputs
WHERE workflow_id = %(workflow_id)s AND step = %(step)s
