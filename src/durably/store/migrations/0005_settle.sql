-- Settling writes whose outcome is unknown (the connection broke after the statement
-- was sent) and knowing which run wrote each checkpoint.

-- The token of the statement that last gave this workflow its owner and epoch (a start,
-- a claim, a wake-up, a takeover). A retry of that statement finds its own earlier
-- effect by this token instead of claiming, starting or consuming something else.
ALTER TABLE {schema}.workflows ADD COLUMN claim_token text;

-- The fencing epoch of the run that wrote each operation (NULL for rows written before
-- this migration, and for copies made by fork).
ALTER TABLE {schema}.operations ADD COLUMN epoch bigint;
