package recorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pg-batch-exporter/pg-batch-exporter/batch"
	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// rolesSQL is the documented setup of the writer and reader roles (docs/security.md).
const rolesSQL = "../docs/roles.sql"

// writingFunctionsSQL finds, from the catalog, the telemetry functions that write: SECURITY
// DEFINER ones, those whose body has a statement that changes data or schema (or notifies),
// and those that call one of them.
const writingFunctionsSQL = `
WITH RECURSIVE fn AS (
    -- String literals out: advice such as 'ALTER TABLE ... SET (...)' writes nothing.
    SELECT p.oid, p.proname, p.prosecdef, regexp_replace(p.prosrc, '''([^'']|'''')*''', '', 'g') AS prosrc
    FROM pg_proc p WHERE p.pronamespace = 'telemetry'::regnamespace
), writes AS (
    SELECT oid, proname FROM fn
    WHERE prosecdef OR prosrc ~* '\m(insert\s+into|update\s+telemetry|delete\s+from|truncate|create\s+table|drop\s+table|alter\s+table|pg_notify|execute\s+format)\M'
    UNION
    SELECT f.oid, f.proname FROM fn f JOIN writes w ON f.prosrc ~ ('telemetry\.' || w.proname || '\(')
)
SELECT DISTINCT oid::regprocedure::text AS fn, proname::text AS name FROM writes ORDER BY 1`

// grantRole creates a login role for this test's database, member of group ("": of none).
func grantRole(t *testing.T, srv *pgtest.Server, dsn, kind, group string) string {
	t.Helper()
	role := kind + "_" + strings.TrimPrefix(mustParseURL(t, dsn).Path, "/")
	sql := fmt.Sprintf(`CREATE ROLE %s LOGIN`, role)
	if group != "" {
		sql += fmt.Sprintf(`; GRANT %s TO %s`, group, role)
	}
	srv.Exec(t, dsn, sql)
	t.Cleanup(func() { srv.Exec(t, dsn, fmt.Sprintf(`DROP OWNED BY %[1]s; DROP ROLE %[1]s`, role)) })
	return role
}

func connectAs(t *testing.T, dsn, role string) *pgx.Conn {
	t.Helper()
	u := mustParseURL(t, dsn)
	u.User = url.User(role)
	return pgtest.Connect(t, u.String(), "")
}

// A reader with only what docs/roles.sql gives telemetry_reader (issue 9, hole 3) cannot
// empty the history, create partitions, open batch runs or ask for snapshots: every function
// that writes is closed to PUBLIC. It reads every table and view and runs the analyses. The
// exporter's role (telemetry_recorder) runs every function; a batch job's (telemetry_writer)
// only batch_begin and batch_end (TestBatchRoleMarksOnlyItsOwnRuns).
func TestReaderCannotWrite(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		srv.PsqlFile(t, e.dsn, rolesSQL)
		reader := grantRole(t, srv, e.dsn, "reader", "telemetry_reader")
		writer := grantRole(t, srv, e.dsn, "writer", "telemetry_writer")
		rec := grantRole(t, srv, e.dsn, "recorder", "telemetry_recorder")
		e.exec(`CREATE TABLE public.orders (id int PRIMARY KEY); INSERT INTO public.orders SELECT generate_series(1, 10)`)
		admin := e.conn()
		pgtest.MustExec(t, admin, `SELECT telemetry.track_table('orders')`)
		start := e.record(collectors.TierSnapshot)
		e.record(collectors.TierSample)
		end := e.record(collectors.TierSnapshot)
		ctx := context.Background()

		writing := pgtest.Query(t, admin, writingFunctionsSQL)
		names := map[string]bool{}
		for _, w := range writing {
			names[w["name"].(string)] = true
			var public, readerMay, writerMay, recorderMay bool
			if err := admin.QueryRow(ctx, `SELECT has_function_privilege('public', $1::regprocedure, 'EXECUTE'),
					has_function_privilege($2, $1::regprocedure, 'EXECUTE'), has_function_privilege($3, $1::regprocedure, 'EXECUTE'),
					has_function_privilege($4, $1::regprocedure, 'EXECUTE')`,
				w["fn"], reader, writer, rec).Scan(&public, &readerMay, &writerMay, &recorderMay); err != nil {
				t.Fatal(err)
			}
			marker := w["name"] == "batch_begin" || w["name"] == "batch_end"
			if public || readerMay || writerMay != marker || !recorderMay {
				t.Errorf("%s writes: EXECUTE for PUBLIC %v, for the reader %v, the writer %v, the recorder %v; want false, false, %v, true",
					w["fn"], public, readerMay, writerMay, recorderMay, marker)
			}
		}
		for _, want := range []string{"cleanup", "_drop_partitions_before", "_ensure_partitions", "_note_server", "snapshot", "sample",
			"track_table", "untrack_table", "batch_begin", "batch_end", "close_abandoned_runs", "request_snapshot", "_boundary_snapshot"} {
			if !names[want] {
				t.Errorf("%s is not found among the functions that write: %v", want, writing)
			}
		}
		// Every other function is a read function, open to the reader.
		for _, r := range pgtest.Query(t, admin, `SELECT p.oid::regprocedure::text AS fn FROM pg_proc p
				WHERE p.pronamespace = 'telemetry'::regnamespace AND NOT has_function_privilege($1, p.oid, 'EXECUTE')
				  AND p.oid::regprocedure::text <> ALL ($2)`, reader, columnOf(writing, "fn")) {
			t.Errorf("%s reads, but the reader may not run it", r["fn"])
		}

		var runID int64
		w := connectAs(t, e.dsn, writer)
		if err := w.QueryRow(ctx, `SELECT telemetry.batch_begin('nightly')`).Scan(&runID); err != nil {
			t.Fatalf("batch_begin as the writer: %v", err)
		}
		pgtest.MustExec(t, w, `SELECT telemetry.batch_end('nightly')`)

		before := pgtest.Query(t, admin, `SELECT (SELECT count(*) FROM telemetry.snapshots) AS snapshots, (SELECT count(*) FROM telemetry.samples) AS samples`)
		r := connectAs(t, e.dsn, reader)
		for _, sql := range []string{
			`SELECT * FROM telemetry.cleanup('0 seconds')`,
			`SELECT telemetry._drop_partitions_before('infinity')`,
			`SELECT telemetry._ensure_partitions('2100-01-01')`,
			`SELECT telemetry.batch_begin('reader-batch')`,
			`SELECT telemetry.batch_end('nightly')`,
			`SELECT telemetry.request_snapshot()`,
			`SELECT telemetry.snapshot()`,
			`SELECT telemetry.track_table('orders')`,
			`SELECT telemetry.untrack_table('orders')`,
			`DELETE FROM telemetry.snapshots`,
			`INSERT INTO telemetry.batch_runs (batch, started_at, source) VALUES ('x', now(), 'marker')`,
		} {
			_, err := r.Exec(ctx, sql)
			if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Errorf("as the reader, %s: %v, want permission denied", sql, err)
			}
		}
		after := pgtest.Query(t, admin, `SELECT (SELECT count(*) FROM telemetry.snapshots) AS snapshots, (SELECT count(*) FROM telemetry.samples) AS samples`)
		if fmt.Sprint(before) != fmt.Sprint(after) {
			t.Errorf("the reader's calls changed the history: %v, then %v", before, after)
		}
		var day2100 bool
		if err := admin.QueryRow(ctx, `SELECT to_regclass('telemetry.snapshots_d21000101') IS NOT NULL`).Scan(&day2100); err != nil || day2100 {
			t.Errorf("a partition for 2100 exists (%v, %v)", day2100, err)
		}

		// The reader reads everything and runs the analyses.
		for _, rel := range pgtest.Query(t, admin, `SELECT c.oid::regclass::text AS rel FROM pg_class c
				WHERE c.relnamespace = 'telemetry'::regnamespace AND c.relkind IN ('r', 'p', 'v') ORDER BY 1`) {
			if _, err := r.Exec(ctx, `SELECT * FROM `+rel["rel"].(string)+` LIMIT 1`); err != nil {
				t.Errorf("as the reader, reading %s: %v", rel["rel"], err)
			}
		}
		for sql, minRows := range map[string]int{
			`SELECT count(*) FROM telemetry.compare($1, $2)`:                 1,
			`SELECT count(*) FROM telemetry.table_compare('orders', $1, $2)`: 1,
			`SELECT count(*) FROM telemetry.wait_summary($1, $2)`:            1,
			`SELECT count(*) FROM telemetry.client_wait_summary($1, $2)`:     0, // no client session need wait
			`SELECT count(*) FROM telemetry.diagnose($1, $2)`:                1,
		} {
			var n int
			if err := r.QueryRow(ctx, sql, start, end).Scan(&n); err != nil || n < minRows {
				t.Errorf("as the reader, %s: %d rows, %v", sql, n, err)
			}
		}
		for _, sql := range []string{
			`SELECT count(*) FROM telemetry.diagnose_run($1)`,
			`SELECT count(*) FROM telemetry.recent_batch_runs WHERE run_id = $1`,
		} {
			var n int
			if err := r.QueryRow(ctx, sql, runID).Scan(&n); err != nil || n == 0 {
				t.Errorf("as the reader, %s: %d rows, %v", sql, n, err)
			}
		}

		// The exporter's role writes: partitions, tracking, retention.
		rc := connectAs(t, e.dsn, rec)
		for _, sql := range []string{
			`SELECT telemetry._ensure_partitions(now() + interval '1 day')`,
			`SELECT telemetry.untrack_table('orders')`,
			`SELECT telemetry.track_table('orders')`,
			`SELECT telemetry.request_snapshot()`,
			`SELECT * FROM telemetry.cleanup('0 seconds')`,
		} {
			if _, err := rc.Exec(ctx, sql); err != nil {
				t.Errorf("as the recorder, %s: %v", sql, err)
			}
		}
		var left int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM telemetry.snapshots WHERE captured_at < $1`, time.Now()).Scan(&left); err != nil || left != 0 {
			t.Errorf("after the recorder's cleanup('0 seconds'): %d snapshots, %v", left, err)
		}
	})
}

func columnOf(rows []map[string]any, col string) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r[col].(string)
	}
	return out
}

// TestExecRunLiveForOtherWriters (issue 17, finding 3): a batch role without
// pg_read_all_stats, whose markers close abandoned runs, does not close a live exec run of
// another batch role (whose session's backend_start it cannot see); the run ends with its
// command's status.
func TestExecRunLiveForOtherWriters(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		srv.PsqlFile(t, e.dsn, rolesSQL)
		jobA := grantRole(t, srv, e.dsn, "joba", "telemetry_writer")
		jobB := grantRole(t, srv, e.dsn, "jobb", "telemetry_writer")
		u := mustParseURL(t, e.dsn)
		u.User = url.User(jobA)
		poolA := newPool(t, u.String(), false, "pg-batch-exporter exec")
		dir := t.TempDir()
		started, proceed := filepath.Join(dir, "started"), filepath.Join(dir, "proceed")
		// The command ends before the pools close (cleanups run last first), whatever fails.
		t.Cleanup(func() { _ = os.WriteFile(proceed, nil, 0o600) })
		code := make(chan int, 1)
		go func() {
			code <- batch.Exec(batch.ExecOptions{Pool: poolA, Batch: "nightly", Stdout: io.Discard, Stderr: io.Discard,
				Command: []string{"sh", "-c", `touch "$0"; while [ ! -e "$1" ]; do sleep 0.05; done`, started, proceed}})
		}()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, err := os.Stat(started); err == nil {
				break
			} else if time.Now().After(deadline) {
				t.Fatal("the exec'd command never started")
			}
		}
		ctx := context.Background()
		b := connectAs(t, e.dsn, jobB)
		pgtest.MustExec(t, b, `SELECT telemetry.batch_begin('weekly')`) // which calls close_abandoned_runs()
		admin := e.conn()
		var status string
		if err := admin.QueryRow(ctx, `SELECT status FROM telemetry.batch_runs WHERE batch = 'nightly'`).Scan(&status); err != nil || status != "running" {
			t.Errorf("the live exec run, after another batch role's markers: %q (%v), want running", status, err)
		}
		if err := os.WriteFile(proceed, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if c := <-code; c != 0 {
			t.Errorf("exec exited %d, want 0", c)
		}
		if err := admin.QueryRow(ctx, `SELECT status FROM telemetry.batch_runs WHERE batch = 'nightly'`).Scan(&status); err != nil || status != "succeeded" {
			t.Errorf("the exec run ended as %q (%v), want succeeded", status, err)
		}
	})
}

// TestRolesSQLRefusesForeignRoles (issue 17, finding 6): docs/roles.sql does not adopt a
// telemetry role that someone else made first: one a CREATEROLE role created and keeps ADMIN
// OPTION on, or one with LOGIN. It stops, saying what is wrong, before granting anything; made
// right, the role is used. Roles are the cluster's: a server of its own.
func TestRolesSQLRefusesForeignRoles(t *testing.T) {
	for _, v := range pgtest.Versions() {
		t.Run("pg"+strconv.Itoa(v), func(t *testing.T) {
			t.Parallel()
			srv := pgtest.StartWith(t, v, pgtest.Options{Private: true})
			e := newEnv(t, srv)
			e.exec(`CREATE ROLE eve LOGIN CREATEROLE`)
			eve := connectAs(t, e.dsn, "eve")
			pgtest.MustExec(t, eve, `CREATE ROLE telemetry_writer NOLOGIN`)
			if v < 16 { // from 16 on, the role's creator has ADMIN OPTION on it by itself
				pgtest.MustExec(t, eve, `GRANT telemetry_writer TO eve WITH ADMIN OPTION`)
			}
			abs, err := filepath.Abs(rolesSQL)
			if err != nil {
				t.Fatal(err)
			}
			refused := func(want string) {
				t.Helper()
				out, err := pgtest.PsqlOutput(e.dsn, "-f", abs)
				if err == nil || !strings.Contains(out, want) {
					t.Errorf("roles.sql: %v\n%s\nwant it refused, saying %q", err, out, want)
				}
				var granted bool
				if err := e.conn().QueryRow(context.Background(),
					`SELECT has_schema_privilege('telemetry_writer', 'telemetry', 'USAGE')`).Scan(&granted); err != nil || granted {
					t.Errorf("roles.sql granted the foreign role USAGE (%v)", err)
				}
			}
			refused("role telemetry_writer exists and is not what docs/roles.sql makes: eve may administer it (ADMIN OPTION)")
			e.exec(`REVOKE telemetry_writer FROM eve; CREATE ROLE telemetry_reader LOGIN`)
			refused("role telemetry_reader exists and is not what docs/roles.sql makes: it has LOGIN")
			e.exec(`ALTER ROLE telemetry_reader NOLOGIN`)
			srv.PsqlFile(t, e.dsn, rolesSQL)
			srv.PsqlFile(t, e.dsn, rolesSQL) // and again, as after an upgrade
		})
	}
}
