package recorder

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// volatile are the columns that differ between two collections taken back to back.
var volatile = map[string]bool{"id": true, "snapshot_id": true, "sample_id": true, "captured_at": true,
	"blocked_duration": true, "checkpoint_lsn": false}

// rowsOf returns a table's rows of one collection as text, volatile columns left out.
func rowsOf(t *testing.T, e *env, table, key string, at time.Time) []string {
	t.Helper()
	c := e.conn()
	rows := pgtest.Query(t, c, `SELECT * FROM telemetry.`+table+` WHERE captured_at = $1 ORDER BY `+key, at)
	var out []string
	for _, r := range rows {
		var cols []string
		for k, v := range r {
			if !volatile[k] {
				cols = append(cols, fmt.Sprintf("%s=%v", k, v))
			}
		}
		out = append(out, strings.Join(sorted(cols), " "))
	}
	return out
}

func sorted(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

// The SQL collection functions and the Go recorder write the same rows for the same server
// state: one of each, back to back, compared column by column.
func TestSQLFunctionsMatchGoRecorder(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		e.exec(`CREATE TABLE orders (id int); INSERT INTO orders SELECT generate_series(1, 100); SELECT telemetry.track_table('orders')`)
		// A quiet server: no checkpoint or bgwriter round may fall between the two snapshots.
		c := e.conn()
		ctx := context.Background()
		if _, err := c.Exec(ctx, `SET application_name = 'pg-batch-exporter test'`); err != nil {
			t.Fatal(err)
		}
		eventually(t, c, `SELECT n_tup_ins = 100 FROM pg_stat_user_tables WHERE relname = 'orders'`)
		for attempt := 0; ; attempt++ {
			goAt := e.record(collectors.TierSnapshot)
			var sqlAt time.Time
			if err := c.QueryRow(ctx, `SELECT telemetry.snapshot()`).Scan(&sqlAt); err != nil {
				t.Fatal(err)
			}
			diff := compareTables(t, e, goAt, sqlAt, map[string]string{"snapshots": "server", "table_snapshots": "relid", "replication_snapshots": "pid"})
			if diff == "" {
				break
			}
			// Background activity between the two each time (WAL, bgwriter; autovacuum workers
			// come and go every second for the package's many databases on the shared server).
			if attempt == 30 {
				t.Fatalf("snapshot rows differ:\n%s", diff)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for attempt := 0; ; attempt++ {
			goAt := e.record(collectors.TierSample)
			var sqlAt time.Time
			if err := c.QueryRow(ctx, `SELECT telemetry.sample()`).Scan(&sqlAt); err != nil {
				t.Fatal(err)
			}
			diff := compareTables(t, e, goAt, sqlAt, map[string]string{"samples": "server", "wait_samples": "backend_type, wait_event_type, wait_event, state",
				"activity_samples": "pid", "progress_samples": "progress_type, pid", "lock_samples": "blocked_pid, blocking_pid"})
			if diff == "" {
				break
			}
			if attempt == 30 {
				t.Fatalf("sample rows differ:\n%s", diff)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

func compareTables(t *testing.T, e *env, goAt, sqlAt time.Time, tables map[string]string) string {
	var diff strings.Builder
	for table, key := range tables {
		g, s := rowsOf(t, e, table, key, goAt), rowsOf(t, e, table, key, sqlAt)
		if !reflect.DeepEqual(g, s) {
			fmt.Fprintf(&diff, "%s:\n  go:  %v\n  sql: %v\n", table, g, s)
		}
	}
	return diff.String()
}

// pg_cron mode on Debian's PostgreSQL 15 with pg_cron 1.4: install.sql schedules the seed's
// jobs (every minute for samples: 1.4 has no sub-minute schedules) and telemetry_settle, the
// scheduler writes a sample and settles, re-running install.sql is safe, and uninstall.sql removes jobs, history and schema.
func TestPgCronInstallOnDebian15(t *testing.T) {
	srv := pgtest.StartWith(t, 15, pgtest.Options{Debian: true, SharedPreload: []string{"pg_cron"}})
	dsn := srv.DSN("postgres") // pg_cron lives in cron.database_name
	out := srv.PsqlFile(t, dsn, "sql/install.sql")
	if !strings.Contains(out, "no sub-minute schedules") {
		t.Errorf("install.sql gave no notice of the fallback:\n%s", out)
	}
	srv.PsqlFile(t, dsn, "sql/install.sql") // again: a no-op
	e := &env{t: t, srv: srv, dsn: dsn}
	c := e.conn()
	jobs := pgtest.Query(t, c, `SELECT jobname, schedule, command FROM cron.job WHERE jobname LIKE 'telemetry%' ORDER BY jobname`)
	want := []map[string]any{
		{"jobname": "telemetry_cleanup", "schedule": "0 3 * * *", "command": "SELECT telemetry.cleanup('7 days')"},
		{"jobname": "telemetry_sample", "schedule": "* * * * *", "command": "SELECT telemetry.sample()"},
		{"jobname": "telemetry_settle", "schedule": "* * * * *", "command": "SELECT telemetry.settle_runs()"},
		{"jobname": "telemetry_snapshot", "schedule": "*/5 * * * *", "command": "SELECT telemetry.snapshot()"},
	}
	if !reflect.DeepEqual(jobs, want) {
		t.Errorf("jobs: %v", jobs)
	}
	// The install took a first snapshot and sample; the scheduler adds one within a minute.
	samplesBeyondRuns := func() int64 {
		var n int64
		if err := c.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM telemetry.samples)
			- (SELECT count(*) FROM cron.job_run_details d JOIN cron.job j USING (jobid)
			   WHERE j.jobname = 'telemetry_sample' AND d.status = 'succeeded')`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	installed := samplesBeyondRuns()
	deadline := time.Now().Add(75 * time.Second)
	for {
		var n, settles int
		if err := c.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE j.jobname = 'telemetry_sample'),
			count(*) FILTER (WHERE j.jobname = 'telemetry_settle') FROM cron.job_run_details d JOIN cron.job j USING (jobid)
			WHERE d.status = 'succeeded'`).Scan(&n, &settles); err != nil {
			t.Fatal(err)
		}
		if n > 0 && settles > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the scheduler ran no telemetry_sample or no telemetry_settle: %v", pgtest.Query(t, c, `SELECT * FROM cron.job_run_details`))
		}
		time.Sleep(time.Second)
	}
	// One sample per succeeded job run beside the install's own: a run at the minute that
	// began while install.sql ran may have taken its sample before the install's.
	if got := samplesBeyondRuns(); got != installed {
		t.Errorf("samples written by the scheduler: %d beyond one per succeeded run of telemetry_sample, want the install's %d", got, installed)
	}
	srv.PsqlFile(t, dsn, "sql/uninstall.sql")
	left := pgtest.Query(t, c, `SELECT (SELECT count(*) FROM cron.job WHERE jobname LIKE 'telemetry%') AS jobs,
		(SELECT count(*) FROM cron.job_run_details) AS runs, to_regnamespace('telemetry') IS NULL AS schema_gone`)
	if left[0]["jobs"] != int64(0) || left[0]["runs"] != int64(0) || left[0]["schema_gone"] != true {
		t.Errorf("after uninstall: %v", left)
	}
}

// Without pg_cron, install.sql installs everything but the jobs, with a notice.
func TestInstallWithoutPgCron(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Versions()[0])
	dsn := srv.NewDatabase(t)
	out := srv.PsqlFile(t, dsn, "sql/install.sql")
	if !strings.Contains(out, "pg_cron is not available") {
		t.Errorf("no notice:\n%s", out)
	}
	e := &env{t: t, srv: srv, dsn: dsn}
	if got := pgtest.Query(t, e.conn(), `SELECT (SELECT count(*) FROM telemetry.snapshots) AS s, (SELECT count(*) FROM telemetry.samples) AS m`); got[0]["s"] != int64(1) || got[0]["m"] != int64(1) {
		t.Errorf("first collections: %v", got)
	}
}

// TestSQLModeRecordsStatements: pg_cron mode's snapshot() stores pg_stat_statements as the
// recorder does at its default interval: every entry at a batch's boundaries (batch_begin and
// batch_end take their snapshot in SQL when no recorder listens) and hourly, nothing at the
// snapshots between, texts once; so run_statements answers for runs recorded without the
// exporter.
func TestSQLModeRecordsStatements(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		c := e.conn()
		e.exec(`CREATE EXTENSION pg_stat_statements; CREATE TABLE items (id int PRIMARY KEY, v int);
			INSERT INTO items SELECT g, g FROM generate_series(1, 1000) g`)
		pgtest.MustExec(t, c, `SELECT telemetry.snapshot()`)
		job := pgtest.Connect(t, e.dsn, "etl")
		var run int64
		if err := job.QueryRow(context.Background(), `SELECT telemetry.batch_begin('etl')`).Scan(&run); err != nil {
			t.Fatal(err)
		}
		const lookup = `SELECT v FROM items WHERE id = $1`
		for i := range 50 {
			pgtest.MustExec(t, job, lookup, i+1)
		}
		pgtest.MustExec(t, job, `SELECT telemetry.batch_end('etl')`)
		pgtest.MustExec(t, c, `SELECT telemetry.snapshot()`) // no boundary since, within the hour: none
		// Nor a run out of range (issue 17), which would be a boundary after every snapshot.
		pgtest.MustExec(t, c, `INSERT INTO telemetry.batch_runs (batch, started_at, source) VALUES ('intruder', 'infinity', 'marker')`)
		pgtest.MustExec(t, c, `SELECT telemetry.snapshot()`)

		info := pgtest.Query(t, c, `SELECT full_read, entries, (SELECT count(*) FROM telemetry.statement_snapshots s
				WHERE s.snapshot_id = i.snapshot_id AND s.captured_at = i.captured_at) AS stored
			FROM telemetry.statement_info_snapshots i ORDER BY captured_at`)
		if len(info) != 3 {
			t.Fatalf("statement snapshots %v, want the first, batch_begin's and batch_end's, none after", info)
		}
		for _, i := range info {
			if i["full_read"] != true || i["stored"] != int64(i["entries"].(int32)) {
				t.Errorf("statement snapshot %v, want every entry stored", i)
			}
		}
		rs := pgtest.Query(t, c, `SELECT query, calls, status FROM telemetry.run_statements($1) WHERE query = $2`, run, lookup)
		if len(rs) != 1 || rs[0]["calls"] != int64(50) {
			t.Errorf("run_statements of the run recorded in SQL: %v, want the lookup with 50 calls", rs)
		}
		var texts int
		if err := c.QueryRow(context.Background(), `SELECT count(*) FROM telemetry.statement_texts WHERE query = $1`, lookup).Scan(&texts); err != nil || texts != 1 {
			t.Errorf("the lookup's text stored %d times (%v), want once", texts, err)
		}
	})
}

// TestSQLModeBooksRunSessions (issue 19): pg_cron mode's telemetry.sample() books an open run's
// session-seconds as the exporter's tracker does: the session that began it by state, wait
// and statement, idle in its transaction included (under its last statement), every other
// non-idle session by wait, another application's idle session not at all, and no second
// before the run began.
func TestSQLModeBooksRunSessions(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		ctx := context.Background()
		admin := e.conn()
		pgtest.MustExec(t, admin, `SET application_name = 'pg-batch-exporter test'`)
		pgtest.MustExec(t, admin, `SELECT telemetry.sample()`)
		bystander := pgtest.Connect(t, e.dsn, "reporting")
		pgtest.MustExec(t, bystander, `SELECT 1`) // idle throughout
		busy := pgtest.Connect(t, e.dsn, "reporting")
		go busy.Exec(context.Background(), `SELECT pg_sleep(60)`) // another session, not idle: cancelled below
		eventually(t, admin, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'reporting' AND wait_event = 'PgSleep')`)
		job := pgtest.Connect(t, e.dsn, "etl")
		pgtest.MustExec(t, job, `SELECT telemetry.batch_begin('nightly')`)
		pgtest.MustExec(t, job, `BEGIN`)
		pgtest.MustExec(t, job, `SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 'nightly'`)
		var lastQueryID int64
		if err := admin.QueryRow(ctx, `SELECT coalesce(query_id, 0) FROM pg_stat_activity WHERE application_name = 'etl'`).Scan(&lastQueryID); err != nil {
			t.Fatal(err)
		}
		for range 4 {
			time.Sleep(500 * time.Millisecond)
			pgtest.MustExec(t, admin, `SELECT telemetry.sample()`)
		}
		pgtest.MustExec(t, job, `COMMIT`)
		pgtest.MustExec(t, job, `SELECT telemetry.batch_end('nightly')`)
		pgtest.MustExec(t, admin, `SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'reporting' AND wait_event = 'PgSleep'`)

		booked, err := admin.Query(ctx, `SELECT own, state, wait_event, queryid, usename IS NOT NULL AS named, sum(seconds) AS seconds
			FROM telemetry.batch_wait_samples WHERE batch = 'nightly' GROUP BY 1, 2, 3, 4, 5 ORDER BY 1 DESC, 2, 3`)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := pgx.CollectRows(booked, pgx.RowToMap)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("batch_wait_samples: %v", rows)
		var ownIdle, otherSleep float64
		for _, r := range rows {
			secs := r["seconds"].(float64)
			switch {
			case r["own"] == true && r["state"] == "idle in transaction":
				ownIdle += secs
				if r["queryid"] != lastQueryID || r["named"] != true {
					t.Errorf("own idle in transaction under statement %v (role and database named: %v), want %d", r["queryid"], r["named"], lastQueryID)
				}
			case r["own"] == false && r["state"] != "active":
				t.Errorf("another session's idle time booked to the run: %v", r)
			case r["own"] == false && r["wait_event"] == "PgSleep":
				otherSleep += secs
			}
		}
		// Four samples 0.5 s apart (a loaded machine's come later, not sooner).
		if ownIdle < 1.5 || otherSleep < 1.5 {
			t.Errorf("own idle in transaction %.1f s, the other session's sleep %.1f s; want about 2 each", ownIdle, otherSleep)
		}
		var runSeconds float64
		if err := admin.QueryRow(ctx, `SELECT extract(epoch FROM ended_at - started_at) FROM telemetry.batch_runs WHERE batch = 'nightly'`).Scan(&runSeconds); err != nil {
			t.Fatal(err)
		}
		if ownIdle > runSeconds+0.05 {
			t.Errorf("the run's own session booked %.1f s in a %.1f s run: time before its begin", ownIdle, runSeconds)
		}
	})
}

// TestXminHoldersInBothModes: a session idle in a REPEATABLE READ transaction: the Go recorder
// and pg_cron mode's sample() both record it as what holds the horizon back, alike.
func TestXminHoldersInBothModes(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		c := e.conn()
		holder := pgtest.Connect(t, e.dsn, "reporting")
		pgtest.MustExec(t, holder, `BEGIN ISOLATION LEVEL REPEATABLE READ`)
		pgtest.MustExec(t, holder, `SELECT count(*) FROM pg_class`)
		goAt := e.record(collectors.TierSample)
		var sqlAt time.Time
		if err := c.QueryRow(context.Background(), `SELECT telemetry.sample()`).Scan(&sqlAt); err != nil {
			t.Fatal(err)
		}
		for _, at := range []time.Time{goAt, sqlAt} {
			rows := pgtest.Query(t, c, `SELECT kind, usename = current_user AS ours, state, held_since IS NOT NULL AS since, xmin_age >= 0 AS aged,
				query_preview FROM telemetry.xmin_horizon_samples WHERE captured_at = $1 AND name = 'reporting' AND datname = current_database()`, at)
			if len(rows) != 1 || rows[0]["kind"] != collectors.XminSession || rows[0]["ours"] != true || rows[0]["state"] != "idle in transaction" ||
				rows[0]["since"] != true || rows[0]["aged"] != true || rows[0]["query_preview"] != "SELECT count(*) FROM pg_class" {
				t.Errorf("holders recorded at %s: %v, want the reporting session idle in its transaction", at, rows)
			}
		}
	})
}
