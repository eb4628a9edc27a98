-- Who runs what: each executor's row says which workflow names and queues it serves,
-- and which process holds it now, so that work nobody serves is reported and two live
-- processes can never share one executor ID.

ALTER TABLE {schema}.executors
    -- a random token made once per engine: the process holding this executor ID now
    ADD COLUMN incarnation text,
    -- where the row's pid means something (the kernel boot and PID namespace on Linux):
    -- a holder in this process's space whose pid is not running is known to be gone
    ADD COLUMN pid_space   text,
    ADD COLUMN names       text[] NOT NULL DEFAULT ARRAY[]::text[],
    ADD COLUMN queues      text[] NOT NULL DEFAULT ARRAY[]::text[];
