-- Cron schedules (migration 0004): every statement of the scheduler, by name.
-- The schema placeholder is the app's schema, quoted by psycopg.sql before use.

-- name: schedule_upsert
-- Create a schedule, or change its definition (workflow, cron, timezone, catch_up).
-- A new cron or timezone restarts it from %(next_tick)s; its paused state is kept.
-- Returns the row as it is now (unchanged when the definition was already the same).
WITH up AS (
    INSERT INTO {schema}.schedules AS s
        (name, workflow_name, cron, timezone, catch_up, next_tick)
    VALUES (%(name)s, %(workflow_name)s, %(cron)s, %(timezone)s, %(catch_up)s,
            %(next_tick)s::timestamptz)
    ON CONFLICT (name) DO UPDATE
    SET workflow_name = EXCLUDED.workflow_name, cron = EXCLUDED.cron,
        timezone = EXCLUDED.timezone, catch_up = EXCLUDED.catch_up,
        next_tick = CASE WHEN (s.cron, s.timezone) IS DISTINCT FROM
                              (EXCLUDED.cron, EXCLUDED.timezone)
                         THEN EXCLUDED.next_tick ELSE s.next_tick END,
        revision = s.revision + 1, updated_at = clock_timestamp()
    WHERE (s.workflow_name, s.cron, s.timezone, s.catch_up) IS DISTINCT FROM
          (EXCLUDED.workflow_name, EXCLUDED.cron, EXCLUDED.timezone, EXCLUDED.catch_up)
    RETURNING s.name, s.workflow_name, s.cron, s.timezone, s.paused, s.catch_up,
              s.last_tick, s.next_tick, s.revision
)
SELECT name, workflow_name, cron, timezone, paused, catch_up, last_tick, next_tick, revision
FROM up
UNION ALL
SELECT name, workflow_name, cron, timezone, paused, catch_up, last_tick, next_tick, revision
FROM {schema}.schedules
WHERE name = %(name)s AND NOT EXISTS (SELECT 1 FROM up)

-- name: schedule_get
SELECT name, workflow_name, cron, timezone, paused, catch_up, last_tick, next_tick,
       revision
FROM {schema}.schedules
WHERE name = %(name)s

-- name: schedule_list
SELECT name, workflow_name, cron, timezone, paused, catch_up, last_tick, next_tick, revision
FROM {schema}.schedules
ORDER BY name

-- name: schedule_pause
UPDATE {schema}.schedules
SET paused = true, revision = revision + 1, updated_at = clock_timestamp()
WHERE name = %(name)s
RETURNING name, workflow_name, cron, timezone, paused, catch_up, last_tick, next_tick,
          revision

-- name: schedule_resume
-- Resume a paused schedule from its first tick after now (%(next_tick)s, computed from
-- the revision the caller read): ticks that fell while it was paused are not run. A
-- schedule that is not paused is left alone. No row: the schedule changed meanwhile.
UPDATE {schema}.schedules
SET paused = false,
    next_tick = CASE WHEN paused THEN %(next_tick)s::timestamptz ELSE next_tick END,
    revision = revision + CASE WHEN paused THEN 1 ELSE 0 END,
    updated_at = CASE WHEN paused THEN clock_timestamp() ELSE updated_at END
WHERE name = %(name)s AND revision = %(revision)s
RETURNING name, workflow_name, cron, timezone, paused, catch_up, last_tick, next_tick,
          revision

-- name: schedule_delete
DELETE FROM {schema}.schedules WHERE name = %(name)s RETURNING name

-- name: schedule_due
-- The scheduler's one query per check: the active schedules of workflows this worker
-- knows that are due (oldest first, at most %(limit)s), then the next one to come,
-- each with the database's clock (statement_timestamp(): one value for the whole
-- statement), so workers agree on "now" whatever their own clocks say.
(SELECT name, workflow_name, cron, timezone, catch_up, last_tick, next_tick, revision,
        statement_timestamp() AS now
 FROM {schema}.schedules
 WHERE NOT paused AND next_tick <= statement_timestamp()
   AND workflow_name = ANY(%(names)s::text[])
 ORDER BY next_tick
 LIMIT %(limit)s)
UNION ALL
(SELECT name, workflow_name, cron, timezone, catch_up, last_tick, next_tick, revision,
        statement_timestamp() AS now
 FROM {schema}.schedules
 WHERE NOT paused AND next_tick > statement_timestamp()
   AND workflow_name = ANY(%(names)s::text[])
 ORDER BY next_tick
 LIMIT 1)

-- name: schedule_advance
-- Record that the ticks up to %(last_tick)s were handled. Conditional: only from the
-- state this worker read (same last_tick, same revision), so workers never move a
-- schedule backwards or over a change of its definition; zero rows means another
-- worker (or a pause, resume or redefinition) got there first.
UPDATE {schema}.schedules
SET last_tick = %(last_tick)s::timestamptz, next_tick = %(next_tick)s::timestamptz,
    updated_at = clock_timestamp()
WHERE name = %(name)s AND revision = %(revision)s
  AND last_tick IS NOT DISTINCT FROM %(old_last_tick)s::timestamptz

-- name: schedule_hand_over
-- Start ticks of a schedule for whichever worker runs its workflow (a Client has no
-- workflow code): each tick's workflow is created parked and due now, owned by nobody,
-- so any executor that registers %(workflow_name)s claims and runs it, as after a
-- resume. An ID that exists is left as it is (the tick ran, or runs): running this again
-- adds nothing. One row per tick in the order given: whether this call created it, and
-- the name of the workflow that holds the ID. One notification wakes the workers.
WITH ticks AS (
    SELECT t.id, t.inputs, t.n
    FROM unnest(%(ids)s::text[], %(inputs)s::text[]) WITH ORDINALITY AS t(id, inputs, n)
), made AS (
    INSERT INTO {schema}.workflows
        (id, name, status, inputs, executor_id, max_recovery_attempts, codec, wake_at)
    SELECT id, %(workflow_name)s, 'PENDING', inputs::jsonb, NULL, %(max_recovery_attempts)s,
           %(codec)s, clock_timestamp()
    FROM ticks
    ORDER BY n
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), notified AS (
    SELECT pg_notify(%(channel)s, {kind_resumed} || min(id)) AS sent
    FROM made
    HAVING count(*) > 0
)
SELECT t.id, m.id IS NOT NULL AS created,
       coalesce(w.name, %(workflow_name)s) AS name,
       (SELECT count(*) FROM notified) AS notified
FROM ticks t
LEFT JOIN made m ON m.id = t.id
LEFT JOIN {schema}.workflows w ON w.id = t.id
ORDER BY t.n
