-- What durably doctor reads of a server and of a schema: read-only, by name.
-- The schema placeholder is the schema's quoted name; other statements take it as a parameter.

-- name: doctor_settings
-- The server settings the checks look at (pg_settings: values in their base unit).
SELECT name, setting, unit
FROM pg_settings
WHERE name = ANY(%(names)s::text[])
ORDER BY name

-- name: doctor_schema
-- Whether the schema and its record of migrations exist.
SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s) AS schema_exists,
       EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = %(schema)s AND c.relname = 'migrations') AS migrated

-- name: doctor_tables
-- Every table of the schema with its vacuum state: live and dead rows, when it was last
-- vacuumed (by hand or by autovacuum), whether a reloption turned autovacuum off, and
-- its size and its indexes' size.
SELECT c.relname AS name,
       coalesce(s.n_live_tup, 0) AS live_rows,
       coalesce(s.n_dead_tup, 0) AS dead_rows,
       greatest(s.last_vacuum, s.last_autovacuum) AS vacuumed_at,
       NOT EXISTS (SELECT 1 FROM pg_options_to_table(c.reloptions) o
                   WHERE o.option_name = 'autovacuum_enabled'
                     AND lower(o.option_value) IN ('false', 'off', 'no', '0', 'f', 'n'))
           AS autovacuum_enabled,
       pg_table_size(c.oid) AS table_bytes,
       pg_indexes_size(c.oid) AS index_bytes
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
ORDER BY c.relname

-- name: doctor_indexes
-- The indexes the schema's tables have.
SELECT tablename AS table_name, indexname AS index_name
FROM pg_indexes
WHERE schemaname = %(schema)s
ORDER BY tablename, indexname

-- name: doctor_sessions
-- Sessions of this server whose transaction has been open longer than %(seconds)s
-- (active or idle in it): they hold back what vacuum may remove. Not this one.
SELECT pid, usename AS user_name, datname AS database, application_name,
       coalesce(state, 'unknown') AS state,
       date_part('epoch', clock_timestamp() - xact_start) AS transaction_seconds,
       left(coalesce(query, ''), 120) AS query
FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
  AND xact_start < clock_timestamp() - make_interval(secs => %(seconds)s)
  AND backend_type = 'client backend'
ORDER BY xact_start

-- name: doctor_connections
-- Connections open now, and those of backends waiting for an I/O worker (PG 18 AIO).
SELECT count(*)::int AS connections,
       count(*) FILTER (WHERE wait_event = 'AioIoCompletion')::int AS aio_waits
FROM pg_stat_activity
WHERE backend_type = 'client backend'

-- name: doctor_executors
-- Live executors, each with its clock's offset from the database's at its last beat
-- (NULL for a worker of a version that does not report its clock).
SELECT id, hostname, pid,
       date_part('epoch', worker_clock - heartbeat_at) AS skew_seconds
FROM {schema}.executors
WHERE heartbeat_at + make_interval(secs => lease_seconds) >= now()
ORDER BY id
