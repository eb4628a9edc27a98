-- Code versions (migration 0012, docs/upgrades.md): moving work between versions, and
-- finding work that no live executor recovers because of its version.

-- name: set_version
-- Move unfinished workflows (and cancelled or dead-lettered ones, which may be resumed)
-- to another application version, so that workers recovering that version take them.
-- Only the version changes: owner, epoch and lease stay, so a run going on now is not
-- disturbed (it goes on, or is fenced, exactly as before), and updated_at stays, since
-- an executor's launch tells its own leftovers by it. Finished work never runs again.
UPDATE {schema}.workflows
SET app_version = %(to_version)s
WHERE status IN ('PENDING', 'ENQUEUED', 'DELAYED', 'CANCELLED', 'DEAD_LETTER')
  AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))
  AND (%(from_version)s::text IS NULL OR app_version = %(from_version)s)
  AND (%(status)s::text[] IS NULL OR status = ANY(%(status)s::text[]))
  AND (%(name)s::text IS NULL OR name = %(name)s)
  AND app_version IS DISTINCT FROM %(to_version)s
RETURNING id

-- name: stranded_versions
-- Versions of unfinished work under names this executor registers, but of versions it
-- does not recover, that no live executor recovers either: nothing runs it until a worker
-- of that version comes, or it is moved (set_version). Reads all unfinished work of
-- those names: run rarely (the census).
WITH live AS MATERIALIZED (
    SELECT names, recover_versions FROM {schema}.executors
    WHERE heartbeat_at + make_interval(secs => lease_seconds) >= now()
)
SELECT w.app_version, count(*)::int AS workflows
FROM {schema}.workflows w
WHERE w.status IN ('PENDING', 'ENQUEUED', 'DELAYED') AND w.app_version IS NOT NULL
  AND w.name = ANY(%(names)s::text[])
  AND NOT w.app_version = ANY(%(versions)s::text[])
  AND NOT EXISTS (SELECT 1 FROM live
                  WHERE w.name = ANY(live.names)
                    AND (live.recover_versions IS NULL
                         OR w.app_version = ANY(live.recover_versions)))
GROUP BY w.app_version
ORDER BY w.app_version
