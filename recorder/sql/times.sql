-- The times telemetry accepts: the one check of every time a caller passes in (a run's begin
-- or end, an analysis window, a collection's instant) and of the times stored runs hold.
-- A finite time from 2000-01-01 to a day ahead of now (clocks differ): a run begun at
-- 'infinity' or in the year 12000 is a row no reader can show (Go and JSON end at 9999) and
-- a window no analysis can divide.
CREATE OR REPLACE FUNCTION telemetry._time_ok(p_at timestamptz) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT p_at >= '2000-01-01 00:00:00+00' AND p_at <= now() + interval '1 day'
$$;

-- _check_time returns p_at, or raises (SQLSTATE 22008) where it is NULL or not a time
-- _time_ok accepts; p_what names it in the message.
CREATE OR REPLACE FUNCTION telemetry._check_time(p_at timestamptz, p_what text) RETURNS timestamptz
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_at IS NULL OR NOT telemetry._time_ok(p_at) THEN
        RAISE EXCEPTION '% (%) must be a finite time from 2000-01-01 to a day from now', p_what, coalesce(p_at::text, 'NULL')
            USING ERRCODE = 'datetime_field_overflow', HINT = 'For example: now() - interval ''1 day''';
    END IF;
    RETURN p_at;
END
$$;

-- _run_times_ok tells a stored run whose times _time_ok accepts (an open run has no end):
-- readers skip the others, and say so.
CREATE OR REPLACE FUNCTION telemetry._run_times_ok(p_started_at timestamptz, p_ended_at timestamptz) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(telemetry._time_ok(p_started_at), false) AND (p_ended_at IS NULL OR telemetry._time_ok(p_ended_at))
$$;
