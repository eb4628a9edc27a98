-- Code versions (docs/upgrades.md): each workflow records the application version that
-- started it (NULL while queued and not yet started, or made before this migration: any
-- version may run it, and the first that does records its own), and each executor the
-- version it runs and those it recovers (NULL: any, as executors of earlier releases do).

ALTER TABLE {schema}.workflows ADD COLUMN app_version text;
ALTER TABLE {schema}.executors
    ADD COLUMN app_version      text,
    ADD COLUMN recover_versions text[];
-- Moving stuck work to another version, and listing by version, look at unfinished work.
CREATE INDEX workflows_version ON {schema}.workflows (app_version)
    WHERE status IN ('PENDING', 'ENQUEUED', 'DELAYED');
