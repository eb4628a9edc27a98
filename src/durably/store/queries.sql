-- Every statement durably runs, by name. A block starts with "-- name: <name>".
-- {schema} is the app's schema, quoted by psycopg.sql before use.

-- name: insert_workflow
-- Start a workflow owned by this executor; nothing is returned when the ID exists.
INSERT INTO {schema}.workflows
    (id, name, status, inputs, executor_id, max_recovery_attempts, codec)
VALUES (%(id)s, %(name)s, 'PENDING', %(inputs)s::jsonb, %(executor_id)s,
        %(max_recovery_attempts)s, %(codec)s)
ON CONFLICT (id) DO NOTHING
RETURNING epoch

-- name: start_child
-- Start a child workflow and record it in its parent, fenced by the parent's epoch,
-- in one statement: both happen, or (parent no longer ours) neither.
WITH parent AS (
    SELECT id FROM {schema}.workflows
    WHERE id = %(parent_id)s AND epoch = %(epoch)s AND status = 'PENDING'
    FOR SHARE
), child AS (
    INSERT INTO {schema}.workflows
        (id, name, status, inputs, executor_id, max_recovery_attempts, codec,
         parent_id, parent_step)
    SELECT %(id)s, %(name)s, 'PENDING', %(inputs)s::jsonb, %(executor_id)s,
           %(max_recovery_attempts)s, %(codec)s, parent.id, %(step)s
    FROM parent
    ON CONFLICT (id) DO NOTHING
    RETURNING epoch
), op AS (
    INSERT INTO {schema}.operations (workflow_id, step, name, kind, child_id, started_at)
    SELECT parent.id, %(step)s, %(name)s, 'child', %(id)s, clock_timestamp()
    FROM parent
    ON CONFLICT DO NOTHING
    RETURNING step
)
SELECT (SELECT count(*) FROM parent) AS owned,
       (SELECT epoch FROM child) AS child_epoch,
       (SELECT count(*) FROM op) AS recorded

-- name: record_operation
-- Record one finished operation. Fencing: the row is written only while this
-- executor's epoch still owns the workflow; FOR SHARE makes the check and the write
-- one atomic step that a takeover (UPDATE of the workflow row) cannot interleave with.
INSERT INTO {schema}.operations
    (workflow_id, step, name, kind, output, error, child_id, started_at)
SELECT w.id, %(step)s, %(name)s, %(kind)s, %(output)s::jsonb, %(error)s::jsonb,
       %(child_id)s, %(started_at)s
FROM {schema}.workflows w
WHERE w.id = %(workflow_id)s AND w.epoch = %(epoch)s AND w.status = 'PENDING'
FOR SHARE OF w
ON CONFLICT DO NOTHING

-- name: inspect_operation
-- After a fenced write touched no row: who owns the workflow, and what is recorded.
SELECT w.epoch, w.status, o.name, o.kind, o.output, o.error, o.child_id
FROM {schema}.workflows w
LEFT JOIN {schema}.operations o ON o.workflow_id = w.id AND o.step = %(step)s
WHERE w.id = %(workflow_id)s

-- name: finish_workflow
-- Record a workflow's outcome, fenced by its epoch.
UPDATE {schema}.workflows
SET status = %(status)s, output = %(output)s::jsonb, error = %(error)s::jsonb,
    completed_at = clock_timestamp(), updated_at = clock_timestamp()
WHERE id = %(workflow_id)s AND epoch = %(epoch)s AND status = 'PENDING'

-- name: load_operations
-- Everything recorded for a workflow, in one query, for replay.
SELECT step, name, kind, output, error, child_id
FROM {schema}.operations
WHERE workflow_id = %(workflow_id)s
ORDER BY step

-- name: get_workflow
SELECT id, name, status, inputs, output, error, executor_id, epoch, recovery_attempts,
       max_recovery_attempts, parent_id, parent_step, forked_from, codec,
       created_at, updated_at, completed_at
FROM {schema}.workflows
WHERE id = %(workflow_id)s

-- name: get_outcome
SELECT name, status, output, error, recovery_attempts
FROM {schema}.workflows
WHERE id = %(workflow_id)s

-- name: heartbeat
-- Register this executor or renew its lease.
INSERT INTO {schema}.executors (id, app_name, hostname, pid, lease_seconds)
VALUES (%(id)s, %(app_name)s, %(hostname)s, %(pid)s, %(lease_seconds)s)
ON CONFLICT (id) DO UPDATE
SET heartbeat_at = now(), pid = EXCLUDED.pid, hostname = EXCLUDED.hostname,
    lease_seconds = EXCLUDED.lease_seconds

-- name: remove_executor
DELETE FROM {schema}.executors WHERE id = %(id)s

-- name: claim_own
-- Take back this executor's unfinished workflows that are not running in this process:
-- on launch all of them (an older process under the same ID is fenced out by the new
-- epoch); later, those orphaned by a lost database connection or a failed recovery.
UPDATE {schema}.workflows w
SET epoch = w.epoch + 1,
    recovery_attempts = w.recovery_attempts + 1,
    status = CASE WHEN w.recovery_attempts + 1 > w.max_recovery_attempts
                  THEN 'DEAD_LETTER' ELSE w.status END,
    executor_id = %(executor_id)s,
    updated_at = clock_timestamp()
FROM (
    SELECT id FROM {schema}.workflows
    WHERE executor_id = %(executor_id)s AND status = 'PENDING'
      AND name = ANY(%(names)s::text[])
      AND NOT (id = ANY(%(active)s::text[]))
      AND updated_at < clock_timestamp() - make_interval(secs => %(min_age)s)
    ORDER BY created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) mine
WHERE w.id = mine.id
RETURNING w.id, w.name, w.status, w.inputs, w.epoch, w.codec, w.recovery_attempts

-- name: take_over
-- Take unfinished workflows whose executor's lease expired (or whose executor row is
-- gone). The row lock of the UPDATE serialises with fenced writes (FOR SHARE).
UPDATE {schema}.workflows w
SET epoch = w.epoch + 1,
    recovery_attempts = w.recovery_attempts + 1,
    status = CASE WHEN w.recovery_attempts + 1 > w.max_recovery_attempts
                  THEN 'DEAD_LETTER' ELSE w.status END,
    executor_id = %(executor_id)s,
    updated_at = clock_timestamp()
FROM (
    SELECT wf.id FROM {schema}.workflows wf
    LEFT JOIN {schema}.executors e ON e.id = wf.executor_id
    WHERE wf.status = 'PENDING'
      AND wf.executor_id IS DISTINCT FROM %(executor_id)s
      AND wf.name = ANY(%(names)s::text[])
      AND (e.id IS NULL
           OR e.heartbeat_at + make_interval(secs => e.lease_seconds) < now())
    ORDER BY wf.created_at
    LIMIT %(limit)s
    FOR UPDATE OF wf SKIP LOCKED
) expired
WHERE w.id = expired.id
RETURNING w.id, w.name, w.status, w.inputs, w.epoch, w.codec, w.recovery_attempts

-- name: remove_expired_executors
-- Executors silent for ten leases have nothing left to own; drop their rows.
DELETE FROM {schema}.executors
WHERE heartbeat_at + make_interval(secs => lease_seconds * 10) < now()

-- name: list_workflows
SELECT id, name, status, inputs, output, error, executor_id, epoch, recovery_attempts,
       max_recovery_attempts, parent_id, parent_step, forked_from, codec,
       created_at, updated_at, completed_at
FROM {schema}.workflows
WHERE (%(status)s::text[] IS NULL OR status = ANY(%(status)s::text[]))
  AND (%(name)s::text IS NULL OR name = %(name)s)
  AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)
ORDER BY created_at {order}, id {order}
LIMIT %(limit)s OFFSET %(offset)s

-- name: list_operations
SELECT step, name, kind, output, error, child_id, started_at, completed_at
FROM {schema}.operations
WHERE workflow_id = %(workflow_id)s
ORDER BY step

-- name: migrate_lock
-- Serialise migrations of one schema across every process that starts at once.
SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS {schema}

-- name: create_migrations
CREATE TABLE IF NOT EXISTS {schema}.migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: applied_migrations
SELECT version FROM {schema}.migrations

-- name: record_migration
INSERT INTO {schema}.migrations (version, name) VALUES (%(version)s, %(name)s)
