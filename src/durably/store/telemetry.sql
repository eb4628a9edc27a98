-- Telemetry: what a metrics scrape reads of the database.

-- name: queue_gauges
-- Per queue: work waiting (ENQUEUED or DELAYED), the age in seconds of the oldest
-- waiting work that is ready to run, and work running now. Read at each scrape; the
-- queue indexes (workflows_queued, workflows_queue_running) serve it.
SELECT queue_name AS queue,
       count(*) FILTER (WHERE status IN ('ENQUEUED', 'DELAYED')) AS waiting,
       coalesce(extract(epoch FROM clock_timestamp() - min(enqueued_at)
           FILTER (WHERE status = 'ENQUEUED')), 0)::double precision AS oldest_seconds,
       count(*) FILTER (WHERE status = 'PENDING') AS running
FROM {schema}.workflows
WHERE queue_name IS NOT NULL AND status IN ('ENQUEUED', 'DELAYED', 'PENDING')
GROUP BY queue_name
ORDER BY queue_name
