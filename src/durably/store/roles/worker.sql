-- The least a worker's role needs on a schema that another role created and upgrades
-- (durably migrate --grant ROLE): run in this order, in one transaction, after the
-- migrations. The schema and role placeholders are identifiers, quoted by psycopg.sql.
-- Nothing here lets the role create, alter or drop anything: it owns nothing, and has no
-- CREATE on the schema. The functions of the SQL API (0007) are not granted: a worker
-- never calls them (grant EXECUTE on one to a role that should, docs/sql-api.md).
-- Kept out of the statements beside store/*.sql: these take a role as well as a schema.

-- name: grant_schema_usage
-- Look up the schema's objects (USAGE only, no CREATE).
GRANT USAGE ON SCHEMA {schema} TO {role}

-- name: grant_tables
-- Read and write the rows of every table: workflows, steps, queues, schedules, ...
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}

-- name: revoke_migrations_writes
-- The record of applied migrations is read at launch (is the schema up to date?) and
-- written only by whoever migrates.
REVOKE INSERT, UPDATE, DELETE ON {schema}.migrations FROM {role}

-- name: grant_sequences
-- Take the next value of the schema's sequences (message IDs).
GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}

-- name: grant_future_tables
-- The same rights on tables a later version of durably creates here, when the role that
-- runs its migrations is the one running these grants (default privileges belong to the
-- role that creates the objects): an upgrade needs no new grant.
ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}

-- name: grant_future_sequences
-- And on its later sequences.
ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE ON SEQUENCES TO {role}

-- name: role_facts
-- Whether the role exists, and whether grants would mean anything for it (a superuser
-- or the schema's owner has every right anyway).
SELECT r.rolsuper AS superuser,
       coalesce(pg_has_role(r.oid, n.nspowner, 'USAGE'), false) AS owner
FROM pg_roles r
LEFT JOIN pg_namespace n ON n.nspname = %(schema)s
WHERE r.rolname = %(role)s
