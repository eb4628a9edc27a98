-- Periodic chores of the fleet (the App's retention sweep): when each is next due, so
-- that one worker at a time takes its turn.

CREATE TABLE {schema}.chores (
    name text PRIMARY KEY,
    due_at timestamptz NOT NULL
);
