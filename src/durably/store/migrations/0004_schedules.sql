-- Cron schedules: one row per schedule, shared by every worker of the app.
--
-- A tick is the workflow with ID 'sched:<name>:<tick time in UTC>'; creating it is an
-- INSERT ... ON CONFLICT DO NOTHING, so whichever worker gets there first runs it.
-- last_tick / next_tick only save work: they are advanced by a conditional UPDATE
-- (guarded by last_tick and revision) after the tick's workflow exists.

CREATE TABLE {schema}.schedules (
    name          text PRIMARY KEY,
    workflow_name text NOT NULL,
    cron          text NOT NULL,
    timezone      text NOT NULL DEFAULT 'UTC',
    catch_up      boolean NOT NULL DEFAULT false,
    paused        boolean NOT NULL DEFAULT false,
    -- the latest tick handled (run, or skipped when catch_up is off)
    last_tick     timestamptz,
    -- the first tick after last_tick (or after creation / resume); NULL: never again
    next_tick     timestamptz,
    -- bumped by every change of definition or state: a worker that computed the next
    -- tick from an older revision does not write it
    revision      bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The scheduler's one query per check: active schedules by due time.
CREATE INDEX schedules_due ON {schema}.schedules (next_tick) WHERE NOT paused;
