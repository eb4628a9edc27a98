-- The SQL API's send() finds its receiver by ID alone: the wake-up tests the status as
-- "(status || '') = 'PENDING'", which no index serves, as every statement of queries.sql
-- that finds a workflow by its ID does. With "status = 'PENDING'" the planner may walk
-- an index of every unfinished workflow (workflows_unfinished was seen) instead of the
-- primary key when the statistics were taken while few workflows were PENDING.
-- Privileges and the comment stay as 0007 set them.
CREATE OR REPLACE FUNCTION {schema}.send(
    workflow_id text,
    message jsonb,
    topic text DEFAULT NULL,
    idempotency_key text DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $sql_api$
#variable_conflict use_column
DECLARE
    -- SQL NULL is sent as JSON null, as Python's send(id, None)
    payload jsonb := {schema}.sql_api_check_value(coalesce(send.message, 'null'::jsonb),
                                                  'message');
    sent text;
BEGIN
    PERFORM {schema}.sql_api_check_name(send.workflow_id, 'workflow_id');
    IF send.idempotency_key IS NOT NULL THEN
        PERFORM {schema}.sql_api_check_name(send.idempotency_key, 'idempotency_key');
    END IF;
    -- As execution/waits.send_outside: the receiver's row is locked first, so a workflow
    -- parking on this topic at the same moment sees the message or is woken by it.
    PERFORM 1 FROM {schema}.workflows w WHERE w.id = send.workflow_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'no_data_found',
            MESSAGE = format('no workflow with id %s exists', quote_literal(send.workflow_id)),
            HINT = 'Send to the ID that enqueue returned; a message to a workflow that does '
                   'not exist would be lost, so it is refused.';
    END IF;
    INSERT INTO {schema}.messages AS m (workflow_id, topic, value, idempotency_key)
    VALUES (send.workflow_id, send.topic, payload, send.idempotency_key)
    ON CONFLICT (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING m.workflow_id INTO sent;
    IF sent IS NOT NULL THEN
        -- As store/queries.sql send_message: wake the receiver if it is parked on this
        -- topic, and tell live processes (at commit).
        UPDATE {schema}.workflows w SET wake_at = clock_timestamp()
        WHERE w.id = send.workflow_id AND (w.status || '') = 'PENDING'
          AND w.executor_id IS NULL AND w.wait_kind = 'recv'
          AND w.wait_topic IS NOT DISTINCT FROM send.topic;
        PERFORM pg_notify({channel}, {kind_message} || send.workflow_id);
    END IF;
END
$sql_api$;
