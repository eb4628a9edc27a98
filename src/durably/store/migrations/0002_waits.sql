-- Durable waits and communication: messages, events, streams, parking, timeouts.

ALTER TABLE {schema}.workflows
    -- absolute deadline of wf.options(timeout=...): the workflow is cancelled when it passes
    ADD COLUMN deadline timestamptz,
    ADD COLUMN timeout_seconds double precision,
    -- a parked workflow (PENDING, executor_id NULL) is woken at wake_at by any executor
    ADD COLUMN wake_at timestamptz,
    -- what a parked workflow waits for: 'sleep', 'recv' (wait_topic) or 'event'
    -- (wait_target's key wait_topic); recv's durable deadline is kept per step
    ADD COLUMN wait_kind text,
    ADD COLUMN wait_target text,
    ADD COLUMN wait_topic text,
    ADD COLUMN wait_step integer,
    ADD COLUMN wait_deadline timestamptz;

-- Somebody outside waits for these outcomes: notify when each is recorded. A table of
-- its own, so that asking never locks the workflow row (parked-workflow claims skip
-- locked rows).
CREATE TABLE {schema}.watchers (
    workflow_id text PRIMARY KEY,
    since       timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Parked workflows, by wake-up time (the timer scan of every executor).
CREATE INDEX workflows_parked ON {schema}.workflows (wake_at)
    WHERE status = 'PENDING' AND executor_id IS NULL;
-- Parked workflows waiting for another workflow's event.
CREATE INDEX workflows_event_waits ON {schema}.workflows (wait_target, wait_topic)
    WHERE wait_kind = 'event' AND executor_id IS NULL;
-- Running workflows with a deadline.
CREATE INDEX workflows_deadline ON {schema}.workflows (deadline)
    WHERE status = 'PENDING' AND deadline IS NOT NULL;

CREATE TABLE {schema}.messages (
    id              bigserial PRIMARY KEY,
    workflow_id     text NOT NULL,
    topic           text,
    value           jsonb,
    idempotency_key text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    consumed_at     timestamptz,
    consumed_step   integer
);
CREATE INDEX messages_unconsumed ON {schema}.messages (workflow_id, id)
    WHERE consumed_at IS NULL;
CREATE UNIQUE INDEX messages_idempotency ON {schema}.messages (workflow_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Every value ever set for an event (the latest wins); step is the setting operation,
-- so a fork copies exactly the values set before its fork point.
CREATE TABLE {schema}.events (
    workflow_id text NOT NULL,
    key         text NOT NULL,
    step        integer NOT NULL,
    value       jsonb,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workflow_id, key, step)
);

-- Stream entries in write order (step); a closing entry has closed = true.
CREATE TABLE {schema}.streams (
    workflow_id text NOT NULL,
    key         text NOT NULL,
    step        integer NOT NULL,
    value       jsonb,
    closed      boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (workflow_id, key, step)
);
