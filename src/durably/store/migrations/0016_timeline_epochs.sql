-- A workflow made on a promoted standby (WAL timeline 2, 3, ...) starts at that timeline's
-- lowest epoch, (timeline - 1) * 2^32, instead of 1: every checkpoint is fenced by that
-- floor (fragment_epoch_floor in queries.sql), which shuts out runs that claimed their
-- workflow before a failover. On timeline 1 the default stays 1. Inserts that name no
-- epoch (the engine's, the Client's and the SQL API's) all get it from here.
ALTER TABLE {schema}.workflows ALTER COLUMN epoch SET DEFAULT
    greatest(1, (('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint - 1) << 32);
