package recorder

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/proctest"
)

// refusedRows is the recorder's pgbatch_recorder_rows_refused_total by table, the tables with
// none left out.
func refusedRows(t *testing.T, r *Recorder) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(r.refused)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				out[m.GetLabel()[0].GetValue()] = v
			}
		}
	}
	return out
}

// Rows the recorder's database refuses for their data (a count beyond its integer column, which
// pgx cannot encode; an instant before 4713 BC, which the server refuses; a collection taken at
// such an instant; a snapshot's value beyond its column) are set aside, counted
// by table and logged once per table and error code; the other rows of their collection and
// the collections after them are written, none twice, and nothing stays buffered. Before, the
// refused collection stayed at the buffer's head and nothing was recorded again.
func TestRefusedRowsSetAside(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Versions()[0])
	dsn := srv.NewDatabase(t)
	ctx := context.Background()
	pool := newPool(t, dsn, false, "pg-batch-exporter recorder")
	if err := schema.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	var log proctest.LockedBuffer
	rec := New(Options{Pool: pool, BufferRows: 100000, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	server := collectors.Server{VersionNum: 170000, SystemID: "refusals"}
	sample := func(at time.Time, count int) *collectors.Collection {
		return &collectors.Collection{Tier: collectors.TierSample, CapturedAt: at, Server: server,
			Sessions: []collectors.SessionGroup{{BackendType: "client backend", WaitEventType: "Lock", WaitEvent: "relation", State: "active", Count: count},
				{BackendType: "client backend", WaitEventType: "Running", WaitEvent: "CPU", State: "active", Count: 1}},
			WaitTime: []collectors.WaitTime{{WaitEventType: "Lock", WaitEvent: "relation", Seconds: 1}}}
	}
	at := time.Now().UTC().Truncate(time.Second)
	tooMany := 1 << 40 // wait_samples.count is an integer
	rec.Consume(sample(at, tooMany))
	rec.Consume(sample(time.Date(-5000, 1, 1, 0, 0, 0, 0, time.UTC), 1))
	workers := tooMany
	rec.Consume(&collectors.Collection{Tier: collectors.TierSnapshot, CapturedAt: at, Server: server, AutovacuumWorkers: &workers})
	// Refused alike (not logged again), and a session whose query started before 4713 BC.
	ancient := time.Date(-5000, 1, 1, 0, 0, 0, 0, time.UTC)
	refusedBoth := sample(at.Add(time.Second), tooMany)
	refusedBoth.Activity = []collectors.ActiveSession{{PID: 1, QueryStart: &ancient}, {PID: 2}}
	rec.Consume(refusedBoth)
	// Texts no text value holds (a NUL, a byte that is not UTF-8) are repaired, not refused.
	repaired := sample(at.Add(2*time.Second), 2)
	app := "a\x00b\xff"
	repaired.Activity = []collectors.ActiveSession{{PID: 3, ApplicationName: &app}}
	rec.Consume(repaired)
	if err := rec.drain(ctx); err != nil {
		t.Fatalf("drain: %v", err)
	}
	// A retry of a stored collection with a refused row (its commit unacknowledged) adds nothing.
	rec.Consume(sample(at, tooMany))
	if err := rec.drain(ctx); err != nil {
		t.Fatalf("drain again: %v", err)
	}
	if rec.Buffered() != 0 {
		t.Errorf("buffered: %d rows, want none", rec.Buffered())
	}
	c := pgtest.Connect(t, dsn, "")
	got := pgtest.Query(t, c, `SELECT extract(epoch FROM s.captured_at - $1)::int AS after,
			(SELECT string_agg(w.wait_event || '=' || w.count, ',' ORDER BY w.wait_event) FROM telemetry.wait_samples w WHERE w.sample_id = s.id AND w.captured_at = s.captured_at) AS waits,
			(SELECT count(*) FROM telemetry.wait_time_samples w WHERE w.sample_id = s.id AND w.captured_at = s.captured_at) AS wait_times,
			(SELECT string_agg(a.pid::text, ',') FROM telemetry.activity_samples a WHERE a.sample_id = s.id AND a.captured_at = s.captured_at) AS sessions
		FROM telemetry.samples s ORDER BY s.captured_at`, at)
	want := `[map[after:0 sessions:<nil> wait_times:1 waits:CPU=1] map[after:1 sessions:2 wait_times:1 waits:CPU=1] map[after:2 sessions:3 wait_times:1 waits:CPU=1,relation=2]]`
	if fmt.Sprint(got) != want {
		t.Errorf("samples written:\n%v\nwant\n%s", got, want)
	}
	if got := pgtest.Query(t, c, `SELECT application_name FROM telemetry.activity_samples WHERE pid = 3`); fmt.Sprint(got) != "[map[application_name:a\uFFFDb\uFFFD]]" {
		t.Errorf("repaired text: %q", got)
	}
	if n := pgtest.Query(t, c, `SELECT count(*) AS n FROM telemetry.snapshots`)[0]["n"]; n != int64(0) {
		t.Errorf("snapshots: %v, want the refused one set aside", n)
	}
	// wait_samples: the two rows out of range, and the refused instant's two; the refused
	// instant's parent and its wait time; the refused snapshot.
	if got, want := fmt.Sprint(refusedRows(t, rec)), `map[activity_samples:1 samples:1 snapshots:1 wait_samples:4 wait_time_samples:1]`; got != want {
		t.Errorf("refused rows: %s, want %s", got, want)
	}
	if got, want := value(t, rec.written.WithLabelValues("wait_samples")), 4.0; got != want {
		t.Errorf("wait_samples written: %v, want %v", got, want)
	}
	logged := log.String()
	for _, want := range []string{"table=wait_samples", "table=samples", "table=snapshots", "table=activity_samples"} {
		lines := 0
		for _, l := range strings.Split(logged, "\n") {
			if strings.Contains(l, "refused rows for their data") && strings.Contains(l, want+" ") {
				lines++
			}
		}
		if lines != 1 {
			t.Errorf("%s: logged %d times, want once:\n%s", want, lines, logged)
		}
	}
}

// lockWaitedQuery has a session of dsn run stmt while another holds an ACCESS EXCLUSIVE lock
// on table: the wait sampler and a sample-tier collection see it waiting while parsing (no
// query_id yet); the lock released, it is done before a sample sees its query_id, and what
// was sampled is recorded. whileWaiting, if any, runs while it waits. It returns the
// database's name.
func (e *env) lockWaitedQuery(dsn, table, stmt string, whileWaiting func()) string {
	e.t.Helper()
	ctx := context.Background()
	locker := pgtest.Connect(e.t, dsn, "locker")
	waiter := pgtest.Connect(e.t, dsn, "waiter")
	// As psql in a UTF-8 terminal: the server converts the text to the database's encoding
	// (pgx would take the server's).
	pgtest.MustExec(e.t, waiter, `SET client_encoding = 'UTF8'`)
	var datname string
	if err := waiter.QueryRow(ctx, `SELECT current_database()`).Scan(&datname); err != nil {
		e.t.Fatal(err)
	}
	pgtest.MustExec(e.t, locker, `BEGIN`)
	pgtest.MustExec(e.t, locker, `LOCK TABLE `+table+` IN ACCESS EXCLUSIVE MODE`)
	done := make(chan error, 1)
	go func() {
		_, err := waiter.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol)
		done <- err
	}()
	eventually(e.t, e.conn(), `SELECT bool_or(wait_event_type = 'Lock') FROM pg_stat_activity WHERE datname = $1 AND application_name = 'waiter'`, datname)
	for range 2 {
		if err := e.runner.Waits().Sample(ctx); err != nil {
			e.t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.record(collectors.TierSample)
	if whileWaiting != nil {
		whileWaiting()
	}
	pgtest.MustExec(e.t, locker, `COMMIT`)
	if err := <-done; err != nil {
		e.t.Fatalf("%s: %v", stmt, err)
	}
	if err := e.runner.Waits().Sample(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.record(collectors.TierSample)
	return datname
}

// newLatin1Database creates a LATIN1 database on srv and returns its DSN.
func newLatin1Database(t *testing.T, srv *pgtest.Server) string {
	t.Helper()
	name := fmt.Sprintf("latin1_%d_%d", os.Getpid(), time.Now().UnixNano())
	srv.Exec(t, "postgres", `CREATE DATABASE `+name+` ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`)
	t.Cleanup(func() { srv.Exec(t, "postgres", `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`) })
	return srv.DSN(name)
}

// The two texts of lock-waiting queries the recorder's database refused, which stopped all
// recording (issue 17): a query of a LATIN1 database, whose text pg_stat_activity passes on in
// LATIN1 ('café crème' is not valid UTF-8), and a query of 1,000 4-byte characters, whose text
// was part of statement_wait_samples' key (index row size exceeds the btree maximum: a server
// whose track_activity_query_size keeps texts that long, characters that do not compress). Each is recorded, none refused.
func TestLockWaitedTextsRecorded(t *testing.T) {
	for _, v := range pgtest.Versions() {
		t.Run("pg"+strconv.Itoa(v), func(t *testing.T) {
			t.Parallel()
			srv := pgtest.StartWith(t, v, pgtest.Options{Settings: map[string]string{"track_activity_query_size": "8kB"}})
			e := newEnv(t, srv)
			e.exec(`CREATE TABLE work (id int)`)
			latin1 := newLatin1Database(t, srv)
			srv.Exec(t, latin1, `CREATE TABLE t (id int)`)
			latin1Name := e.lockWaitedQuery(latin1, "t", `SELECT 'café crème' FROM t`, nil)
			// 1,000 4-byte characters that compress poorly (an index entry is compressed first).
			var wide strings.Builder
			for i := range 1000 {
				wide.WriteRune(rune(0x20000 + (i*7919)%0xA6D0))
			}
			e.lockWaitedQuery(e.dsn, "work", `SELECT count(*) FROM work /* `+wide.String()+` */`, nil)
			if refused := refusedRows(t, e.rec); len(refused) != 0 {
				t.Errorf("refused rows: %v", refused)
			}
			c := e.conn()
			normalized := `SELECT $1 FROM t`
			for _, q := range []string{
				`SELECT count(*) AS n FROM telemetry.lock_samples WHERE datname = $1 AND blocked_query_preview = $2`,
				`SELECT count(*) AS n FROM telemetry.lock_wait_episodes WHERE datname = $1 AND blocked_query_preview = $2`,
				`SELECT count(*) AS n FROM telemetry.activity_samples WHERE datname = $1 AND query_preview = $2`,
				`SELECT count(*) AS n FROM telemetry.statement_wait_samples WHERE $1 <> '' AND queryid = 0 AND query_text = $2`,
			} {
				if n := pgtest.Query(t, c, q, latin1Name, normalized)[0]["n"]; n == int64(0) {
					t.Errorf("the LATIN1 database's query %q not recorded: %s", normalized, q)
				}
			}
			if n := pgtest.Query(t, c, `SELECT count(*) AS n FROM telemetry.statement_wait_samples WHERE queryid = 0 AND query_text LIKE '%' || $1 || '%'`, wide.String()[:800])[0]["n"]; n == int64(0) {
				t.Errorf("the 4-byte query's text not recorded: %v", pgtest.Query(t, c, `SELECT queryid, left(query_text, 40) FROM telemetry.statement_wait_samples`))
			}
		})
	}
}

// Writes that fail for a reason other than their data stay buffered, not set aside: a revoked
// INSERT (42501), a read-only database (25006). Once the cause is gone every collection is
// written, in order, none twice, and nothing was counted as refused.
func TestTransientWriteFailuresStayBuffered(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Versions()[0])
	dsn := srv.NewDatabase(t)
	role := "rec_" + strings.TrimPrefix(mustParseURL(t, dsn).Path, "/")
	srv.Exec(t, dsn, `CREATE ROLE `+role+` LOGIN; CREATE SCHEMA telemetry AUTHORIZATION `+role)
	t.Cleanup(func() { srv.Exec(t, dsn, `DROP OWNED BY `+role+`; DROP ROLE `+role) })
	roleDSN := mustParseURL(t, dsn)
	roleDSN.User = url.User(role)
	ctx := context.Background()
	pool := newPool(t, roleDSN.String(), false, "pg-batch-exporter recorder")
	if err := schema.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	rec := New(Options{Pool: pool, BufferRows: 100000})
	server := collectors.Server{VersionNum: 170000, SystemID: "transient"}
	at := time.Now().UTC().Truncate(time.Second)
	// drained drains until it succeeds or fails tries times in a row (a terminated session
	// fails once before the pool replaces it).
	drained := func(tries int) error {
		var err error
		for range tries {
			if err = rec.drain(ctx); err == nil {
				return nil
			}
		}
		return err
	}
	reconnect := `; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '` + role + `'`
	for i, fault := range []struct{ name, on, off string }{
		{"revoked INSERT", `REVOKE INSERT ON telemetry.samples FROM ` + role, `GRANT INSERT ON telemetry.samples TO ` + role},
		{"read-only", `ALTER ROLE ` + role + ` SET default_transaction_read_only = on` + reconnect,
			`ALTER ROLE ` + role + ` RESET default_transaction_read_only` + reconnect},
	} {
		srv.Exec(t, dsn, fault.on)
		for k := range 2 {
			rec.Consume(&collectors.Collection{Tier: collectors.TierSample, CapturedAt: at.Add(time.Duration(2*i+k) * time.Second), Server: server,
				Sessions: []collectors.SessionGroup{{BackendType: "client backend", WaitEventType: "Running", WaitEvent: "CPU", State: "active", Count: 1}}})
		}
		if err := drained(3); err == nil {
			t.Fatalf("%s: written", fault.name)
		} else {
			t.Logf("%s: %v", fault.name, err)
		}
		if rec.Buffered() != 4 {
			t.Errorf("%s: %d rows buffered, want both collections' 4", fault.name, rec.Buffered())
		}
		srv.Exec(t, dsn, fault.off)
		if err := drained(3); err != nil {
			t.Fatalf("%s gone: %v", fault.name, err)
		}
	}
	c := pgtest.Connect(t, dsn, "")
	if got := pgtest.Query(t, c, `SELECT count(*) AS n, count(DISTINCT captured_at) AS distinct_at FROM telemetry.samples`); fmt.Sprint(got) != "[map[distinct_at:4 n:4]]" {
		t.Errorf("samples: %v, want 4, none twice", got)
	}
	if refused := refusedRows(t, rec); len(refused) != 0 {
		t.Errorf("refused: %v", refused)
	}
}
