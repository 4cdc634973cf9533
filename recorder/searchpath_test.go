package recorder

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// plantedObjects are what a role that may create in public plants before the schema is
// installed: each matches its arguments' types exactly, so it beats pg_catalog's under a
// search_path that includes public, and each records that it ran in public.planted_runs.
const plantedObjects = `
CREATE TABLE public.planted_runs (what text);
GRANT INSERT ON public.planted_runs TO PUBLIC;
CREATE FUNCTION public.planted_div(double precision, bigint) RETURNS double precision
LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.planted_runs VALUES ('/'); RETURN $1 / $2::double precision; END $$;
CREATE OPERATOR public./ (LEFTARG = double precision, RIGHTARG = bigint, FUNCTION = public.planted_div);
CREATE FUNCTION public.planted_mul(numeric, bigint) RETURNS numeric
LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.planted_runs VALUES ('*'); RETURN $1 * $2::numeric; END $$;
CREATE OPERATOR public.* (LEFTARG = numeric, RIGHTARG = bigint, FUNCTION = public.planted_mul);
CREATE FUNCTION public.unnest(integer[]) RETURNS SETOF integer
LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.planted_runs VALUES ('unnest'); RETURN QUERY SELECT pg_catalog.unnest($1); END $$;
CREATE FUNCTION public.round(double precision, integer) RETURNS numeric
LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.planted_runs VALUES ('round'); RETURN pg_catalog.round($1::numeric, $2); END $$;
CREATE FUNCTION public.to_char(date, text) RETURNS text
LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.planted_runs VALUES ('to_char'); RETURN pg_catalog.to_char($1::timestamp, $2); END $$;
CREATE FUNCTION public.format(text, text, text) RETURNS text
LANGUAGE plpgsql AS $$ BEGIN INSERT INTO public.planted_runs VALUES ('format'); RETURN pg_catalog.format($1, $2, $3); END $$;
`

// plantAttackerObjects creates a role that may create in public and plants plantedObjects as it.
func plantAttackerObjects(t *testing.T, srv *pgtest.Server, dsn string) {
	t.Helper()
	attacker := "attacker_" + strings.TrimPrefix(mustParseURL(t, dsn).Path, "/")
	srv.Exec(t, dsn, fmt.Sprintf(`CREATE ROLE %[1]s; GRANT CREATE ON SCHEMA public TO %[1]s;
		SET ROLE %[1]s; %[2]s RESET ROLE`, attacker, plantedObjects))
	t.Cleanup(func() { srv.Exec(t, dsn, fmt.Sprintf(`DROP OWNED BY %[1]s CASCADE; DROP ROLE %[1]s`, attacker)) })
}

// checkNothingBoundToPublic fails for every view, function, default or constraint of the
// telemetry schema that refers to an object in public.
func checkNothingBoundToPublic(t *testing.T, c *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	// Definitions printed where only the catalogs are visible name public's objects in full.
	if _, err := c.Exec(ctx, `SET search_path = pg_catalog, pg_temp`); err != nil {
		t.Fatal(err)
	}
	defer c.Exec(ctx, `RESET search_path`)
	rows := pgtest.Query(t, c, `
		SELECT 'view ' || c.oid::regclass::text AS object, pg_get_viewdef(c.oid) AS definition
		FROM pg_class c WHERE c.relnamespace = 'telemetry'::regnamespace AND c.relkind IN ('v', 'm')
		UNION ALL
		SELECT 'function ' || p.oid::regprocedure::text, pg_get_functiondef(p.oid)
		FROM pg_proc p WHERE p.pronamespace = 'telemetry'::regnamespace
		UNION ALL
		SELECT 'default of ' || d.adrelid::regclass::text, pg_get_expr(d.adbin, d.adrelid)
		FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid WHERE c.relnamespace = 'telemetry'::regnamespace`)
	if len(rows) < 40 {
		t.Fatalf("only %d definitions in telemetry", len(rows))
	}
	for _, r := range rows {
		if def := r["definition"].(string); strings.Contains(def, "public.") {
			t.Errorf("%s refers to public:\n%s", r["object"], def)
		}
	}
	// And what the catalogs record each object depends on.
	for _, r := range pgtest.Query(t, c, `
		SELECT DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid) AS object,
			pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid) AS uses
		FROM pg_depend d
		WHERE (pg_identify_object(d.classid, d.objid, d.objsubid)).schema = 'telemetry'
		  AND (pg_identify_object(d.refclassid, d.refobjid, d.refobjsubid)).schema = 'public'`) {
		t.Errorf("%s depends on %s", r["object"], r["uses"])
	}
}

// readEverything reads every telemetry view and calls the read functions over [start, end]
// in a session with the default search_path ("$user", public), as a Grafana reader's is.
func readEverything(t *testing.T, c *pgx.Conn, start, end time.Time) {
	t.Helper()
	views := pgtest.Query(t, c, `SELECT c.oid::regclass::text AS view FROM pg_class c
		WHERE c.relnamespace = 'telemetry'::regnamespace AND c.relkind = 'v' ORDER BY 1`)
	if len(views) < 8 {
		t.Fatalf("only %d views in telemetry", len(views))
	}
	for _, v := range views {
		pgtest.Query(t, c, `SELECT * FROM `+v["view"].(string))
	}
	for _, sql := range []string{
		`SELECT * FROM telemetry.compare($1, $2)`,
		`SELECT * FROM telemetry.table_compare('orders', $1, $2)`,
		`SELECT * FROM telemetry.wait_summary($1, $2)`,
		`SELECT * FROM telemetry.client_wait_summary($1, $2)`,
		`SELECT * FROM telemetry.diagnose($1, $2)`,
	} {
		pgtest.Query(t, c, sql, start, end)
	}
	pgtest.Query(t, c, `SELECT * FROM telemetry.list_tracked_tables()`)
}

func checkPlantedNeverRan(t *testing.T, c *pgx.Conn) {
	t.Helper()
	for _, r := range pgtest.Query(t, c, `SELECT what, count(*) AS n FROM public.planted_runs GROUP BY 1`) {
		t.Errorf("the planted %s ran %d times", r["what"], r["n"])
	}
}

// A role that may create in public plants exact-type operators and functions before the
// schema is installed (issue 9, hole 2); Migrate, even given a pool whose sessions search
// public, binds nothing to them, and reading every view and analysis runs none of them.
func TestMigrateIgnoresPlantedObjects(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		dsn := srv.NewDatabase(t)
		plantAttackerObjects(t, srv, dsn)
		srv.Exec(t, dsn, `CREATE TABLE public.orders (id int PRIMARY KEY); INSERT INTO public.orders SELECT generate_series(1, 100)`)
		// Migrate is given any pool: this one's sessions search public, as a default login's do.
		cfg, err := postgres.Config(postgres.Options{DSN: dsn, MaxConns: 2, StatementTimeout: 30 * time.Second, LockTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		cfg.ConnConfig.RuntimeParams["search_path"] = `"$user", public`
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		if err := schema.Migrate(context.Background(), pool); err != nil {
			t.Fatalf("migrate: %v", err)
		}
		e := newEnvOn(t, srv, dsn)
		c := e.conn()
		checkNothingBoundToPublic(t, c)
		pgtest.MustExec(t, c, `SELECT telemetry.track_table('orders')`)
		start := e.record(collectors.TierSnapshot)
		e.record(collectors.TierSample)
		pgtest.MustExec(t, c, `DELETE FROM public.orders WHERE id <= 50`)
		end := e.record(collectors.TierSnapshot)
		readEverything(t, c, start, end)
		checkPlantedNeverRan(t, c)
	})
}

// The same through psql -f sql/install.sql, the pg_cron mode's install, in a login's session.
func TestInstallSQLIgnoresPlantedObjects(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		dsn := srv.NewDatabase(t)
		plantAttackerObjects(t, srv, dsn)
		srv.Exec(t, dsn, `CREATE TABLE public.orders (id int PRIMARY KEY); INSERT INTO public.orders SELECT generate_series(1, 100)`)
		srv.PsqlFile(t, dsn, "sql/install.sql")
		c := pgtest.Connect(t, dsn, "")
		checkNothingBoundToPublic(t, c)
		var start, end time.Time
		if err := c.QueryRow(context.Background(), `SELECT telemetry.snapshot()`).Scan(&start); err != nil {
			t.Fatal(err)
		}
		pgtest.MustExec(t, c, `SELECT telemetry.sample()`)
		pgtest.MustExec(t, c, `DELETE FROM public.orders WHERE id <= 50`)
		if err := c.QueryRow(context.Background(), `SELECT telemetry.snapshot()`).Scan(&end); err != nil {
			t.Fatal(err)
		}
		readEverything(t, c, start, end)
		checkPlantedNeverRan(t, c)
	})
}
