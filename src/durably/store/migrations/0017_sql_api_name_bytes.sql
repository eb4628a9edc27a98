-- The SQL API's names (queue, workflow name, ID, keys) get the same limits as names given
-- in Python (durably/names.py): at most 512 characters and 1,024 bytes of UTF-8, so a
-- name of many-byte characters cannot build an index row too large to store.
CREATE OR REPLACE FUNCTION {schema}.sql_api_check_name(value text, what text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $sql_api$
BEGIN
    IF value IS NULL OR value = '' OR char_length(value) > 512 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('%s must be a non-empty string of at most 512 characters, got %s',
                             what,
                             CASE WHEN value IS NULL THEN 'NULL'
                                  WHEN char_length(value) > 512
                                  THEN format('%s characters', char_length(value))
                                  ELSE quote_literal(value) END);
    END IF;
    IF octet_length(value) > 1024 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'invalid_parameter_value',
            MESSAGE = format('%s is %s bytes of UTF-8; names hold at most 1024: use a '
                             'shorter one', what, octet_length(value));
    END IF;
    RETURN value;
END
$sql_api$;
REVOKE ALL ON FUNCTION {schema}.sql_api_check_name(text, text) FROM PUBLIC;
