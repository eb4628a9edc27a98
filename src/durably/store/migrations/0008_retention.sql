-- Retention (app.gc, durably gc): finished workflows are found oldest first without a
-- scan of the whole table, and a workflow's messages are found by its ID (the index of
-- 0002 holds only unconsumed ones).

CREATE INDEX workflows_finished ON {schema}.workflows (completed_at)
    WHERE status IN ('SUCCESS', 'ERROR', 'CANCELLED');
CREATE INDEX messages_workflow ON {schema}.messages (workflow_id);
