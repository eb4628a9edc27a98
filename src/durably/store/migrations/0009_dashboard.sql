-- Listings that page newest first by (created_at, id) stay on an index whatever the
-- table's size, when filtered by status, by name or by queue (the dashboard and
-- `durably workflows list`); unfiltered listings use workflows_created of 0001.

CREATE INDEX workflows_status_created ON {schema}.workflows (status, created_at);
CREATE INDEX workflows_name_created ON {schema}.workflows (name, created_at);
CREATE INDEX workflows_queue_created ON {schema}.workflows (queue_name, created_at)
    WHERE queue_name IS NOT NULL;
