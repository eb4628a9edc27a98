-- Observing queues (durably queues, the dashboard): read-only statements.

-- name: queue_stats
-- One row per queue that is declared, has waiting work or has running work. The names
-- of waiting and running work are found by skipping through the partial indexes of
-- 0003 (one probe per queue, not one per row); each queue's figures then come from its
-- own index ranges, so the cost follows the queues' depth, not the table's size.
-- started_per_minute: starts in each of the last %(minutes)s minutes, oldest first
-- (its last entry is the last 60 seconds).
WITH RECURSIVE waiting_names(queue_name) AS (
    (SELECT queue_name FROM {schema}.workflows
     WHERE status IN ('ENQUEUED', 'DELAYED') AND queue_name IS NOT NULL
     ORDER BY queue_name LIMIT 1)
    UNION ALL
    SELECT (SELECT w.queue_name FROM {schema}.workflows w
            WHERE w.status IN ('ENQUEUED', 'DELAYED') AND w.queue_name > n.queue_name
            ORDER BY w.queue_name LIMIT 1)
    FROM waiting_names n WHERE n.queue_name IS NOT NULL
), running_names(queue_name) AS (
    (SELECT queue_name FROM {schema}.workflows
     WHERE status = 'PENDING' AND queue_name IS NOT NULL
     ORDER BY queue_name LIMIT 1)
    UNION ALL
    SELECT (SELECT w.queue_name FROM {schema}.workflows w
            WHERE w.status = 'PENDING' AND w.queue_name IS NOT NULL
              AND w.queue_name > n.queue_name
            ORDER BY w.queue_name LIMIT 1)
    FROM running_names n WHERE n.queue_name IS NOT NULL
), names AS (
    SELECT name AS queue_name FROM {schema}.queues
    UNION SELECT queue_name FROM waiting_names WHERE queue_name IS NOT NULL
    UNION SELECT queue_name FROM running_names WHERE queue_name IS NOT NULL
), live AS MATERIALIZED (
    SELECT queues FROM {schema}.executors
    WHERE heartbeat_at + make_interval(secs => lease_seconds) >= now()
)
SELECT n.queue_name AS queue,
       waiting.depth, waiting.delayed, waiting.oldest_enqueued_at,
       running.running,
       started.per_minute AS started_per_minute,
       q.concurrency,
       (SELECT count(*) FROM live WHERE n.queue_name = ANY(live.queues)) AS workers,
       now() AS measured_at
FROM names n
LEFT JOIN {schema}.queues q ON q.name = n.queue_name
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE w.status = 'ENQUEUED') AS depth,
           count(*) FILTER (WHERE w.status = 'DELAYED') AS delayed,
           min(w.enqueued_at) FILTER (WHERE w.status = 'ENQUEUED') AS oldest_enqueued_at
    FROM {schema}.workflows w
    WHERE w.queue_name = n.queue_name AND w.status IN ('ENQUEUED', 'DELAYED')
) waiting
CROSS JOIN LATERAL (
    SELECT count(*) AS running FROM {schema}.workflows w
    WHERE w.queue_name = n.queue_name AND w.status = 'PENDING'
) running
CROSS JOIN LATERAL (
    SELECT array_agg(coalesce(c.n, 0) ORDER BY m.ago DESC)::bigint[] AS per_minute
    FROM generate_series(0, %(minutes)s - 1) AS m(ago)
    LEFT JOIN (
        SELECT floor(extract(epoch FROM now() - w.started_at) / 60)::int AS ago,
               count(*) AS n
        FROM {schema}.workflows w
        WHERE w.queue_name = n.queue_name AND w.started_at IS NOT NULL
          AND w.started_at > now() - make_interval(mins => %(minutes)s)
        GROUP BY 1
    ) c ON c.ago = m.ago
) started
ORDER BY n.queue_name
