package recorder

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// roleSetups are the two documented ways (docs/recorder.md) to give a pg_monitor role the
// telemetry schema: %[1]s is the role. The superuser runs them in the test database.
var roleSetups = map[string]string{
	// The README's: the schema is created for the role, which then creates and migrates
	// everything in it itself.
	"schema owned by the role": `CREATE SCHEMA telemetry AUTHORIZATION %[1]s`,
	// An administrator migrates once (-- the exporter run by them, or psql -f install.sql),
	// runs docs/roles.sql and makes the role a telemetry_recorder.
	"schema owned by an admin": `GRANT telemetry_recorder TO %[1]s`,
}

// A role with pg_monitor and rights on the telemetry schema alone runs the exporter's
// collection and the recorder: every collector succeeds, every collection is written, and
// other sessions' queries are visible to it.
func TestLeastPrivilegeRole(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		for setup, grants := range roleSetups {
			t.Run(strings.ReplaceAll(setup, " ", "_"), func(t *testing.T) {
				dsn := srv.NewDatabase(t)
				role := "pgbatch_" + strings.TrimPrefix(mustParseURL(t, dsn).Path, "/")
				srv.Exec(t, dsn, fmt.Sprintf(`CREATE ROLE %s LOGIN; GRANT pg_monitor TO %[1]s;
					CREATE TABLE public.orders (id int PRIMARY KEY); INSERT INTO public.orders SELECT generate_series(1, 100)`, role))
				// Runs after the role's pools are closed (cleanups run last-in first-out).
				t.Cleanup(func() { srv.Exec(t, dsn, fmt.Sprintf(`DROP OWNED BY %[1]s; DROP ROLE %[1]s`, role)) })
				if setup == "schema owned by an admin" {
					if err := schema.Migrate(context.Background(), newPool(t, dsn, false, "admin")); err != nil {
						t.Fatalf("admin's migration: %v", err)
					}
					srv.PsqlFile(t, dsn, rolesSQL)
				}
				srv.Exec(t, dsn, fmt.Sprintf(grants, role))

				roleDSN := mustParseURL(t, dsn)
				roleDSN.User = url.User(role)
				e := newEnvOn(t, srv, roleDSN.String()) // migrates as the role
				c := e.conn()
				var msg string
				if err := c.QueryRow(context.Background(), `SELECT telemetry.track_table('orders')`).Scan(&msg); err != nil {
					t.Fatalf("track_table as %s: %v", role, err)
				}
				// A superuser's session, busy: the role sees its query (pg_read_all_stats).
				admin := (&env{t: t, srv: srv, dsn: dsn}).conn()
				busy := make(chan error, 1)
				// Busy until the collections below are done (a loaded machine may take seconds).
				var adminPID int
				if err := admin.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&adminPID); err != nil {
					t.Fatal(err)
				}
				go func() { _, err := admin.Exec(context.Background(), `SELECT pg_sleep(60) AS busy_admin`); busy <- err }()
				eventually(t, c, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE query LIKE '%busy_admin' AND pid <> pg_backend_pid())`)
				start := e.record(collectors.TierSnapshot) // fails on any collector's error
				e.record(collectors.TierSample)
				end := e.record(collectors.TierSnapshot)
				srv.Exec(t, dsn, fmt.Sprintf(`SELECT pg_cancel_backend(%d)`, adminPID))
				if err := <-busy; err == nil || !strings.Contains(err.Error(), "57014") {
					t.Fatalf("the busy session should have been cancelled, got %v", err)
				}
				rows := pgtest.Query(t, c, `SELECT
					(SELECT count(*) FROM telemetry.snapshots) AS snapshots,
					(SELECT count(*) FROM telemetry.table_snapshots WHERE relname = 'orders') AS table_snapshots,
					(SELECT count(*) FROM telemetry.samples) AS samples,
					(SELECT count(*) FROM telemetry.activity_samples WHERE query_preview LIKE '%busy_admin') AS busy_seen,
					(SELECT count(*) FROM telemetry.table_compare('orders', $1, $2)) AS table_compare,
					(SELECT count(*) FROM telemetry.compare($1, $2)) AS compare`, start, end)
				want := map[string]any{"snapshots": int64(2), "table_snapshots": int64(2), "samples": int64(1),
					"busy_seen": int64(1), "table_compare": int64(1), "compare": int64(1)}
				for k, v := range want {
					if rows[0][k] != v {
						t.Errorf("as %s: %s = %v, want %v", role, k, rows[0][k], v)
					}
				}
				// Retention and cleanup (dropping partitions) work for the role too.
				if err := e.rec.applyRetention(context.Background()); err != nil {
					t.Errorf("retention as %s: %v", role, err)
				}
				if _, err := c.Exec(context.Background(), `SELECT * FROM telemetry.cleanup('7 days')`); err != nil {
					t.Errorf("cleanup as %s: %v", role, err)
				}
			})
		}
	})
}

func mustParseURL(t *testing.T, dsn string) *url.URL {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Every function of the schema pins its search_path, so that no object a caller can create
// (in public, in pg_temp first) is picked up in its place.
func TestFunctionsPinSearchPath(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		rows := pgtest.Query(t, e.conn(), `SELECT p.oid::regprocedure::text AS fn,
				coalesce((SELECT c FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%'), '') AS search_path
			FROM pg_proc p WHERE p.pronamespace = 'telemetry'::regnamespace ORDER BY 1`)
		if len(rows) < 20 {
			t.Fatalf("only %d functions in telemetry", len(rows))
		}
		for _, r := range rows {
			if r["search_path"] != "search_path=pg_catalog, pg_temp" {
				t.Errorf("%s: %q, want search_path=pg_catalog, pg_temp", r["fn"], r["search_path"])
			}
		}
	})
}

// Table names given to track_table and untrack_table are looked up, never spliced into SQL.
func TestTrackTableInputIsNotSQL(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		e.exec(`CREATE TABLE public.y (id int); CREATE TABLE public."Or'ders; x" (id int)`)
		c := e.conn()
		ctx := context.Background()
		for _, call := range [][2]string{
			{`x; DROP TABLE y`, `public`},
			{`y`, `public; DROP TABLE y; --`},
			{`y'); DROP TABLE y; --`, `public`},
		} {
			_, err := c.Exec(ctx, `SELECT telemetry.track_table($1, $2)`, call[0], call[1])
			if want := fmt.Sprintf("Table %s.%s not found", call[1], call[0]); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("track_table(%q, %q): %v, want %q", call[0], call[1], err, want)
			}
			var msg string
			if err := c.QueryRow(ctx, `SELECT telemetry.untrack_table($1, $2)`, call[0], call[1]).Scan(&msg); err != nil ||
				msg != fmt.Sprintf("Table %s.%s was not being tracked", call[1], call[0]) {
				t.Errorf("untrack_table(%q, %q) = %q, %v", call[0], call[1], msg, err)
			}
		}
		// A name that needs quoting is tracked as it is.
		var msg string
		if err := c.QueryRow(ctx, `SELECT telemetry.track_table($1)`, `Or'ders; x`).Scan(&msg); err != nil || msg != `Now tracking public.Or'ders; x` {
			t.Errorf("track_table of a quoted name = %q, %v", msg, err)
		}
		e.record(collectors.TierSnapshot)
		rows := pgtest.Query(t, c, `SELECT relname, to_regclass('public.y') IS NOT NULL AS y_exists FROM telemetry.table_snapshots`)
		if len(rows) != 1 || rows[0]["relname"] != `Or'ders; x` || rows[0]["y_exists"] != true {
			t.Errorf("table_snapshots after the calls: %v", rows)
		}
	})
}
