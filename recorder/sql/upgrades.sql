-- What the definitions after this file use to change themselves on an upgrade, applied first.

-- _drop_if_result_lacks drops a function whose result has no column p_column: a definition
-- changing a function's result, which CREATE OR REPLACE cannot, calls it first.
CREATE OR REPLACE FUNCTION telemetry._drop_if_result_lacks(p_function text, p_column text)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_function regprocedure := pg_catalog.to_regprocedure(p_function);
    v_names text[] := (SELECT p.proargnames FROM pg_catalog.pg_proc p WHERE p.oid = v_function);
BEGIN
    IF v_function IS NOT NULL AND NOT p_column = ANY (v_names) THEN
        EXECUTE format('DROP FUNCTION %s', v_function);
    END IF;
END
$$;
REVOKE EXECUTE ON FUNCTION telemetry._drop_if_result_lacks(text, text) FROM PUBLIC;
