-- Queues: declaration, enqueue, claim (dispatch), delays and debounce.

-- name: declare_queue
-- Work may be enqueued before any declaration (enqueue never needs the queue's row), so
-- with priorities it could not check: a queue declared without priorities drops those
-- of its waiting work, which then runs in enqueue order like the rest.
WITH declared AS (
    INSERT INTO {schema}.queues
        (name, concurrency, worker_concurrency, rate_limit, rate_period, priority,
         partition_concurrency)
    VALUES (%(name)s, %(concurrency)s, %(worker_concurrency)s, %(rate_limit)s, %(rate_period)s,
            %(priority)s, %(partition_concurrency)s)
    ON CONFLICT (name) DO UPDATE
    SET concurrency = EXCLUDED.concurrency, worker_concurrency = EXCLUDED.worker_concurrency,
        rate_limit = EXCLUDED.rate_limit, rate_period = EXCLUDED.rate_period,
        priority = EXCLUDED.priority, partition_concurrency = EXCLUDED.partition_concurrency,
        updated_at = now()
    RETURNING name
)
UPDATE {schema}.workflows
SET priority = NULL
WHERE queue_name = (SELECT name FROM declared) AND NOT %(priority)s
  AND priority IS NOT NULL AND status IN ('ENQUEUED', 'DELAYED')

-- name: get_queue
SELECT name, priority FROM {schema}.queues WHERE name = %(name)s

-- name: enqueue
-- Put a workflow on a queue (DELAYED when available_at is later than now). Nothing is
-- returned when its ID, or its deduplication key in this queue, is already taken.
WITH ins AS (
    INSERT INTO {schema}.workflows
        (id, name, status, inputs, executor_id, max_recovery_attempts, codec, timeout_seconds,
         queue_name, priority, dedup_key, partition_key, available_at, enqueued_at,
         parent_id, parent_step, app_version)
    VALUES (%(id)s, %(name)s,
            CASE WHEN %(available_at)s::timestamptz > clock_timestamp() THEN 'DELAYED'
                 ELSE 'ENQUEUED' END,
            %(inputs)s::jsonb, NULL, %(max_recovery_attempts)s, %(codec)s,
            %(timeout)s::float8, %(queue)s, %(priority)s, %(dedup_key)s, %(partition_key)s,
            %(available_at)s, clock_timestamp(), %(parent_id)s, %(parent_step)s,
            %(app_version)s)
    ON CONFLICT DO NOTHING
    RETURNING id, status, available_at, queue_name
)
-- The queue's workers are told of ready work at once, and of delayed work's due time
-- (t:), on the queue's channel. The queue need not be declared yet: its work waits for
-- the first worker that declares it.
SELECT id, status,
       CASE WHEN status = 'ENQUEUED'
            THEN pg_notify({fragment_queue_channel}, {kind_queued} || queue_name)
            ELSE pg_notify({fragment_queue_channel},
                           {kind_delayed} || extract(epoch FROM available_at) || ':' || queue_name)
       END AS notified,
       EXISTS (SELECT 1 FROM {schema}.queues WHERE name = %(queue)s) AS queue_declared
FROM ins

-- name: enqueue_many
-- The same for many workflows in one statement: the enqueues a group-commit batch
-- gathered, or one enqueue_many call. Workers are told once per queue with ready work,
-- not once per workflow (a notification costs every listener a wake-up, and NOTIFY
-- holds a cluster-wide lock while its transaction commits); delayed work still says
-- when each due time comes.
WITH given AS (
    SELECT * FROM ROWS FROM (
        json_to_recordset(%(rows)s::json)
            AS (id text, name text, inputs text, max_recovery_attempts int, codec text,
                timeout float8, queue text, priority int, dedup_key text,
                partition_key text, available_at timestamptz, parent_id text,
                parent_step int, app_version text)
    ) WITH ORDINALITY AS g(id, name, inputs, max_recovery_attempts, codec, timeout, queue,
                           priority, dedup_key, partition_key, available_at, parent_id,
                           parent_step, app_version, n)
), ins AS (
    INSERT INTO {schema}.workflows
        (id, name, status, inputs, executor_id, max_recovery_attempts, codec, timeout_seconds,
         queue_name, priority, dedup_key, partition_key, available_at, enqueued_at,
         parent_id, parent_step, app_version)
    SELECT id, name,
           CASE WHEN available_at > clock_timestamp() THEN 'DELAYED' ELSE 'ENQUEUED' END,
           inputs::jsonb, NULL, max_recovery_attempts, codec, timeout, queue, priority,
           dedup_key, partition_key, available_at, clock_timestamp(), parent_id, parent_step,
           app_version
    -- in the order given, so that enqueue order (FIFO within a priority) is kept
    FROM given ORDER BY n
    ON CONFLICT DO NOTHING
    RETURNING id, status, queue_name, available_at
), ready AS (
    SELECT pg_notify({fragment_queue_channel},
                     {kind_queued} || queue_name)
    FROM (SELECT DISTINCT queue_name FROM ins WHERE status = 'ENQUEUED') AS q
), due AS (
    SELECT pg_notify({fragment_queue_channel},
                     {kind_delayed} || extract(epoch FROM available_at) || ':' || queue_name)
    FROM (SELECT DISTINCT queue_name, available_at FROM ins WHERE status = 'DELAYED') AS d
)
SELECT id, status,
       (SELECT count(*) FROM ready) + (SELECT count(*) FROM due) AS notified,
       queue_name IN (SELECT name FROM {schema}.queues) AS queue_declared
FROM ins

-- name: dedup_holder
SELECT id FROM {schema}.workflows
WHERE queue_name = %(queue)s AND dedup_key = %(dedup_key)s
  AND status IN ('ENQUEUED', 'DELAYED', 'PENDING')

-- name: lock_queue
-- Claims of one queue are serialised, so counts of running and recent work are exact;
-- the claim itself is a separate statement so that it reads after the lock is held.
SELECT name FROM {schema}.queues WHERE name = %(queue)s FOR UPDATE

-- name: fragment_claim_queued
-- (A fragment, the CTE ``claimed`` of the queue claims.) The candidates become this
-- executor's under a new epoch, by primary key: a join with the CTE is planned as a scan
-- of the whole table.
    UPDATE {schema}.workflows w
    SET claim_token = %(token)s, status = 'PENDING', executor_id = %(executor_id)s,
        epoch = {fragment_next_epoch},
        started_at = clock_timestamp(), available_at = NULL, updated_at = clock_timestamp(),
        -- the clock starts at the first claim; work put back on the queue keeps its deadline
        deadline = coalesce(w.deadline,
                            clock_timestamp() + make_interval(secs => w.timeout_seconds)),
        -- the first start records the version of the code that runs it
        app_version = coalesce(w.app_version, %(app_version)s)
    WHERE w.id = ANY(ARRAY(SELECT id FROM candidates))
    RETURNING w.id, w.name, w.status, w.inputs, w.epoch, w.codec, w.recovery_attempts,
              w.deadline, w.queue_name, NULL AS notified

-- name: claim_queued
-- Claim up to %(want)s workflows of a queue for this executor, within its limits.
WITH q AS (
    SELECT * FROM {schema}.queues WHERE name = %(queue)s
), budget AS (
    -- Only the limits the queue has are counted (CASE skips the others' subqueries), and
    -- the rate window has a bound its index can seek to (statement_timestamp() is stable;
    -- clock_timestamp() is not, and made this count read every start the queue ever had).
    SELECT GREATEST(0, LEAST(
        %(want)s,
        CASE WHEN q.concurrency IS NOT NULL THEN
            q.concurrency - (SELECT count(*) FROM {schema}.workflows
                             WHERE queue_name = q.name AND status = 'PENDING') END,
        CASE WHEN q.worker_concurrency IS NOT NULL THEN
            q.worker_concurrency - (SELECT count(*) FROM {schema}.workflows
                                    WHERE queue_name = q.name AND status = 'PENDING'
                                      AND executor_id = %(executor_id)s) END,
        CASE WHEN q.rate_limit IS NOT NULL THEN
            q.rate_limit - (SELECT count(*) FROM {schema}.workflows
                            WHERE queue_name = q.name
                              AND started_at > statement_timestamp()
                                               - make_interval(secs => q.rate_period)) END
    )) AS n
    FROM q
), candidates AS (
    SELECT id FROM {schema}.workflows
    WHERE queue_name = %(queue)s AND status IN ('ENQUEUED', 'DELAYED')
      AND (available_at IS NULL OR available_at <= clock_timestamp())
      AND name = ANY(%(names)s::text[])
      -- not started yet (no version), or started by a version this executor recovers
      AND (%(versions)s::text[] IS NULL OR app_version IS NULL
           OR app_version = ANY(%(versions)s::text[]))
    ORDER BY priority NULLS FIRST, enqueued_at
    LIMIT coalesce((SELECT n FROM budget), 0)
    FOR UPDATE SKIP LOCKED
), claimed AS (
{fragment_claim_queued}
)
SELECT * FROM claimed
{fragment_claimed_before}

-- name: claim_queued_many
-- claim_queued for several queues at once, each with no limit counted across workers (no
-- concurrency, rate or partition limit; those take their queue's lock first): one
-- statement and one commit for every queue that is due, each taking up to its own
-- %(wants)s, within its worker_concurrency.
WITH wanted AS (
    SELECT * FROM json_to_recordset(%(wants)s::json) AS w(queue text, want int)
), budget AS (
    SELECT w.queue, GREATEST(0, LEAST(
        w.want,
        CASE WHEN q.worker_concurrency IS NOT NULL THEN
            q.worker_concurrency - (SELECT count(*) FROM {schema}.workflows
                                    WHERE queue_name = q.name AND status = 'PENDING'
                                      AND executor_id = %(executor_id)s) END
    )) AS n
    FROM wanted w JOIN {schema}.queues q ON q.name = w.queue
), candidates AS (
    SELECT c.id FROM budget b CROSS JOIN LATERAL (
        SELECT id FROM {schema}.workflows
        WHERE queue_name = b.queue AND status IN ('ENQUEUED', 'DELAYED')
          AND (available_at IS NULL OR available_at <= clock_timestamp())
          AND name = ANY(%(names)s::text[])
          AND (%(versions)s::text[] IS NULL OR app_version IS NULL
               OR app_version = ANY(%(versions)s::text[]))
        ORDER BY priority NULLS FIRST, enqueued_at
        LIMIT b.n
        FOR UPDATE SKIP LOCKED
    ) c
), claimed AS (
{fragment_claim_queued}
)
SELECT * FROM claimed
{fragment_claimed_before}

-- name: claim_queued_partitioned
-- The same for a queue with a per-partition limit: each partition key may have at most
-- partition_concurrency workflows running at once, taken in enqueue order. Work
-- enqueued in the same microsecond (one transaction's statements can be) is taken in
-- the order of its IDs, shorter first, then as text: IDs that differ only in a trailing
-- number, such as a Kafka message's (kafka:<group>:<topic>:<partition>:<offset>), are
-- taken in the order of that number ("9" before "10"; digits sort in order in every
-- collation). The tie-breaker lengthens the sort the window needs anyway, no index.
WITH q AS (
    SELECT * FROM {schema}.queues WHERE name = %(queue)s
), budget AS (
    SELECT GREATEST(0, LEAST(
        %(want)s,
        CASE WHEN q.concurrency IS NOT NULL THEN
            q.concurrency - (SELECT count(*) FROM {schema}.workflows
                             WHERE queue_name = q.name AND status = 'PENDING') END,
        CASE WHEN q.worker_concurrency IS NOT NULL THEN
            q.worker_concurrency - (SELECT count(*) FROM {schema}.workflows
                                    WHERE queue_name = q.name AND status = 'PENDING'
                                      AND executor_id = %(executor_id)s) END,
        CASE WHEN q.rate_limit IS NOT NULL THEN
            q.rate_limit - (SELECT count(*) FROM {schema}.workflows
                            WHERE queue_name = q.name
                              AND started_at > statement_timestamp()
                                               - make_interval(secs => q.rate_period)) END
    )) AS n, q.partition_concurrency AS per_partition
    FROM q
), running AS (
    SELECT partition_key, count(*) AS n FROM {schema}.workflows
    WHERE queue_name = %(queue)s AND status = 'PENDING' AND partition_key IS NOT NULL
    GROUP BY partition_key
), ranked AS (
    SELECT w.id, w.priority, w.enqueued_at, w.partition_key,
           row_number() OVER (PARTITION BY w.partition_key
                              ORDER BY w.priority NULLS FIRST, w.enqueued_at,
                                       length(w.id), w.id)
           + coalesce(r.n, 0) AS load
    FROM {schema}.workflows w
    LEFT JOIN running r ON r.partition_key = w.partition_key
    WHERE w.queue_name = %(queue)s AND w.status IN ('ENQUEUED', 'DELAYED')
      AND (w.available_at IS NULL OR w.available_at <= clock_timestamp())
      AND w.name = ANY(%(names)s::text[])
      AND (%(versions)s::text[] IS NULL OR w.app_version IS NULL
           OR w.app_version = ANY(%(versions)s::text[]))
), candidates AS (
    -- Looked up by primary key: a join here is planned as a scan of the whole table.
    -- The queue's lock serialises claims, so what is picked is not locked by another;
    -- the status is checked again once locked (a cancel may have committed meanwhile).
    SELECT w.id FROM {schema}.workflows w
    WHERE (w.status || '') IN ('ENQUEUED', 'DELAYED') AND w.id = ANY(ARRAY(
        SELECT id FROM ranked
        WHERE partition_key IS NULL OR load <= (SELECT per_partition FROM budget)
        ORDER BY priority NULLS FIRST, enqueued_at, length(id), id
        LIMIT coalesce((SELECT n FROM budget), 0)))
    FOR UPDATE SKIP LOCKED
), claimed AS (
{fragment_claim_queued}
)
SELECT * FROM claimed
{fragment_claimed_before}

-- name: set_delay
-- Change when a waiting workflow may start.
WITH changed AS (
    UPDATE {schema}.workflows
    SET available_at = %(available_at)s,
        status = CASE WHEN %(available_at)s::timestamptz > clock_timestamp() THEN 'DELAYED'
                      ELSE 'ENQUEUED' END,
        updated_at = clock_timestamp()
    WHERE id = %(workflow_id)s AND (status || '') IN ('ENQUEUED', 'DELAYED')
    RETURNING queue_name, status, available_at
)
SELECT status,
       CASE WHEN status = 'ENQUEUED'
            THEN pg_notify({fragment_queue_channel}, {kind_queued} || queue_name)
            ELSE pg_notify({fragment_queue_channel},
                           {kind_delayed} || extract(epoch FROM available_at) || ':' || queue_name)
       END AS notified,
       queue_name
FROM changed

-- name: debounce
-- One waiting run per key: a new call replaces the arguments and pushes the start back
-- by the period, but never past first enqueue + max_wait.
INSERT INTO {schema}.workflows AS w
    (id, name, status, inputs, executor_id, max_recovery_attempts, codec, timeout_seconds,
     queue_name, debounce_key, available_at, enqueued_at)
VALUES (%(id)s, %(name)s, 'DELAYED', %(inputs)s::jsonb, NULL, %(max_recovery_attempts)s,
        %(codec)s, %(timeout)s::float8, %(queue)s, %(debounce_key)s,
        LEAST(clock_timestamp() + make_interval(secs => %(period)s),
              clock_timestamp() + make_interval(secs => %(max_wait)s::float8)),
        clock_timestamp())
ON CONFLICT (queue_name, debounce_key) WHERE debounce_key IS NOT NULL AND status = 'DELAYED'
DO UPDATE SET
    inputs = EXCLUDED.inputs,
    name = EXCLUDED.name,
    available_at = LEAST(EXCLUDED.available_at,
                         w.enqueued_at + make_interval(secs => %(max_wait)s::float8)),
    updated_at = clock_timestamp()
RETURNING id, available_at,
          pg_notify({fragment_queue_channel},
                    {kind_delayed} || extract(epoch FROM w.available_at) || ':' || w.queue_name)
              AS notified

-- name: rate_window_opens
-- When a rate-limited queue whose window is full gets its next start: the oldest start
-- inside the window, plus the window. NULL when the window is not full (or no limit).
SELECT CASE WHEN count(*) >= q.rate_limit
            THEN min(w.started_at) + make_interval(secs => q.rate_period)
                 + interval '10 milliseconds' END AS opens_at
FROM {schema}.queues q
LEFT JOIN {schema}.workflows w
  ON w.queue_name = q.name
 -- a stable bound, so that the index on (queue_name, started_at) seeks to the window
 AND w.started_at > statement_timestamp() - make_interval(secs => q.rate_period)
WHERE q.name = %(queue)s AND q.rate_limit IS NOT NULL
GROUP BY q.rate_limit, q.rate_period
