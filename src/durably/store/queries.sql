-- Every statement durably runs, by name. A block starts with "-- name: <name>".
-- The schema placeholder is the app's schema, quoted by psycopg.sql before use.
--
-- A workflow found by its ID tests its status as "(status || '') = 'PENDING'", which no
-- index can serve: a plain "status = 'PENDING'" lets the planner walk a status index
-- instead of the primary key whenever the statistics were taken while few workflows
-- were PENDING, and then every checkpoint reads every unfinished workflow's entry
-- (6.5 ms a checkpoint with 100,000 asleep, against 0.03 ms by the key). The same goes
-- for queues.sql.

-- name: insert_workflow
-- Start a workflow owned by this executor; nothing is returned when the ID exists.
-- Retried after a lost reply (retry = true), it also returns the row its first attempt
-- made, found by its token, while nobody else has claimed it since.
WITH ins AS (
    INSERT INTO {schema}.workflows
        (id, name, status, inputs, executor_id, max_recovery_attempts, codec, timeout_seconds,
         deadline, claim_token, app_version)
    VALUES (%(id)s, %(name)s, 'PENDING', %(inputs)s::jsonb, %(executor_id)s,
            %(max_recovery_attempts)s, %(codec)s, %(timeout)s::float8,
            clock_timestamp() + make_interval(secs => %(timeout)s::float8), %(token)s,
            %(app_version)s)
    ON CONFLICT (id) DO NOTHING
    RETURNING epoch, deadline
)
SELECT epoch, deadline FROM ins
UNION ALL
SELECT epoch, deadline FROM {schema}.workflows
WHERE %(retry)s AND id = %(id)s AND claim_token = %(token)s AND (status || '') = 'PENDING'
  AND executor_id = %(executor_id)s

-- name: insert_workflows
-- insert_workflow for many starts at once (a group-commit batch); returns the rows made.
INSERT INTO {schema}.workflows
    (id, name, status, inputs, executor_id, max_recovery_attempts, codec, timeout_seconds,
     deadline, claim_token, app_version)
SELECT u.id, u.name, 'PENDING', u.inputs::jsonb, u.executor_id, u.max_recovery_attempts,
       u.codec, u.timeout, clock_timestamp() + make_interval(secs => u.timeout), u.token,
       u.app_version
FROM json_to_recordset(%(rows)s::json)
     AS u(id text, name text, inputs text, executor_id text, max_recovery_attempts int,
          codec text, timeout float8, token text, app_version text)
ON CONFLICT (id) DO NOTHING
RETURNING id, epoch, deadline

-- name: start_child
-- Start a child workflow and record it in its parent, fenced by the parent's epoch,
-- in one statement: both happen, or (parent no longer ours) neither. The child's deadline
-- is its own timeout or its parent's deadline, whichever comes first.
WITH parent AS (
    SELECT id, deadline FROM {schema}.workflows
    WHERE id = %(parent_id)s AND epoch = %(epoch)s AND epoch >= {fragment_epoch_floor} AND (status || '') = 'PENDING'
    FOR SHARE
), child AS (
    INSERT INTO {schema}.workflows
        (id, name, status, inputs, executor_id, max_recovery_attempts, codec,
         parent_id, parent_step, timeout_seconds, deadline, claim_token, app_version)
    SELECT %(id)s, %(name)s, 'PENDING', %(inputs)s::jsonb, %(executor_id)s,
           %(max_recovery_attempts)s, %(codec)s, parent.id, %(step)s, %(timeout)s::float8,
           LEAST(parent.deadline,
                 clock_timestamp() + make_interval(secs => %(timeout)s::float8)),
           %(token)s, %(app_version)s
    FROM parent
    ON CONFLICT (id) DO NOTHING
    RETURNING epoch, deadline
), earlier AS (
    -- a retry after a lost reply: the child its first attempt made, if still unclaimed
    SELECT epoch, deadline FROM {schema}.workflows
    WHERE %(retry)s AND id = %(id)s AND claim_token = %(token)s AND (status || '') = 'PENDING'
      AND executor_id = %(executor_id)s
), op AS (
    INSERT INTO {schema}.operations (workflow_id, step, name, kind, child_id, started_at, epoch)
    SELECT parent.id, %(step)s, %(name)s, 'child', %(id)s, clock_timestamp(), %(epoch)s
    FROM parent
    ON CONFLICT DO NOTHING
    RETURNING step
)
SELECT (SELECT count(*) FROM parent) AS owned,
       coalesce((SELECT epoch FROM child), (SELECT epoch FROM earlier)) AS child_epoch,
       (SELECT count(*) FROM op) AS recorded,
       coalesce((SELECT deadline FROM child), (SELECT deadline FROM earlier))
           AS child_deadline

-- name: record_operation
-- Record one finished operation. Fencing: the row is written only while this
-- executor's epoch still owns the workflow; FOR SHARE makes the check and the write
-- one atomic step that a takeover (UPDATE of the workflow row) cannot interleave with.
INSERT INTO {schema}.operations
    (workflow_id, step, name, kind, output, error, child_id, started_at, epoch, attempts)
SELECT w.id, %(step)s, %(name)s, %(kind)s, %(output)s::jsonb, %(error)s::jsonb,
       %(child_id)s, %(started_at)s, w.epoch, %(attempts)s::int
FROM {schema}.workflows w
WHERE w.id = %(workflow_id)s AND w.epoch = %(epoch)s AND w.epoch >= {fragment_epoch_floor} AND (w.status || '') = 'PENDING'
FOR SHARE OF w
ON CONFLICT DO NOTHING

-- name: record_transaction_operation
-- record_operation for a transaction step, written in the user's transaction and sent
-- together with its COMMIT: when it writes no row (fenced, or already recorded) it fails
-- with an error naming it, which turns that COMMIT into a rollback of everything.
WITH written AS (
    INSERT INTO {schema}.operations
        (workflow_id, step, name, kind, output, error, child_id, started_at, epoch, attempts)
    SELECT w.id, %(step)s, %(name)s, %(kind)s, %(output)s::jsonb, NULL, NULL,
           %(started_at)s, w.epoch, %(attempts)s::int
    FROM {schema}.workflows w
    WHERE w.id = %(workflow_id)s AND w.epoch = %(epoch)s AND w.epoch >= {fragment_epoch_floor} AND (w.status || '') = 'PENDING'
    FOR SHARE OF w
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT CASE WHEN count(*) = 1 THEN 1
            ELSE ('durably: checkpoint not written, ' || count(*))::int END AS written
FROM written

-- name: record_operations
-- record_operation for many workflows at once (a group-commit batch), with the same
-- fencing; returns the rows written. Each workflow is looked up by its primary key, one
-- at a time (LATERAL; a subquery that locks is never flattened into a join): a join may
-- be planned as a hash of every PENDING workflow, which costs each batch time in
-- proportion to all the work in flight and asleep.
INSERT INTO {schema}.operations
    (workflow_id, step, name, kind, output, error, child_id, started_at, epoch, attempts)
SELECT u.workflow_id, u.step, u.name, u.kind, u.output::jsonb, u.error::jsonb, u.child_id,
       u.started_at, w.epoch, u.attempts
FROM json_to_recordset(%(rows)s::json)
     AS u(workflow_id text, epoch bigint, step int, name text, kind text, output text,
          error text, child_id text, started_at timestamptz, attempts int)
CROSS JOIN LATERAL (
    SELECT w.epoch FROM {schema}.workflows w
    WHERE w.id = u.workflow_id AND w.epoch = u.epoch AND w.epoch >= {fragment_epoch_floor}
      AND (w.status || '') = 'PENDING'
    FOR SHARE
) w
ON CONFLICT DO NOTHING
RETURNING workflow_id, step

-- name: inspect_operation
-- After a fenced write touched no row: who owns the workflow, and what is recorded.
SELECT w.epoch, w.status, o.name, o.kind, o.output, o.error, o.child_id
FROM {schema}.workflows w
LEFT JOIN {schema}.operations o ON o.workflow_id = w.id AND o.step = %(step)s
WHERE w.id = %(workflow_id)s

-- name: load_operations_many
-- Every operation recorded for a batch of workflows, in one query, for replay.
SELECT workflow_id, step, name, kind, output, error, child_id, started_at, completed_at,
       attempts
FROM {schema}.operations
WHERE workflow_id = ANY(%(ids)s::text[])
ORDER BY workflow_id, step

-- name: get_outcome
SELECT name, status, output, error, recovery_attempts, epoch
FROM {schema}.workflows
WHERE id = %(workflow_id)s

-- name: fragment_wal_timeline
-- (A fragment.) The WAL timeline the server writes on: the first 8 hex digits of the
-- current WAL file's name (a promoted standby writes on a new one).
('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint

-- name: fragment_epoch_floor
-- (A fragment.) The lowest epoch of the server's WAL timeline: (timeline - 1) * 2^32, so 0
-- on timeline 1 and above every epoch of earlier timelines on a promoted standby (which
-- writes on timeline 2, 3, ...). Workflows made on a timeline start at its floor
-- (migration 0016), claims hand out epochs above it (fragment_next_epoch), and every
-- checkpoint is fenced by it: a run that claimed its workflow before a failover is
-- fenced out on the new primary even when the claim itself was replicated, because the
-- checkpoints it wrote just before the failover may have been lost with the old
-- primary; writing on would leave a hole in its step list. Its workflow is claimed anew
-- (claim_failed_over) and replays from what the new primary holds.
(({fragment_wal_timeline} - 1) << 32)

-- name: fragment_next_epoch
-- (A fragment.) The epoch of a claim: the next one, and never below the timeline's floor
-- (fragment_epoch_floor): a failover to a standby that lagged loses the last claims, and
-- with them the epochs they handed out; a claim on the new timeline never hands one out
-- again. On timeline 1 it is always epoch + 1.
greatest(w.epoch + 1, {fragment_epoch_floor})

-- name: fragment_claimed_before
-- (A fragment, placed into the claims below.) Ends a claim whose CTE ``claimed`` took
-- workflows: on a retry after a lost reply it also returns what the first attempt of the
-- same statement (same token) claimed, if that is still ours.
UNION ALL
SELECT id, name, status, inputs, epoch, codec, recovery_attempts, deadline, queue_name, NULL
FROM {schema}.workflows
WHERE %(retry)s AND claim_token = %(token)s AND status = 'PENDING'
  AND executor_id = %(executor_id)s AND id NOT IN (SELECT id FROM claimed)

-- name: fragment_queue_channel
-- (A fragment.) The channel on which work put on the queue ``queue_name`` is announced:
-- the schema's channel, '_' and 16 hex digits of the name's SHA-256 (as
-- store.notifications.queue_channel). Only the processes serving the queue listen to it.
(%(channel)s || '_' || left(encode(sha256(convert_to(queue_name, 'UTF8')), 'hex'), 16))

-- name: fragment_claim_returning
-- (A fragment.) What a claim of workflows returns (store.rows.Claimed); work put back
-- on its queue notifies the queue's workers.
RETURNING w.id, w.name, w.status, w.inputs, w.epoch, w.codec, w.recovery_attempts,
          w.deadline, w.queue_name,
          CASE WHEN w.status = 'ENQUEUED'
               THEN pg_notify({fragment_queue_channel}, {kind_queued} || w.queue_name)
          END AS notified

-- name: fragment_own_pending
-- (A fragment.) This executor's unfinished workflows of the names and versions it runs:
-- what its own recovery and a failover's claims take.
executor_id = %(executor_id)s AND status = 'PENDING'
  AND name = ANY(%(names)s::text[])
  AND (%(versions)s::text[] IS NULL OR app_version IS NULL
       OR app_version = ANY(%(versions)s::text[]))

-- name: timeline
-- The database's time, and the WAL timeline the server writes on (the first 8 hex digits
-- of the current WAL file's name): a promoted standby writes on a new timeline, so a
-- change across an outage means a failover. NULL on a standby.
SELECT clock_timestamp() AS now,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE {fragment_wal_timeline}
       END AS timeline,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE {fragment_epoch_floor}
       END AS epoch_floor

-- name: heartbeat
-- Register this executor or renew its lease, and say in the same round trip what is
-- due for it: the next parked workflow of its names to wake, the next deadline, the next
-- schedule tick, which of its queues hold ready work, whether an expired executor left
-- work to take over, and which names of waiting work (queued on its queues, or parked)
-- neither it nor any live executor registers. An idle worker sends nothing else
-- (notifications bring work forward between beats); each answer is an index probe.
-- The row records the names and queues this executor serves. It is written only while
-- it is this engine's (same incarnation), its holder's lease has expired, or its holder
-- was found gone (%(replaces)s names that holder's incarnation); otherwise nothing is
-- written, registered is false and the holder_* columns say who holds the ID.
WITH beat AS (
    INSERT INTO {schema}.executors AS e
        (id, app_name, hostname, pid, lease_seconds, incarnation, pid_space, names, queues,
         worker_clock, app_version, recover_versions)
    VALUES (%(id)s, %(app_name)s, %(hostname)s, %(pid)s, %(lease_seconds)s, %(incarnation)s,
            %(pid_space)s, %(names)s::text[], %(queues)s::text[],
            %(worker_clock)s::timestamptz, %(app_version)s, %(versions)s::text[])
    ON CONFLICT (id) DO UPDATE
    SET heartbeat_at = now(), app_name = EXCLUDED.app_name, pid = EXCLUDED.pid,
        hostname = EXCLUDED.hostname, lease_seconds = EXCLUDED.lease_seconds,
        incarnation = EXCLUDED.incarnation, pid_space = EXCLUDED.pid_space,
        names = EXCLUDED.names, queues = EXCLUDED.queues,
        app_version = EXCLUDED.app_version, recover_versions = EXCLUDED.recover_versions,
        -- the worker's clock as it sent this beat (doctor's clock skew, migration 0011)
        worker_clock = EXCLUDED.worker_clock
    WHERE e.incarnation = EXCLUDED.incarnation
       OR e.incarnation = %(replaces)s
       OR e.heartbeat_at + make_interval(secs => e.lease_seconds) < now()
    RETURNING id
), holder AS (
    SELECT hostname, pid, pid_space, incarnation,
           date_part('epoch', now() - heartbeat_at) AS age,
           date_part('epoch', heartbeat_at + make_interval(secs => lease_seconds) - now())
               AS expires_in
    FROM {schema}.executors
    WHERE id = %(id)s AND NOT EXISTS (SELECT 1 FROM beat)
)
SELECT
    (SELECT count(*) FROM beat) > 0 AS registered,
    holder.hostname AS holder_host, holder.pid AS holder_pid,
    holder.pid_space AS holder_pid_space, holder.incarnation AS holder_incarnation,
    holder.age AS holder_age, holder.expires_in AS holder_expires_in,
    (SELECT min(wake_at) FROM {schema}.workflows
     WHERE status = 'PENDING' AND executor_id IS NULL
       AND name = ANY(%(names)s::text[])
       -- (versions: those of work this executor recovers, docs/upgrades.md)
       AND (%(versions)s::text[] IS NULL OR app_version IS NULL
            OR app_version = ANY(%(versions)s::text[]))) AS next_wake,
    (SELECT min(deadline) FROM {schema}.workflows
     WHERE status = 'PENDING' AND deadline IS NOT NULL) AS next_deadline,
    (SELECT min(next_tick) FROM {schema}.schedules
     WHERE NOT paused AND workflow_name = ANY(%(names)s::text[])) AS next_tick,
    ARRAY(SELECT q FROM unnest(%(queues)s::text[]) AS q
          WHERE EXISTS (SELECT 1 FROM {schema}.workflows
                        WHERE queue_name = q AND status IN ('ENQUEUED', 'DELAYED')
                          AND (available_at IS NULL OR available_at <= clock_timestamp())
                          AND name = ANY(%(names)s::text[])
                          AND (%(versions)s::text[] IS NULL OR app_version IS NULL
                               OR app_version = ANY(%(versions)s::text[])))) AS ready_queues,
    EXISTS (SELECT 1 FROM {schema}.executors e
            WHERE e.id <> %(id)s
              AND e.heartbeat_at + make_interval(secs => e.lease_seconds) < now()
              AND EXISTS (SELECT 1 FROM {schema}.workflows w
                          WHERE w.executor_id = e.id AND w.status = 'PENDING'
                            AND w.name = ANY(%(names)s::text[])
                            AND (%(versions)s::text[] IS NULL OR w.app_version IS NULL
                                 OR w.app_version = ANY(%(versions)s::text[])))) AS expired,
    clock_timestamp() AS now,
    -- the WAL timeline (see timeline): a beat that finds it moved makes the worker check
    -- for a failover even when none of its statements failed across it
    {fragment_wal_timeline} AS timeline
FROM (SELECT 1) AS one
LEFT JOIN holder ON true

-- name: strangers
-- Names of waiting work this executor sees but cannot run, and no live executor would:
-- queued on one of its queues under a name no live executor serves there, or parked
-- under a name no live executor registers. It reads all waiting work: run rarely.
WITH live AS MATERIALIZED (
    SELECT names, queues FROM {schema}.executors
    WHERE heartbeat_at + make_interval(secs => lease_seconds) >= now()
), waiting AS (
    SELECT DISTINCT name, queue_name, status = 'PENDING' AS parked
    FROM {schema}.workflows
    WHERE (status IN ('ENQUEUED', 'DELAYED') AND queue_name = ANY(%(queues)s::text[]))
       OR (status = 'PENDING' AND executor_id IS NULL)
)
SELECT DISTINCT s.name FROM waiting s
WHERE NOT s.name = ANY(%(names)s::text[])
  AND NOT EXISTS (SELECT 1 FROM live
                  WHERE s.name = ANY(live.names) AND (s.parked OR s.queue_name = ANY(live.queues)))
ORDER BY s.name

-- name: remove_executor
-- Only this engine's row: a process whose ID was taken over leaves the new holder's.
DELETE FROM {schema}.executors WHERE id = %(id)s AND incarnation = %(incarnation)s

-- name: fragment_progressed
-- (A fragment.) Whether the workflow recorded an operation since its row last changed
-- (its last claim, at the latest): a recovery after progress is not one more attempt of
-- a workflow that keeps killing its worker.
EXISTS (SELECT 1 FROM {schema}.operations o
        WHERE o.workflow_id = w.id AND o.completed_at > w.updated_at)

-- name: fragment_recovery_set
-- What every recovery claim sets: a new epoch and attempt (dead-lettered past the attempts
-- allowed). Attempts count recoveries in a row without progress: a workflow that records
-- a step between them starts counting again at 1, so a job that runs for weeks across
-- deploys, failovers and crashes is never set aside for having been recovered often.
-- Queued work goes back on its queue, keeping its place, so that it is claimed again
-- within the queue's limits by a worker that listens to that queue; the statement says
-- who owns the rest.
claim_token = %(token)s, epoch = {fragment_next_epoch},
recovery_attempts = CASE WHEN {fragment_progressed} THEN 1 ELSE w.recovery_attempts + 1 END,
-- work recorded before versions existed takes the version of the code that recovers it
app_version = coalesce(w.app_version, %(app_version)s),
status = CASE WHEN NOT {fragment_progressed}
                   AND w.recovery_attempts + 1 > w.max_recovery_attempts THEN 'DEAD_LETTER'
              WHEN w.queue_name IS NOT NULL THEN 'ENQUEUED'
              ELSE w.status END,
updated_at = clock_timestamp()

-- name: claim_own
-- On launch: take back this executor's unfinished workflows (an older process still
-- running under the same ID is fenced out by the new epoch), oldest first, in batches.
-- A batch starts after the last row of the batch before it (%(after)s: its IDs; none
-- for the first): the rows before that were claimed already, and skipping them by the
-- index keeps every batch's cost its own whatever the backlog's length. A row skipped
-- because it was locked is found by a last pass from the start (runtime.recovery).
WITH previous AS MATERIALIZED (
    -- One primary-key lookup per ID: the LIMIT keeps each a lookup of its own. As one
    -- "id = ANY(...)" scan it may be planned as a walk of workflows_created (with the
    -- ORDER BY below in the same query) or, by PostgreSQL 15, of the whole table.
    SELECT p.created_at, p.id
    FROM unnest(%(after)s::text[]) AS a(id)
    CROSS JOIN LATERAL (
        SELECT created_at, id FROM {schema}.workflows WHERE id = a.id LIMIT 1
    ) p
), after AS (
    SELECT created_at, id FROM previous ORDER BY created_at DESC, id DESC LIMIT 1
), claimed AS (
    UPDATE {schema}.workflows w
    SET {fragment_recovery_set},
        executor_id = CASE WHEN w.queue_name IS NULL THEN %(executor_id)s END
    -- by primary key (a join with the batch may be planned as a scan of the whole table)
    WHERE w.id = ANY(ARRAY(
        -- updated before this launch began: neither claimed by an earlier batch of it
        -- nor started by this process since
        SELECT id FROM {schema}.workflows
        WHERE {fragment_own_pending}
          AND updated_at < %(before)s
          AND (created_at, id) > (coalesce((SELECT created_at FROM after), '-infinity'),
                                  coalesce((SELECT id FROM after), ''))
        ORDER BY created_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ))
    {fragment_claim_returning}
)
SELECT * FROM claimed
{fragment_claimed_before}

-- name: claim_abandoned
-- Take back workflows this process itself left unfinished (a database outage outlasted
-- its retries, or a recovery failed), only if nobody took them since (same epoch).
WITH claimed AS (
    UPDATE {schema}.workflows w
    SET {fragment_recovery_set},
        executor_id = CASE WHEN w.queue_name IS NULL THEN w.executor_id END
    FROM unnest(%(ids)s::text[], %(epochs)s::bigint[]) AS a(id, epoch)
    WHERE w.id = a.id AND w.epoch = a.epoch AND w.executor_id = %(executor_id)s
      AND (w.status || '') = 'PENDING'
      AND (%(versions)s::text[] IS NULL OR w.app_version IS NULL
           OR w.app_version = ANY(%(versions)s::text[]))
    {fragment_claim_returning}
)
SELECT * FROM claimed
{fragment_claimed_before}

-- name: claim_failed_over
-- After a failover (the server's WAL timeline moved on): take back every unfinished
-- workflow of this executor whose epoch is from an earlier timeline, also those its
-- runs hold now. A standby that had not received the last commits loses outcomes, parks
-- and checkpoints this process wrote; what the process remembers of such a run may be
-- more than the new primary has, so it replays from the new primary's record (the runs
-- going here are fenced out by the timeline's floor). Work started or claimed on the new
-- timeline has an epoch at or above the floor: its run read the new primary and goes on.
-- They stay this executor's (queued work too: it ran here, and runs here again once the
-- older run here has stopped), and no recovery attempt is counted: nothing crashed.
-- Oldest first, in batches; a claimed row is above the floor, so no batch takes what an
-- earlier one claimed. A row that a run's write holds locked is waited for, not
-- skipped: a batch that comes back short must mean that none is left.
WITH claimed AS (
    UPDATE {schema}.workflows w
    SET claim_token = %(token)s, epoch = {fragment_next_epoch},
        app_version = coalesce(w.app_version, %(app_version)s),
        updated_at = clock_timestamp()
    WHERE w.id = ANY(ARRAY(
        SELECT id FROM {schema}.workflows
        WHERE {fragment_own_pending}
          AND epoch < {fragment_epoch_floor}
        ORDER BY created_at, id
        LIMIT %(limit)s
        FOR UPDATE
    ))
    {fragment_claim_returning}
)
SELECT * FROM claimed
{fragment_claimed_before}

-- name: release_executor
-- At shutdown, once this executor's runs have finished or been given up: its lease ends
-- now, as if it had expired, so that the next heartbeat of every other executor reports
-- its unfinished workflows (the survey's "expired") and takes them over at once instead
-- of after the lease. Returns how many it leaves unfinished (with none, the row can go);
-- no row when another process holds the executor ID now (its row is left alone).
UPDATE {schema}.executors e
SET heartbeat_at = now() - make_interval(secs => e.lease_seconds) - interval '1 second'
WHERE e.id = %(id)s AND e.incarnation = %(incarnation)s
RETURNING (SELECT count(*) FROM {schema}.workflows w
           WHERE w.executor_id = e.id AND w.status = 'PENDING')::int AS unfinished

-- name: take_over
-- Take unfinished workflows whose executor's lease expired (or whose executor row is
-- gone). The row lock of the UPDATE serialises with fenced writes (FOR SHARE).
WITH claimed AS (
    UPDATE {schema}.workflows w
    SET {fragment_recovery_set},
        executor_id = CASE WHEN w.queue_name IS NULL THEN %(executor_id)s END
    FROM (
        SELECT wf.id FROM {schema}.workflows wf
        LEFT JOIN {schema}.executors e ON e.id = wf.executor_id
        WHERE wf.status = 'PENDING'
          AND wf.executor_id IS NOT NULL AND wf.executor_id <> %(executor_id)s
          AND wf.name = ANY(%(names)s::text[])
          AND (%(versions)s::text[] IS NULL OR wf.app_version IS NULL
               OR wf.app_version = ANY(%(versions)s::text[]))
          AND (e.id IS NULL
               OR e.heartbeat_at + make_interval(secs => e.lease_seconds) < now())
          -- only an executor whose own lease is live takes over (by the database's
          -- clock): two that both lost the database must not swap workflows back and forth
          AND EXISTS (SELECT 1 FROM {schema}.executors me
                      WHERE me.id = %(executor_id)s
                        AND me.heartbeat_at + make_interval(secs => me.lease_seconds) >= now())
        ORDER BY wf.created_at
        LIMIT %(limit)s
        FOR UPDATE OF wf SKIP LOCKED
    ) expired
    WHERE w.id = expired.id
    {fragment_claim_returning}
)
SELECT * FROM claimed
{fragment_claimed_before}

-- name: fragment_name_equal
(%(name)s::text IS NULL OR name = %(name)s)

-- name: fragment_name_range
name >= %(name)s AND name <= %(name)s

-- name: fragment_queue_equal
(%(queue)s::text IS NULL OR queue_name = %(queue)s)

-- name: fragment_queue_range
queue_name >= %(queue)s AND queue_name <= %(queue)s

-- name: list_workflows
-- served: whether a live executor registers the workflow's name (and, for queued work,
-- listens to its queue); the live executors are read once, not per row.
-- {name_is}, {queue_is} and {lead} make a filter on the name, the queue or both (and no
-- status) read its own index, in order (the first two are fragment_name_equal or
-- fragment_name_range, fragment_queue_equal or fragment_queue_range; a fragment placed
-- inside a line carries no comment). PostgreSQL otherwise often walks workflows_created
-- newest first, filtering, on the assumption that the name's rows are spread evenly over
-- time; for a name that has not run lately that walk reads every newer row (a million,
-- at a million rows). Written as a range (name >= x AND name <= x), the filter is not
-- folded into a constant, so an ORDER BY that starts with it is served by its index only.
WITH live AS MATERIALIZED (
    SELECT names, queues, recover_versions FROM {schema}.executors
    WHERE heartbeat_at + make_interval(secs => lease_seconds) >= now()
)
SELECT id, name, status, inputs, output, error, executor_id, epoch, recovery_attempts,
       max_recovery_attempts, parent_id, parent_step, forked_from, codec,
       created_at, updated_at, completed_at,
       EXISTS (SELECT 1 FROM live
               WHERE w.name = ANY(live.names)
                 AND (w.queue_name IS NULL OR w.queue_name = ANY(live.queues))
                 AND (w.app_version IS NULL OR live.recover_versions IS NULL
                      OR w.app_version = ANY(live.recover_versions))) AS served,
       queue_name,
       app_version
FROM {schema}.workflows w
WHERE (%(status)s::text[] IS NULL OR status = ANY(%(status)s::text[]))
  -- one status alone is also compared as a value: an index on (status, created_at)
  -- then yields the rows in order (it cannot for = ANY of an array)
  AND (%(one_status)s::text IS NULL OR status = %(one_status)s)
  AND {name_is}
  AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)
  AND {queue_is}
  -- keyset paging: the rows after a cursor in the listing's order (one of the two is set)
  AND (%(before_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(before_at)s::timestamptz, %(before_id)s::text))
  AND (%(after_at)s::timestamptz IS NULL
       OR (created_at, id) > (%(after_at)s::timestamptz, %(after_id)s::text))
  AND (%(app_version)s::text IS NULL OR app_version = %(app_version)s)
ORDER BY {lead}created_at {order}, id {order}
LIMIT %(limit)s OFFSET %(offset)s

-- name: list_workflows_statuses
-- The listing for several statuses: each status's first rows come from its own range
-- of workflows_status_created, in order, and are merged (with = ANY of the statuses the
-- index cannot give them in time order, so the listing would walk workflows_created and
-- skip the rows of every other status).
WITH live AS MATERIALIZED (
    SELECT names, queues, recover_versions FROM {schema}.executors
    WHERE heartbeat_at + make_interval(secs => lease_seconds) >= now()
), picked AS (
    SELECT p.* FROM unnest(%(status)s::text[]) AS s(status)
    CROSS JOIN LATERAL (
        SELECT * FROM {schema}.workflows w
        -- a range, and first in the order: read by workflows_status_created (as above)
        WHERE w.status >= s.status AND w.status <= s.status
          AND (%(name)s::text IS NULL OR name = %(name)s)
          AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))
          AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s)
          AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)
          AND (%(queue)s::text IS NULL OR queue_name = %(queue)s)
          AND (%(before_at)s::timestamptz IS NULL
               OR (created_at, id) < (%(before_at)s::timestamptz, %(before_id)s::text))
          AND (%(after_at)s::timestamptz IS NULL
               OR (created_at, id) > (%(after_at)s::timestamptz, %(after_id)s::text))
          AND (%(app_version)s::text IS NULL OR app_version = %(app_version)s)
        ORDER BY status {order}, created_at {order}, id {order}
        LIMIT %(limit)s::bigint + %(offset)s::bigint
    ) p
)
SELECT id, name, status, inputs, output, error, executor_id, epoch, recovery_attempts,
       max_recovery_attempts, parent_id, parent_step, forked_from, codec,
       created_at, updated_at, completed_at,
       EXISTS (SELECT 1 FROM live
               WHERE w.name = ANY(live.names)
                 AND (w.queue_name IS NULL OR w.queue_name = ANY(live.queues))
                 AND (w.app_version IS NULL OR live.recover_versions IS NULL
                      OR w.app_version = ANY(live.recover_versions))) AS served,
       queue_name,
       app_version
FROM picked w
ORDER BY created_at {order}, id {order}
LIMIT %(limit)s OFFSET %(offset)s

-- name: served
-- Whether a live executor (lease not expired) registers this workflow name and, for
-- work on a queue, listens to that queue.
SELECT EXISTS (
    SELECT 1 FROM {schema}.executors
    WHERE heartbeat_at + make_interval(secs => lease_seconds) >= now()
      AND %(name)s = ANY(names)
      AND (%(queue)s::text IS NULL OR %(queue)s = ANY(queues))
      AND (%(version)s::text IS NULL OR recover_versions IS NULL
           OR %(version)s = ANY(recover_versions))
) AS served

-- name: list_operations
SELECT workflow_id, step, name, kind, output, error, child_id, started_at, completed_at,
       attempts
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

-- ===================================================================== waits (0002)

-- name: finish_workflow_notify
-- Record a workflow's outcome, fenced by its epoch; notify only if somebody watches it
-- (NOTIFY takes a cluster-wide lock at commit: kept off the common path).
WITH done AS (
    UPDATE {schema}.workflows
    SET status = %(status)s, output = %(output)s::jsonb, error = %(error)s::jsonb,
        completed_at = clock_timestamp(), updated_at = clock_timestamp(),
        wake_at = NULL, wait_kind = NULL, deadline = NULL
    WHERE id = %(workflow_id)s AND epoch = %(epoch)s AND epoch >= {fragment_epoch_floor} AND (status || '') = 'PENDING'
    RETURNING id
), watched AS (
    DELETE FROM {schema}.watchers w USING done WHERE w.workflow_id = done.id
    RETURNING w.workflow_id
)
SELECT (SELECT count(*) FROM done) AS finished,
       (SELECT count(pg_notify(%(channel)s, {kind_finished} || workflow_id)) FROM watched) AS notified

-- name: finish_workflows
-- finish_workflow_notify for many workflows at once; returns the rows finished. Each is
-- found and locked by its primary key first (as in record_operations: a join could hash
-- every PENDING workflow), then updated by that key.
WITH target AS (
    SELECT f.id, u.status, u.output, u.error
    FROM json_to_recordset(%(rows)s::json)
         AS u(workflow_id text, epoch bigint, status text, output text, error text)
    CROSS JOIN LATERAL (
        SELECT w.id FROM {schema}.workflows w
        WHERE w.id = u.workflow_id AND w.epoch = u.epoch AND w.epoch >= {fragment_epoch_floor}
          AND (w.status || '') = 'PENDING'
        FOR UPDATE
    ) f
), done AS (
    UPDATE {schema}.workflows w
    SET status = t.status, output = t.output::jsonb, error = t.error::jsonb,
        completed_at = clock_timestamp(), updated_at = clock_timestamp(),
        wake_at = NULL, wait_kind = NULL, deadline = NULL
    FROM target t
    WHERE w.id = t.id
    RETURNING w.id
), watched AS (
    DELETE FROM {schema}.watchers w USING done WHERE w.workflow_id = done.id
    RETURNING w.workflow_id
)
SELECT id,
       (SELECT count(pg_notify(%(channel)s, {kind_finished} || workflow_id)) FROM watched) AS notified
FROM done

-- name: watch
-- Ask for a notification when the workflow finishes (the waiter re-reads its status).
INSERT INTO {schema}.watchers (workflow_id)
SELECT id FROM {schema}.workflows WHERE id = %(workflow_id)s
ON CONFLICT DO NOTHING

-- name: send_message
-- A message from outside any workflow. Wakes the receiver if it is parked on this topic.
WITH dest AS (
    SELECT id FROM {schema}.workflows WHERE id = %(workflow_id)s
), ins AS (
    INSERT INTO {schema}.messages (workflow_id, topic, value, idempotency_key)
    SELECT id, %(topic)s, %(value)s::jsonb, %(idempotency_key)s FROM dest
    ON CONFLICT (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING workflow_id
), wake AS (
    UPDATE {schema}.workflows w SET wake_at = clock_timestamp()
    FROM ins
    WHERE w.id = ins.workflow_id AND (w.status || '') = 'PENDING' AND w.executor_id IS NULL
      AND w.wait_kind = 'recv' AND w.wait_topic IS NOT DISTINCT FROM %(topic)s
    RETURNING w.id
)
SELECT (SELECT count(*) FROM dest) AS found, (SELECT count(*) FROM ins) AS inserted,
       (SELECT count(pg_notify(%(channel)s, {kind_message} || workflow_id)) FROM ins) AS notified,
       (SELECT count(*) FROM wake) AS woken

-- name: send_from_workflow
-- A message sent by a workflow: recorded as its operation, exactly once (fenced).
WITH me AS (
    SELECT id FROM {schema}.workflows
    WHERE id = %(sender_id)s AND epoch = %(epoch)s AND epoch >= {fragment_epoch_floor} AND (status || '') = 'PENDING'
    FOR SHARE
), dest AS (
    SELECT id FROM {schema}.workflows WHERE id = %(workflow_id)s
), ins AS (
    INSERT INTO {schema}.messages (workflow_id, topic, value, idempotency_key)
    SELECT dest.id, %(topic)s, %(value)s::jsonb, %(idempotency_key)s FROM dest, me
    ON CONFLICT (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING workflow_id
), op AS (
    INSERT INTO {schema}.operations (workflow_id, step, name, kind, output, started_at, epoch)
    SELECT me.id, %(step)s, %(name)s, 'send', NULL, %(started_at)s, %(epoch)s FROM me, dest
    ON CONFLICT DO NOTHING
    RETURNING step
), wake AS (
    UPDATE {schema}.workflows w SET wake_at = clock_timestamp()
    FROM ins
    WHERE w.id = ins.workflow_id AND (w.status || '') = 'PENDING' AND w.executor_id IS NULL
      AND w.wait_kind = 'recv' AND w.wait_topic IS NOT DISTINCT FROM %(topic)s
    RETURNING w.id
)
SELECT (SELECT count(*) FROM me) AS owned, (SELECT count(*) FROM dest) AS found,
       (SELECT count(*) FROM op) AS recorded,
       (SELECT count(pg_notify(%(channel)s, {kind_message} || workflow_id)) FROM ins) AS notified,
       (SELECT count(*) FROM wake) AS woken

-- name: consume_message
-- Take the oldest unconsumed message of a topic and record it as the workflow's
-- operation, in one fenced statement: a message is consumed exactly once. If this step
-- already holds an operation (a retry whose first attempt committed but whose reply was
-- lost), nothing is consumed and that operation is returned: the same message again.
WITH me AS (
    SELECT id FROM {schema}.workflows
    WHERE id = %(workflow_id)s AND epoch = %(epoch)s AND epoch >= {fragment_epoch_floor} AND (status || '') = 'PENDING'
    FOR SHARE
), earlier AS (
    SELECT o.name, o.kind, o.output FROM {schema}.operations o, me
    WHERE o.workflow_id = me.id AND o.step = %(step)s
), msg AS (
    UPDATE {schema}.messages SET consumed_at = clock_timestamp(), consumed_step = %(step)s
    WHERE id = (
        SELECT m.id FROM {schema}.messages m, me
        WHERE m.workflow_id = me.id AND m.consumed_at IS NULL
          AND m.topic IS NOT DISTINCT FROM %(topic)s
          AND NOT EXISTS (SELECT 1 FROM earlier)
        ORDER BY m.id
        LIMIT 1
        FOR UPDATE OF m SKIP LOCKED
    )
    RETURNING value
), op AS (
    INSERT INTO {schema}.operations (workflow_id, step, name, kind, output, started_at, epoch)
    SELECT %(workflow_id)s, %(step)s, %(name)s, 'recv',
           jsonb_build_object('message', msg.value), %(started_at)s, %(epoch)s
    FROM msg
    ON CONFLICT DO NOTHING
    RETURNING output
)
SELECT (SELECT count(*) FROM me) AS owned,
       (SELECT count(*) FROM op) + (SELECT count(*) FROM earlier) AS recorded,
       coalesce((SELECT output FROM op), (SELECT output FROM earlier)) AS output,
       (SELECT name FROM earlier) AS earlier_name, (SELECT kind FROM earlier) AS earlier_kind

-- name: wait_deadline
-- The durable deadline of the wait at this step: set on first wait, kept on replay.
UPDATE {schema}.workflows
SET wait_deadline = CASE WHEN wait_step = %(step)s THEN wait_deadline ELSE %(deadline)s END,
    wait_step = %(step)s
WHERE id = %(workflow_id)s AND epoch = %(epoch)s AND epoch >= {fragment_epoch_floor} AND (status || '') = 'PENDING'
RETURNING wait_deadline

-- name: lock_workflow
-- Serialises a wait that parks with what would wake it (a message sent, an event set):
-- both lock the row first, so each one's next statement sees the other's commit.
SELECT id FROM {schema}.workflows WHERE id = %(workflow_id)s FOR NO KEY UPDATE

-- name: lock_events
-- Serialises a park waiting for an event of a workflow with every set_event of that
-- workflow, also before the workflow exists (a waiter may park before its target is
-- started, when there is no row to lock): both take this lock on the target's ID first,
-- so the park sees the event or set_event sees the parked waiter and wakes it. Keyed by
-- the schema's channel too; another schema's equal key only waits a moment.
SELECT true AS locked FROM (
    SELECT pg_advisory_xact_lock(hashtextextended(%(channel)s || ':' || %(workflow_id)s, 0))
) gate

-- name: park
-- Release a waiting workflow: any executor wakes it at wake_at, or earlier when what it
-- waits for arrives. If that already arrived, it is not parked (parked = false).
-- Retried after a lost reply, a park that finds the workflow already released by this
-- run (no owner, same epoch) reports that park and keeps its wake-up time: what it waits
-- for may have arrived since (its wake is due now), and carrying on would run it unowned.
UPDATE {schema}.workflows
SET executor_id = CASE WHEN ready.now THEN executor_id END,
    wake_at = CASE WHEN ready.released THEN wake_at
                   WHEN ready.now THEN NULL ELSE %(wake_at)s::timestamptz END,
    wait_kind = %(wait_kind)s, wait_target = %(wait_target)s, wait_topic = %(wait_topic)s,
    updated_at = clock_timestamp()
FROM (
    SELECT released, NOT released AND CASE %(wait_kind)s
        WHEN 'recv' THEN EXISTS (
            SELECT 1 FROM {schema}.messages
            WHERE workflow_id = %(workflow_id)s AND consumed_at IS NULL
              AND topic IS NOT DISTINCT FROM %(wait_topic)s)
        WHEN 'event' THEN EXISTS (
            SELECT 1 FROM {schema}.events
            WHERE workflow_id = %(wait_target)s AND key = %(wait_topic)s)
        ELSE false END AS now
    FROM (
        SELECT %(retry)s AND EXISTS (
            SELECT 1 FROM {schema}.workflows
            WHERE id = %(workflow_id)s AND epoch = %(epoch)s AND executor_id IS NULL
        ) AS released
    ) first_attempt
) ready
WHERE id = %(workflow_id)s AND epoch = %(epoch)s AND epoch >= {fragment_epoch_floor} AND (status || '') = 'PENDING'
RETURNING ready.released OR NOT ready.now AS parked

-- name: wake_due
-- Claim parked workflows that are due (timer passed, or woken by a message or event).
-- With a workflow_id, only that one (the targeted wake after a notification).
WITH claimed AS (
    UPDATE {schema}.workflows w
    SET claim_token = %(token)s,
        executor_id = CASE WHEN w.queue_name IS NULL THEN %(executor_id)s END,
        -- a queued workflow wakes onto its queue, to run again within the queue's limits
        status = CASE WHEN w.queue_name IS NULL THEN w.status ELSE 'ENQUEUED' END,
        epoch = {fragment_next_epoch}, wake_at = NULL, wait_kind = NULL,
        updated_at = clock_timestamp(),
        app_version = coalesce(w.app_version, %(app_version)s)
    FROM (
        SELECT id FROM {schema}.workflows
        WHERE status = 'PENDING' AND executor_id IS NULL
          AND wake_at <= clock_timestamp()
          AND name = ANY(%(names)s::text[])
          AND (%(versions)s::text[] IS NULL OR app_version IS NULL
               OR app_version = ANY(%(versions)s::text[]))
          AND (%(only_id)s::text IS NULL OR id = %(only_id)s)
        ORDER BY wake_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) due
    WHERE w.id = due.id
    {fragment_claim_returning}
)
SELECT * FROM claimed
{fragment_claimed_before}

-- name: set_event
-- Set an event (a new value per operation), recorded as the operation when step_op is
-- true, fenced; wakes workflows parked waiting for it, and notifies readers.
WITH me AS (
    SELECT id FROM {schema}.workflows
    WHERE id = %(workflow_id)s AND epoch = %(epoch)s AND epoch >= {fragment_epoch_floor} AND (status || '') = 'PENDING'
    FOR SHARE
), ev AS (
    INSERT INTO {schema}.events (workflow_id, key, step, value)
    SELECT me.id, %(key)s, %(step)s, %(value)s::jsonb FROM me
    ON CONFLICT (workflow_id, key, step) DO UPDATE SET value = EXCLUDED.value
    RETURNING workflow_id
), op AS (
    INSERT INTO {schema}.operations (workflow_id, step, name, kind, output, started_at, epoch)
    SELECT me.id, %(step)s, %(key)s, 'set_event', NULL, %(started_at)s, %(epoch)s FROM me
    WHERE %(step_op)s
    ON CONFLICT DO NOTHING
    RETURNING step
), wake AS (
    UPDATE {schema}.workflows w SET wake_at = clock_timestamp()
    FROM ev
    WHERE w.wait_kind = 'event' AND w.executor_id IS NULL AND w.status = 'PENDING'
      AND w.wait_target = ev.workflow_id AND w.wait_topic = %(key)s
    RETURNING w.id
)
SELECT (SELECT count(*) FROM me) AS owned, (SELECT count(*) FROM op) AS recorded,
       (SELECT count(pg_notify(%(channel)s, {kind_event} || workflow_id)) FROM ev) AS notified,
       (SELECT count(*) FROM wake) AS woken

-- name: get_event
SELECT value FROM {schema}.events
WHERE workflow_id = %(workflow_id)s AND key = %(key)s
ORDER BY step DESC
LIMIT 1

-- name: get_all_events
SELECT DISTINCT ON (key) key, value FROM {schema}.events
WHERE workflow_id = %(workflow_id)s
ORDER BY key, step DESC

-- name: write_stream
-- Append to a stream (or close it), recorded as the workflow's operation, fenced.
WITH me AS (
    SELECT id FROM {schema}.workflows
    WHERE id = %(workflow_id)s AND epoch = %(epoch)s AND epoch >= {fragment_epoch_floor} AND (status || '') = 'PENDING'
    FOR SHARE
), entry AS (
    INSERT INTO {schema}.streams (workflow_id, key, step, value, closed)
    SELECT me.id, %(key)s, %(step)s, %(value)s::jsonb, %(closed)s FROM me
    ON CONFLICT DO NOTHING
    RETURNING workflow_id
), op AS (
    INSERT INTO {schema}.operations (workflow_id, step, name, kind, output, started_at, epoch)
    SELECT me.id, %(step)s, %(key)s, %(kind)s, NULL, %(started_at)s, %(epoch)s FROM me
    ON CONFLICT DO NOTHING
    RETURNING step
)
SELECT (SELECT count(*) FROM me) AS owned, (SELECT count(*) FROM op) AS recorded,
       (SELECT count(pg_notify(%(channel)s, {kind_stream} || workflow_id)) FROM entry) AS notified

-- name: read_stream
-- Entries after a position; the first read skips %(skip)s values (the offset). The
-- closing entry is always returned, so a reader past the end stops at once.
SELECT step, value, closed FROM (
    SELECT step, value, closed, row_number() OVER (ORDER BY step) - 1 AS n
    FROM {schema}.streams
    WHERE workflow_id = %(workflow_id)s AND key = %(key)s AND step > %(after)s
) entries
WHERE n >= %(skip)s OR closed
ORDER BY step

-- name: cancel
-- Cancel a workflow (and with children, its descendants) that has not finished.
WITH RECURSIVE tree AS (
    SELECT id FROM {schema}.workflows WHERE id = %(workflow_id)s
    UNION
    SELECT w.id FROM {schema}.workflows w JOIN tree ON w.parent_id = tree.id
    WHERE %(children)s
), cancelled AS (
    UPDATE {schema}.workflows w
    SET status = 'CANCELLED', updated_at = clock_timestamp(), completed_at = clock_timestamp(),
        wake_at = NULL
    FROM tree
    WHERE w.id = tree.id AND (w.status || '') IN ('PENDING', 'ENQUEUED', 'DELAYED')
    RETURNING w.id
)
SELECT (SELECT count(*) FROM tree WHERE id = %(workflow_id)s) AS found,
       count(pg_notify(%(channel)s, {kind_cancelled} || cancelled.id)) AS cancelled
FROM cancelled

-- name: cancel_expired
-- Cancel running workflows whose deadline passed, with their descendants.
WITH RECURSIVE expired AS (
    SELECT id FROM {schema}.workflows
    WHERE status = 'PENDING' AND deadline IS NOT NULL AND deadline <= clock_timestamp()
    LIMIT 1000
), tree AS (
    SELECT id FROM expired
    UNION
    SELECT w.id FROM {schema}.workflows w JOIN tree ON w.parent_id = tree.id
), cancelled AS (
    UPDATE {schema}.workflows w
    SET status = 'CANCELLED', updated_at = clock_timestamp(), completed_at = clock_timestamp(),
        wake_at = NULL
    FROM tree
    WHERE w.id = tree.id AND (w.status || '') IN ('PENDING', 'ENQUEUED', 'DELAYED')
    RETURNING w.id
)
SELECT count(pg_notify(%(channel)s, {kind_cancelled} || id)) AS cancelled FROM cancelled

-- name: resume
-- Run a cancelled, dead-lettered or stuck (PENDING) workflow again from its last
-- checkpoint: it becomes parked and due now (a new epoch fences out any run still going),
-- so any executor that knows it picks it up; queued work that waits starts now.
-- Retried after a lost reply, it acts only if the workflow is still at the epoch read
-- before the first attempt: a run that began after that attempt is not fenced out.
WITH resumed AS (
    UPDATE {schema}.workflows w
    SET status = 'PENDING', executor_id = NULL, wake_at = clock_timestamp(), wait_kind = NULL,
        recovery_attempts = 0, deadline = NULL, completed_at = NULL,
        epoch = {fragment_next_epoch},
        -- a delayed one is due now too (it wakes onto its queue, which claims only work
        -- whose time has come)
        available_at = NULL,
        updated_at = clock_timestamp()
    WHERE id = %(workflow_id)s
      AND status IN ('PENDING', 'CANCELLED', 'DEAD_LETTER', 'ENQUEUED', 'DELAYED')
      AND (NOT %(retry)s OR epoch = %(epoch)s)
    RETURNING id
)
SELECT id, pg_notify(%(channel)s, {kind_resumed} || id) AS notified FROM resumed

-- name: fork
-- A new workflow with the same inputs; operations before from_step, and the events and
-- stream entries they wrote, are copied; it is parked and due now.
WITH src AS (
    SELECT * FROM {schema}.workflows WHERE id = %(workflow_id)s
), wf AS (
    INSERT INTO {schema}.workflows
        (id, name, status, inputs, executor_id, max_recovery_attempts, codec, forked_from,
         wake_at, timeout_seconds, deadline)
    SELECT %(new_id)s, name, 'PENDING', inputs, NULL, max_recovery_attempts, codec, id,
           clock_timestamp(), timeout_seconds,
           clock_timestamp() + make_interval(secs => timeout_seconds)
    FROM src
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), ops AS (
    INSERT INTO {schema}.operations
        (workflow_id, step, name, kind, output, error, child_id, started_at, completed_at)
    SELECT wf.id, o.step, o.name, o.kind, o.output, o.error, o.child_id, o.started_at,
           o.completed_at
    FROM {schema}.operations o, wf
    WHERE o.workflow_id = %(workflow_id)s AND o.step < %(from_step)s
    RETURNING step
), evs AS (
    INSERT INTO {schema}.events (workflow_id, key, step, value, created_at)
    SELECT wf.id, e.key, e.step, e.value, e.created_at
    FROM {schema}.events e, wf
    WHERE e.workflow_id = %(workflow_id)s AND e.step < %(from_step)s
    RETURNING step
), sts AS (
    INSERT INTO {schema}.streams (workflow_id, key, step, value, closed, created_at)
    SELECT wf.id, s.key, s.step, s.value, s.closed, s.created_at
    FROM {schema}.streams s, wf
    WHERE s.workflow_id = %(workflow_id)s AND s.step < %(from_step)s
    RETURNING step
)
SELECT (SELECT count(*) FROM src) AS found,
       (SELECT count(*) FROM wf)
       -- a retry after a lost reply: the copy its first attempt made counts as made
       + (SELECT count(*) FROM {schema}.workflows
          WHERE %(retry)s AND id = %(new_id)s AND forked_from = %(workflow_id)s) AS created,
       (SELECT count(*) FROM ops) AS operations,
       (SELECT count(*) FROM evs) AS events, (SELECT count(*) FROM sts) AS streams,
       (SELECT count(pg_notify(%(channel)s, {kind_resumed} || id)) FROM wf) AS notified
