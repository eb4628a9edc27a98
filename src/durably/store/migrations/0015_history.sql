-- Listings filtered by a queue and a name together (the dashboard offers both): with an
-- index on each alone, a name that never ran on that queue made the listing read every
-- row of one of them (0.2-0.3 s at 1M workflows). This one gives such a page in order.
-- It costs an entry per insert and per non-HOT update of queued work (enqueue, claim,
-- finish): benchmarks/README.md, History and backlogs.
CREATE INDEX IF NOT EXISTS workflows_queue_name_created ON {schema}.workflows (queue_name, name, created_at)
    WHERE queue_name IS NOT NULL;
