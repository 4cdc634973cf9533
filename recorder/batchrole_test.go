package recorder

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// denied fails the test unless sql, run on c, is refused with insufficient_privilege.
func denied(t *testing.T, c *pgx.Conn, who, sql string) {
	t.Helper()
	_, err := c.Exec(context.Background(), sql)
	if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("as %s, %s: %v, want permission denied (42501)", who, sql, err)
	}
}

// onlyMarks fails the test unless role, from the catalog, executes exactly batch_begin and
// batch_end of the schema's functions beyond what PUBLIC may, and has no right on any table,
// view or sequence of it.
func onlyMarks(t *testing.T, c *pgx.Conn, role string) {
	t.Helper()
	fns := pgtest.Query(t, c, `SELECT p.proname::text AS name FROM pg_proc p
		WHERE p.pronamespace = 'telemetry'::regnamespace AND has_function_privilege($1, p.oid, 'EXECUTE')
		  AND NOT has_function_privilege('public', p.oid, 'EXECUTE') ORDER BY 1`, role)
	if got := fmt.Sprint(columnOf(fns, "name")); got != "[batch_begin batch_end]" {
		t.Errorf("a batch role executes %s beyond PUBLIC's, want [batch_begin batch_end]", got)
	}
	for _, r := range pgtest.Query(t, c, `SELECT c.oid::regclass::text AS rel FROM pg_class c
			WHERE c.relnamespace = 'telemetry'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S')
			  AND (has_table_privilege($1, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
			       OR c.relkind = 'S' AND has_sequence_privilege($1, c.oid, 'USAGE, SELECT, UPDATE'))`, role) {
		t.Errorf("a batch role has a right on %s", r["rel"])
	}
}

// A batch job's role (telemetry_writer, issue 17 finding 5) marks its own runs and nothing
// else: it cannot change the thresholds (a negative baseline_runs made the report 500), the
// migrations' record (the next start failed to migrate), partitions, retention or tracking,
// nor end, abandon or delete another batch role's runs. The exporter's role
// (telemetry_recorder) ends any run but leaves thresholds and schema to the owner. A batch
// is the role's that marked its first run.
func TestBatchRoleMarksOnlyItsOwnRuns(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		srv.PsqlFile(t, e.dsn, rolesSQL)
		nightly := grantRole(t, srv, e.dsn, "nightly", "telemetry_writer")
		hourly := grantRole(t, srv, e.dsn, "hourly", "telemetry_writer")
		reader := grantRole(t, srv, e.dsn, "reader", "telemetry_reader")
		nobody := grantRole(t, srv, e.dsn, "nobody", "")
		rec := grantRole(t, srv, e.dsn, "recorder", "telemetry_recorder")
		e.record(collectors.TierSnapshot)
		admin := e.conn()
		ctx := context.Background()

		onlyMarks(t, admin, nightly)

		n := connectAs(t, e.dsn, nightly)
		h := connectAs(t, e.dsn, hourly)
		var own int64
		if err := n.QueryRow(ctx, `SELECT telemetry.batch_begin('nightly')`).Scan(&own); err != nil {
			t.Fatalf("batch_begin as a batch role: %v", err)
		}
		for _, sql := range []string{
			// steering the diagnosis and breaking the recorder
			`UPDATE telemetry.diagnose_thresholds SET value = -1 WHERE name = 'baseline_runs'`,
			`UPDATE telemetry.diagnose_thresholds SET value = 1e9 WHERE name LIKE 'lock_wait_pct%'`,
			`DELETE FROM telemetry.schema_migrations`,
			`SELECT telemetry._ensure_partitions(now() + interval '300 days')`,
			`SELECT telemetry._ensure_partitions(now())`,
			`SELECT telemetry._drop_partitions_before('infinity')`,
			`SELECT * FROM telemetry.cleanup('0 seconds')`,
			`SELECT telemetry.track_table('pg_class', 'pg_catalog')`,
			`SELECT telemetry.close_abandoned_runs()`,
			`SELECT telemetry.request_snapshot()`,
			`SELECT telemetry.snapshot()`,
			// other batches' runs, and runs past the functions' checks
			`UPDATE telemetry.batch_runs SET status = 'failed', ended_at = now()`,
			`DELETE FROM telemetry.batch_runs`,
			`INSERT INTO telemetry.batch_runs (batch, started_at, source) SELECT 'x' || i, now(), 'marker' FROM generate_series(1, 20000) i`,
			`SELECT telemetry.batch_end('nightly')`,
			`SELECT telemetry.batch_begin('nightly')`,
			`SELECT telemetry.batch_begin('nightly-detected', 'detected')`,
			// reading what it does not need
			`SELECT count(*) FROM telemetry.batch_runs`,
		} {
			denied(t, h, "the other batch role", sql)
		}
		for who, c := range map[string]*pgx.Conn{"the reader": connectAs(t, e.dsn, reader), "a role with no grant": connectAs(t, e.dsn, nobody)} {
			for _, sql := range []string{`SELECT telemetry.batch_begin('theirs')`, `SELECT telemetry.batch_end('nightly')`} {
				denied(t, c, who, sql)
			}
		}
		// A server name of 10 MB would be stored with its run and shown on its pages.
		if _, err := h.Exec(ctx, `SELECT telemetry.batch_begin('hourly', 'marker', NULL, repeat('x', 10000000))`); err == nil ||
			!strings.Contains(err.Error(), "at most 200") {
			t.Errorf("a server name of 10 MB: %v, want refused", err)
		}
		var status string
		if err := admin.QueryRow(ctx, `SELECT status FROM telemetry.batch_runs WHERE run_id = $1`, own).Scan(&status); err != nil || status != "running" {
			t.Errorf("the batch role's run after the other's attempts: %q, %v; want running", status, err)
		}

		// Each batch role marks its own runs: its begin closes its own open run, its end ends it.
		var hours int64
		if err := h.QueryRow(ctx, `SELECT telemetry.batch_begin('hourly')`).Scan(&hours); err != nil {
			t.Fatalf("batch_begin as the other batch role: %v", err)
		}
		pgtest.MustExec(t, h, `SELECT telemetry.batch_end('hourly', 'failed', 3)`)
		var again int64
		if err := n.QueryRow(ctx, `SELECT telemetry.batch_begin('nightly')`).Scan(&again); err != nil {
			t.Fatalf("a batch role's second begin: %v", err)
		}
		runs := pgtest.Query(t, admin, `SELECT run_id, batch, status, began_by::text FROM telemetry.batch_runs ORDER BY run_id`)
		want := fmt.Sprint([]map[string]any{
			{"run_id": own, "batch": "nightly", "status": "abandoned", "began_by": nightly},
			{"run_id": hours, "batch": "hourly", "status": "failed", "began_by": hourly},
			{"run_id": again, "batch": "nightly", "status": "running", "began_by": nightly},
		})
		if fmt.Sprint(runs) != want {
			t.Errorf("runs:\n%v\nwant\n%v", runs, want)
		}

		// The exporter's role ends any run (its tracker's detected ones), and records detected
		// runs; thresholds and the migrations' record stay the owner's.
		r := connectAs(t, e.dsn, rec)
		pgtest.MustExec(t, r, `SELECT telemetry.batch_end('nightly', 'ended')`)
		pgtest.MustExec(t, r, `SELECT telemetry.batch_begin('detected-one', 'detected')`)
		// With no run of it open, a batch is still its role's: another's runs would enter its
		// baseline (diagnose_run) and its metrics.
		denied(t, h, "the other batch role", `SELECT telemetry.batch_begin('nightly')`)
		// The exporter's runs claim no batch once ended, nor do a dropped role's.
		denied(t, h, "the other batch role", `SELECT telemetry.batch_begin('detected-one')`)
		pgtest.MustExec(t, r, `SELECT telemetry.batch_end('detected-one', 'ended')`)
		gone := "gone_" + nightly
		srv.Exec(t, e.dsn, fmt.Sprintf(`CREATE ROLE %s LOGIN IN ROLE telemetry_writer`, gone))
		g := connectAs(t, e.dsn, gone)
		pgtest.MustExec(t, g, `SELECT telemetry.batch_begin('orphan'), telemetry.batch_end('orphan')`)
		if err := g.Close(ctx); err != nil {
			t.Fatal(err)
		}
		srv.Exec(t, e.dsn, `DROP ROLE `+gone)
		for _, batch := range []string{"detected-one", "orphan"} {
			if _, err := h.Exec(ctx, `SELECT telemetry.batch_begin($1), telemetry.batch_end($1)`, batch); err != nil {
				t.Errorf("the other batch role marking %s: %v", batch, err)
			}
		}
		for _, sql := range []string{
			`UPDATE telemetry.diagnose_thresholds SET value = -1 WHERE name = 'baseline_runs'`,
			`DELETE FROM telemetry.schema_migrations`,
			`INSERT INTO telemetry.schema_migrations (name, checksum) VALUES ('9999_x.sql', 'x')`,
		} {
			denied(t, r, "the recorder", sql)
		}
		if err := schema.Migrate(ctx, newPool(t, e.dsn, false, "")); err != nil {
			t.Errorf("migrating after the roles' attempts: %v", err)
		}
	})
}

// Partitions ahead are bounded whoever calls (issue 17 finding 5: 300 days of them, which
// retention never drops, made a run's page 20 times slower): tomorrow's is made, later
// days are refused, even to the owner.
func TestPartitionsAheadBounded(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		c := e.conn()
		ctx := context.Background()
		before := pgtest.Query(t, c, `SELECT count(*) AS n FROM pg_inherits WHERE inhparent = 'telemetry.snapshots'::regclass`)[0]["n"].(int64)
		pgtest.MustExec(t, c, `SELECT telemetry._ensure_partitions(now() + interval '1 day')`)
		for _, ahead := range []string{"2 days", "300 days", "1000 years"} {
			_, err := c.Exec(ctx, `SELECT telemetry._ensure_partitions(now() + $1::interval)`, ahead)
			if err == nil || !strings.Contains(err.Error(), "at most one day") {
				t.Errorf("partitions %s ahead: %v, want refused", ahead, err)
			}
		}
		after := pgtest.Query(t, c, `SELECT count(*) AS n FROM pg_inherits WHERE inhparent = 'telemetry.snapshots'::regclass`)[0]["n"].(int64)
		if after > before+1 {
			t.Errorf("snapshots' partitions: %d, then %d; want at most tomorrow's more", before, after)
		}
	})
}

// A threshold out of range never makes a diagnosis fail (issue 17 finding 5: a negative
// baseline_runs made /report answer 500): _threshold reads each within its unit's range.
func TestThresholdsOutOfRangeNeverFail(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		c := e.conn()
		ctx := context.Background()
		var runs []int64
		for range 2 {
			var id int64
			if err := c.QueryRow(ctx, `SELECT telemetry.batch_begin('nightly')`).Scan(&id); err != nil {
				t.Fatal(err)
			}
			e.record(collectors.TierSnapshot)
			e.record(collectors.TierSample)
			e.record(collectors.TierSample)
			e.record(collectors.TierSample)
			pgtest.MustExec(t, c, `SELECT telemetry.batch_end('nightly')`)
			e.record(collectors.TierSnapshot)
			runs = append(runs, id)
		}
		// Every default is within its range: read as it is.
		for _, r := range pgtest.Query(t, c, `SELECT name, value, telemetry._threshold(name) AS read FROM telemetry.diagnose_thresholds
				WHERE telemetry._threshold(name) IS DISTINCT FROM value`) {
			t.Errorf("threshold %s = %v is read as %v", r["name"], r["value"], r["read"])
		}
		for _, set := range []string{
			`value = -1`, `value = 0`, `value = 'NaN'`, `value = 'Infinity'`, `value = '-Infinity'`, `value = 1e300`,
		} {
			pgtest.MustExec(t, c, `UPDATE telemetry.diagnose_thresholds SET `+set)
			for _, sql := range []string{
				`SELECT count(*) FROM telemetry.diagnose_run($1)`,
				`SELECT count(*) FROM telemetry.diagnose((SELECT started_at FROM telemetry.batch_runs WHERE run_id = $1), now())`,
				`SELECT count(*) FROM telemetry.recent_batch_runs WHERE run_id = $1`,
			} {
				var n int
				if err := c.QueryRow(ctx, sql, runs[1]).Scan(&n); err != nil {
					t.Errorf("every threshold's %s: %s: %v", set, sql, err)
				}
			}
			if _, err := c.Exec(ctx, `SELECT telemetry.batch_begin('hourly'), telemetry.batch_end('hourly')`); err != nil {
				t.Errorf("every threshold's %s: the markers: %v", set, err)
			}
		}
	})
}

// The upgrade takes back what earlier versions of docs/roles.sql gave telemetry_writer (every
// table and function, and the same on objects the owner creates later): migration 0013
// leaves it batch_begin and batch_end, without roles.sql being run again.
func TestUpgradeTakesBackBatchRoleRights(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		srv.PsqlFile(t, e.dsn, rolesSQL)
		writer := grantRole(t, srv, e.dsn, "writer", "telemetry_writer")
		e.exec(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA telemetry TO telemetry_writer;
			GRANT USAGE ON ALL SEQUENCES IN SCHEMA telemetry TO telemetry_writer;
			GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA telemetry TO telemetry_writer;
			ALTER DEFAULT PRIVILEGES IN SCHEMA telemetry GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO telemetry_writer;
			ALTER DEFAULT PRIVILEGES IN SCHEMA telemetry GRANT EXECUTE ON FUNCTIONS TO telemetry_writer;
			DELETE FROM telemetry.schema_migrations WHERE name LIKE '0013_%'`)
		if err := schema.Migrate(context.Background(), e.pool); err != nil {
			t.Fatal(err)
		}
		// An object a later migration creates gets nothing for the batch role either.
		e.exec(`CREATE TABLE telemetry.later (x int); CREATE FUNCTION telemetry.later_write() RETURNS void
			LANGUAGE sql SET search_path = pg_catalog, pg_temp AS 'DELETE FROM telemetry.later';
			REVOKE EXECUTE ON FUNCTION telemetry.later_write() FROM PUBLIC`)
		onlyMarks(t, e.conn(), writer)
		var run int64
		if err := connectAs(t, e.dsn, writer).QueryRow(context.Background(), `SELECT telemetry.batch_begin('nightly')`).Scan(&run); err != nil {
			t.Errorf("batch_begin after the upgrade: %v", err)
		}
	})
}
