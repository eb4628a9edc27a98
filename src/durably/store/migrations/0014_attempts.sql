-- How many attempts a step or transaction took before its recorded outcome (its retry
-- policy's runs; NULL for other operations and for rows written before this column: 1).

ALTER TABLE {schema}.operations ADD COLUMN attempts integer;
