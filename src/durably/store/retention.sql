-- Retention: deleting what finished long ago, in batches that lock little.

-- name: gc_workflows
-- Up to %(batch)s workflows that finished with one of %(statuses)s (of SUCCESS, ERROR,
-- CANCELLED) more than %(age)s seconds ago by the database's clock,
-- oldest first, with their operations, messages, events, streams and watchers. Never
-- an unfinished workflow (DEAD_LETTER is unfinished: it can be resumed), nor a child
-- whose parent has not finished (the parent may still read it). Rows another
-- transaction holds are skipped, and taken by a later batch.
WITH doomed AS (
    SELECT w.id FROM {schema}.workflows w
    WHERE w.status IN ('SUCCESS', 'ERROR', 'CANCELLED') AND w.status = ANY(%(statuses)s::text[])
      AND w.completed_at < clock_timestamp() - make_interval(secs => %(age)s)
      AND (w.parent_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM {schema}.workflows p
            WHERE p.id = w.parent_id AND p.status NOT IN ('SUCCESS', 'ERROR', 'CANCELLED')))
    ORDER BY w.completed_at
    LIMIT %(batch)s
    FOR UPDATE OF w SKIP LOCKED
), operations AS (
    DELETE FROM {schema}.operations WHERE workflow_id IN (SELECT id FROM doomed)
), messages AS (
    DELETE FROM {schema}.messages WHERE workflow_id IN (SELECT id FROM doomed)
), events AS (
    DELETE FROM {schema}.events WHERE workflow_id IN (SELECT id FROM doomed)
), streams AS (
    DELETE FROM {schema}.streams WHERE workflow_id IN (SELECT id FROM doomed)
), watchers AS (
    DELETE FROM {schema}.watchers WHERE workflow_id IN (SELECT id FROM doomed)
), gone AS (
    DELETE FROM {schema}.workflows WHERE id IN (SELECT id FROM doomed) RETURNING 1
)
SELECT count(*) AS deleted FROM gone

-- name: gc_executors
-- Executor rows whose lease ended more than %(age)s seconds ago (released, or their
-- process died)
-- and that no unfinished workflow names as its owner.
WITH gone AS (
    DELETE FROM {schema}.executors e
    WHERE e.heartbeat_at + make_interval(secs => e.lease_seconds)
          < clock_timestamp() - make_interval(secs => %(age)s)
      AND NOT EXISTS (SELECT 1 FROM {schema}.workflows w
                      WHERE w.executor_id = e.id AND w.status = 'PENDING')
    RETURNING 1
)
SELECT count(*) AS deleted FROM gone

-- name: claim_chore
-- The fleet's turn at a periodic chore (a retention sweep): the one caller that finds it
-- due gets a row back and pushes the next turn %(every)s seconds on; everyone else, until
-- then, gets none. A holder that dies mid-chore leaves it to the next turn.
INSERT INTO {schema}.chores AS c (name, due_at)
VALUES (%(name)s, clock_timestamp() + make_interval(secs => %(every)s))
ON CONFLICT (name) DO UPDATE SET due_at = EXCLUDED.due_at
    WHERE c.due_at <= clock_timestamp()
RETURNING c.name
