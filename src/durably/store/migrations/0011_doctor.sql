-- What durably doctor needs to measure clock skew between workers: each heartbeat also
-- writes the worker's own clock when it sent the beat, beside the database's
-- (heartbeat_at); their difference is that worker's skew from the database.

ALTER TABLE {schema}.executors ADD COLUMN worker_clock timestamptz;
