-- The SQL-level API: enqueue work, send messages, read events and statuses from any
-- language with a PostgreSQL driver, through functions (docs/sql-api.md).
--
-- The functions are SECURITY DEFINER: they run with the rights of the role that migrated
-- the schema, so a role granted EXECUTE on one of them (and USAGE on the schema) may use
-- it without any right on the tables. Their search_path is pinned and every name in them
-- is schema-qualified; no SQL is built at run time. EXECUTE is revoked from PUBLIC.
--
-- The schema name, the schema's notification channel (a literal) and the notification
-- kinds are substituted when this file runs (store/sqlfile.render), so literal braces
-- are written doubled here.

-- Every workflow name an executor of this schema has registered, kept after the executor
-- is gone: the SQL enqueue refuses other names (a typo made in another language would
-- otherwise wait for a worker forever). Filled by a trigger on the executors' rows, so
-- it costs nothing on the heartbeat unless an executor brings a name not seen before.
CREATE TABLE {schema}.known_names (
    name       text PRIMARY KEY,
    first_seen timestamptz NOT NULL DEFAULT clock_timestamp()
);

INSERT INTO {schema}.known_names (name)
SELECT DISTINCT n FROM {schema}.executors, unnest(names) AS n ORDER BY n
ON CONFLICT DO NOTHING;

-- SECURITY DEFINER so that an app role with rights only on the tables of 0001..0006 can
-- still heartbeat. Names are inserted in order, so two executors registering the same
-- new names at once cannot deadlock.
CREATE FUNCTION {schema}.remember_names() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $sql_api$
BEGIN
    INSERT INTO {schema}.known_names (name)
    SELECT DISTINCT n FROM unnest(NEW.names) AS n
    WHERE NOT EXISTS (SELECT 1 FROM {schema}.known_names k WHERE k.name = n)
    ORDER BY n
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$sql_api$;
REVOKE ALL ON FUNCTION {schema}.remember_names() FROM PUBLIC;

CREATE TRIGGER executors_known_names AFTER INSERT ON {schema}.executors
    FOR EACH ROW EXECUTE FUNCTION {schema}.remember_names();
-- The heartbeat rewrites names on every beat: only a beat that brings a new one fires.
CREATE TRIGGER executors_new_names AFTER UPDATE OF names ON {schema}.executors
    FOR EACH ROW WHEN (NOT OLD.names @> NEW.names)
    EXECUTE FUNCTION {schema}.remember_names();


-- Internal helpers (not granted to anyone: the API functions call them as their owner).

-- A name (queue, workflow name, key): a non-empty string of at most 512 characters, as
-- options.check_name.
CREATE FUNCTION {schema}.sql_api_check_name(value text, what text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $sql_api$
BEGIN
    IF value IS NULL OR value = '' OR char_length(value) > 512 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('%s must be a non-empty string of at most 512 characters, got %s',
                             what,
                             CASE WHEN value IS NULL THEN 'NULL'
                                  WHEN char_length(value) > 512
                                  THEN format('%s characters', char_length(value))
                                  ELSE quote_literal(value) END);
    END IF;
    RETURN value;
END
$sql_api$;
REVOKE ALL ON FUNCTION {schema}.sql_api_check_name(text, text) FROM PUBLIC;

-- A JSON value the workers can load back: durably's codec writes at most 1000 nested
-- arrays and objects and no integer longer than 4300 digits (Python's limit for turning
-- text into an int); a stored value beyond either would fail every worker that reads it.
CREATE FUNCTION {schema}.sql_api_check_value(value jsonb, what text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $sql_api$
BEGIN
    IF jsonb_path_exists(value,
                         'strict $.**{{1000}} ? (@.type() == "array" || @.type() == "object")')
    THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('%s is nested deeper than 1000 levels of arrays and objects', what),
            HINT = 'durably stores values nested at most 1000 levels deep; flatten the value.';
    END IF;
    IF jsonb_path_exists(value,
                         'strict $.** ? (@.type() == "number" && (@ >= 1e4300 || @ <= -1e4300))')
    THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('%s holds a number of more than 4300 digits', what),
            HINT = 'Python cannot read such a number back; send it as a string.';
    END IF;
    RETURN value;
END
$sql_api$;
REVOKE ALL ON FUNCTION {schema}.sql_api_check_value(jsonb, text) FROM PUBLIC;

-- The workflow inputs, as durably's codec stores them: {{"args": [...], "kwargs": {{...}}}}.
CREATE FUNCTION {schema}.sql_api_inputs(args jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $sql_api$
DECLARE
    shape constant text := 'args must be a JSON array of positional arguments, or an object '
                           '{{"args": [...], "kwargs": {{...}}}}';
    positional jsonb;
    named jsonb;
    extra text;
BEGIN
    IF args IS NULL THEN
        RETURN '{{"args": [], "kwargs": {{}}}}'::jsonb;
    END IF;
    CASE jsonb_typeof(args)
    WHEN 'array' THEN
        positional := args;
        named := '{{}}'::jsonb;
    WHEN 'object' THEN
        SELECT string_agg(to_jsonb(k)::text, ', ' ORDER BY k) INTO extra
        FROM jsonb_object_keys(args) AS k
        WHERE k NOT IN ('args', 'kwargs');
        IF extra IS NOT NULL THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('%s; got an object with the key(s) %s', shape, extra),
                HINT = 'Put positional arguments under "args" and named ones under "kwargs".';
        END IF;
        positional := coalesce(args -> 'args', '[]'::jsonb);
        named := coalesce(args -> 'kwargs', '{{}}'::jsonb);
        IF jsonb_typeof(positional) <> 'array' OR jsonb_typeof(named) <> 'object' THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('%s; got "args" as JSON %s and "kwargs" as JSON %s',
                                 shape, jsonb_typeof(positional), jsonb_typeof(named));
        END IF;
    ELSE
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('%s; got JSON %s', shape, jsonb_typeof(args)),
            HINT = 'A single argument is still an array: ''[42]'', not ''42''.';
    END CASE;
    RETURN {schema}.sql_api_check_value(
        jsonb_build_object('args', positional, 'kwargs', named), 'args');
END
$sql_api$;
REVOKE ALL ON FUNCTION {schema}.sql_api_inputs(jsonb) FROM PUBLIC;

-- An option that must be a JSON string (null or absent: not given).
CREATE FUNCTION {schema}.sql_api_text_option(options jsonb, key text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $sql_api$
DECLARE
    value jsonb := options -> key;
BEGIN
    IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> 'string' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('option "%s" must be a JSON string, got JSON %s',
                             key, jsonb_typeof(value));
    END IF;
    RETURN {schema}.sql_api_check_name(options ->> key, format('option "%s"', key));
END
$sql_api$;
REVOKE ALL ON FUNCTION {schema}.sql_api_text_option(jsonb, text) FROM PUBLIC;

-- An option that must be a JSON number (null or absent: not given).
CREATE FUNCTION {schema}.sql_api_number_option(options jsonb, key text) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $sql_api$
DECLARE
    value jsonb := options -> key;
BEGIN
    IF value IS NULL OR jsonb_typeof(value) = 'null' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(value) <> 'number' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('option "%s" must be a JSON number, got JSON %s (%s)',
                             key, jsonb_typeof(value), left(value::text, 60));
    END IF;
    RETURN (options ->> key)::numeric;
END
$sql_api$;
REVOKE ALL ON FUNCTION {schema}.sql_api_number_option(jsonb, text) FROM PUBLIC;


-- enqueue(queue, workflow_name, args, options): what Client.enqueue(queue, name, *args,
-- **kwargs) does, from SQL. Returns the workflow ID.
CREATE FUNCTION {schema}.enqueue(
    queue text,
    workflow_name text,
    args jsonb DEFAULT '[]',
    options jsonb DEFAULT '{{}}'
) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $sql_api$
#variable_conflict use_column
DECLARE
    opts jsonb := coalesce(enqueue.options, '{{}}'::jsonb);
    extra text;
    stored jsonb;
    wanted_id text;
    prio numeric;
    dedup text;
    part text;
    delay_s numeric;
    timeout_s numeric;
    if_dup text;
    allow_unknown boolean := false;
    allows_priority boolean;
    available timestamptz;
    new_status text;
    new_available timestamptz;
    existing_name text;
    holder text;
    result text;
    noticed text;
    tag text;
BEGIN
    PERFORM {schema}.sql_api_check_name(enqueue.queue, 'queue');
    PERFORM {schema}.sql_api_check_name(enqueue.workflow_name, 'workflow_name');
    stored := {schema}.sql_api_inputs(enqueue.args);

    IF jsonb_typeof(opts) <> 'object' THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('options must be a JSON object, got JSON %s', jsonb_typeof(opts)),
            HINT = 'For example {{"priority": 5, "delay": 60}}.';
    END IF;
    SELECT string_agg(to_jsonb(k)::text, ', ' ORDER BY k) INTO extra
    FROM jsonb_object_keys(opts) AS k
    WHERE k NOT IN ('id', 'priority', 'dedup_key', 'partition_key', 'delay', 'timeout',
                    'if_duplicate', 'allow_unknown');
    IF extra IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('unknown option(s) %s', extra),
            HINT = 'The options are "id", "priority", "dedup_key", "partition_key", "delay", '
                   '"timeout", "if_duplicate" and "allow_unknown".';
    END IF;

    wanted_id := {schema}.sql_api_text_option(opts, 'id');
    dedup := {schema}.sql_api_text_option(opts, 'dedup_key');
    part := {schema}.sql_api_text_option(opts, 'partition_key');
    if_dup := coalesce({schema}.sql_api_text_option(opts, 'if_duplicate'), 'raise');
    IF if_dup NOT IN ('raise', 'existing') THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('option "if_duplicate" must be "raise" or "existing", got %s',
                             to_jsonb(if_dup)::text);
    END IF;

    prio := {schema}.sql_api_number_option(opts, 'priority');
    IF prio IS NOT NULL AND (prio <> trunc(prio) OR prio < 1 OR prio > 2147483647) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('option "priority" must be a whole number between 1 and '
                             '2147483647 (lower runs first), got %s', prio);
    END IF;

    delay_s := {schema}.sql_api_number_option(opts, 'delay');
    IF delay_s IS NOT NULL AND (delay_s < 0 OR delay_s > 3153600000) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('option "delay" must be a number of seconds from 0 to 3153600000 '
                             '(about 100 years), got %s', delay_s);
    END IF;

    timeout_s := {schema}.sql_api_number_option(opts, 'timeout');
    IF timeout_s IS NOT NULL AND (timeout_s <= 0 OR timeout_s > 3153600000) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('option "timeout" must be a positive number of seconds, at most '
                             '3153600000 (about 100 years), got %s', timeout_s);
    END IF;

    IF opts ? 'allow_unknown' AND jsonb_typeof(opts -> 'allow_unknown') <> 'null' THEN
        IF jsonb_typeof(opts -> 'allow_unknown') <> 'boolean' THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('option "allow_unknown" must be true or false, got JSON %s',
                                 jsonb_typeof(opts -> 'allow_unknown'));
        END IF;
        allow_unknown := (opts -> 'allow_unknown')::boolean;
    END IF;

    IF NOT allow_unknown AND NOT EXISTS (
        SELECT 1 FROM {schema}.known_names k WHERE k.name = enqueue.workflow_name
    ) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('no worker of this app has ever registered a workflow named %s',
                             quote_literal(enqueue.workflow_name)),
            HINT = 'Enqueue by the exact name a worker registers: the name= given to '
                   '@app.workflow(...), else the function''s qualified name without its '
                   'module. To enqueue it before any worker that declares it has run, pass '
                   '"allow_unknown": true in options (it then waits until one does).';
    END IF;

    -- As execution/queueing.check_priority: a queue declared without priorities refuses
    -- them; one nobody declared yet takes them (its declaration drops them if need be).
    IF prio IS NOT NULL THEN
        SELECT q.priority INTO allows_priority FROM {schema}.queues q WHERE q.name = enqueue.queue;
        IF FOUND AND NOT allows_priority THEN
            RAISE EXCEPTION USING
                ERRCODE = 'invalid_parameter_value',
                MESSAGE = format('queue %s was declared without priority=True; priorities are '
                                 'refused', quote_literal(enqueue.queue)),
                HINT = format('Declare it with app.queue(%s, priority=True) to use them.',
                              quote_literal(enqueue.queue));
        END IF;
    END IF;

    IF wanted_id IS NULL THEN
        wanted_id := gen_random_uuid()::text;
    END IF;
    IF delay_s IS NOT NULL THEN
        available := clock_timestamp() + make_interval(secs => delay_s::float8);
    END IF;

    -- As execution/queueing.enqueue: the same ID twice is one workflow; a held dedup key
    -- raises (or gives its holder); a holder that finished meanwhile frees the key.
    FOR attempt IN 1..20 LOOP
        INSERT INTO {schema}.workflows AS w
            (id, name, status, inputs, executor_id, max_recovery_attempts, codec,
             timeout_seconds, queue_name, priority, dedup_key, partition_key, available_at,
             enqueued_at, parent_id, parent_step)
        VALUES (wanted_id, enqueue.workflow_name,
                CASE WHEN available > clock_timestamp() THEN 'DELAYED' ELSE 'ENQUEUED' END,
                stored, NULL,
                -- WorkflowSpec's default, as for a Client enqueue (no workflow code here)
                50, 'json', timeout_s::float8, enqueue.queue, prio::integer, dedup, part,
                available, clock_timestamp(), NULL, NULL)
        ON CONFLICT DO NOTHING
        RETURNING w.status, w.available_at INTO new_status, new_available;
        IF FOUND THEN
            -- The same notifications as store/queues.sql enqueue (sent at commit).
            IF new_status = 'ENQUEUED' THEN
                PERFORM pg_notify({channel}, {kind_queued} || enqueue.queue);
            ELSE
                PERFORM pg_notify({channel}, {kind_delayed} || extract(epoch FROM new_available)
                                             || ':' || enqueue.queue);
            END IF;
            result := wanted_id;
            EXIT;
        END IF;
        SELECT w.name INTO existing_name FROM {schema}.workflows w WHERE w.id = wanted_id;
        IF FOUND THEN
            IF existing_name <> enqueue.workflow_name THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'unique_violation',
                    MESSAGE = format('workflow id %s already belongs to workflow %s; it cannot '
                                     'be started as %s', quote_literal(wanted_id),
                                     quote_literal(existing_name),
                                     quote_literal(enqueue.workflow_name)),
                    HINT = 'Choose another id.';
            END IF;
            result := wanted_id;
            EXIT;
        END IF;
        IF dedup IS NOT NULL THEN
            SELECT w.id INTO holder FROM {schema}.workflows w
            WHERE w.queue_name = enqueue.queue AND w.dedup_key = dedup
              AND w.status IN ('ENQUEUED', 'DELAYED', 'PENDING');
            IF FOUND THEN
                IF if_dup = 'existing' THEN
                    result := holder;
                    EXIT;
                END IF;
                RAISE EXCEPTION USING
                    ERRCODE = 'unique_violation',
                    MESSAGE = format('queue %s already has an active workflow with dedup_key %s '
                                     '(workflow %s)', quote_literal(enqueue.queue),
                                     quote_literal(dedup), quote_literal(holder)),
                    HINT = 'Wait for it to finish, or pass "if_duplicate": "existing" in '
                           'options to get its ID.';
            END IF;
        END IF;
    END LOOP;
    IF result IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'serialization_failure',
            MESSAGE = 'the workflow could not be enqueued: its ID or dedup_key was taken and '
                      'freed again too often',
            HINT = 'Call enqueue again.';
    END IF;

    -- As runtime/served.check_enqueued: say when no live worker serves this work (a
    -- notice, not an error: it waits until one does), once per session for each name and
    -- queue (a setting of the session remembers which), so a batch is not drowned in them.
    noticed := coalesce(current_setting('durably.unserved_noticed', true), '');
    tag := left(encode(sha256(convert_to({channel} || E'\n' || enqueue.queue || E'\n'
                                         || enqueue.workflow_name, 'UTF8')), 'hex'), 16);
    IF position(tag IN noticed) = 0 AND NOT EXISTS (
        SELECT 1 FROM {schema}.executors e
        WHERE e.heartbeat_at + make_interval(secs => e.lease_seconds) >= now()
          AND enqueue.workflow_name = ANY(e.names) AND enqueue.queue = ANY(e.queues)
    ) THEN
        -- the last 64 remembered
        PERFORM set_config('durably.unserved_noticed', right(noticed || tag || ' ', 17 * 64),
                           false);
        RAISE NOTICE USING
            MESSAGE = format('no live worker serves workflow %s on queue %s; it is recorded '
                             'and waits until one does', quote_literal(enqueue.workflow_name),
                             quote_literal(enqueue.queue)),
            HINT = 'Run a worker whose code declares that workflow and listens to that queue.';
    END IF;
    RETURN result;
END
$sql_api$;
REVOKE ALL ON FUNCTION {schema}.enqueue(text, text, jsonb, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION {schema}.enqueue(text, text, jsonb, jsonb) IS
    'Enqueue workflow workflow_name on queue with args (a JSON array, or {{"args": [...], '
    '"kwargs": {{...}}}}) and options (id, priority, dedup_key, partition_key, delay, timeout, '
    'if_duplicate, allow_unknown); returns the workflow ID. See durably''s docs/sql-api.md.';


-- send(workflow_id, message, topic, idempotency_key): what Client.send does, from SQL.
CREATE FUNCTION {schema}.send(
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
        WHERE w.id = send.workflow_id AND w.status = 'PENDING' AND w.executor_id IS NULL
          AND w.wait_kind = 'recv' AND w.wait_topic IS NOT DISTINCT FROM send.topic;
        PERFORM pg_notify({channel}, {kind_message} || send.workflow_id);
    END IF;
END
$sql_api$;
REVOKE ALL ON FUNCTION {schema}.send(text, jsonb, text, text) FROM PUBLIC;
COMMENT ON FUNCTION {schema}.send(text, jsonb, text, text) IS
    'Send message (JSON) to a workflow on topic (NULL: the default topic); the same '
    'idempotency_key delivers once. Raises no_data_found for an unknown workflow.';


-- get_event(workflow_id, key): the latest value of a workflow's event as stored, or NULL
-- when it is not set (or the workflow does not exist). Never waits.
CREATE FUNCTION {schema}.get_event(workflow_id text, key text) RETURNS jsonb
LANGUAGE plpgsql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $sql_api$
#variable_conflict use_column
BEGIN
    RETURN (SELECT e.value FROM {schema}.events e
            WHERE e.workflow_id = get_event.workflow_id AND e.key = get_event.key
            ORDER BY e.step DESC
            LIMIT 1);
END
$sql_api$;
REVOKE ALL ON FUNCTION {schema}.get_event(text, text) FROM PUBLIC;
COMMENT ON FUNCTION {schema}.get_event(text, text) IS
    'The latest value a workflow set for an event (JSON as stored), or NULL when unset.';


-- workflow_status(workflow_id): PENDING, ENQUEUED, DELAYED, SUCCESS, ERROR, CANCELLED or
-- DEAD_LETTER; NULL for an unknown ID.
CREATE FUNCTION {schema}.workflow_status(workflow_id text) RETURNS text
LANGUAGE plpgsql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $sql_api$
#variable_conflict use_column
BEGIN
    RETURN (SELECT w.status FROM {schema}.workflows w WHERE w.id = workflow_status.workflow_id);
END
$sql_api$;
REVOKE ALL ON FUNCTION {schema}.workflow_status(text) FROM PUBLIC;
COMMENT ON FUNCTION {schema}.workflow_status(text) IS
    'A workflow''s status (PENDING, ENQUEUED, DELAYED, SUCCESS, ERROR, CANCELLED, '
    'DEAD_LETTER), or NULL for an unknown ID.';
