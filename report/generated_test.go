package report_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/report"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

var update = flag.Bool("update", false, "rewrite testdata/generated from this code's output")

// generatedStart is where the generated telemetry begins: a fixed time, so that every page
// and row of the output is the same on each run.
var generatedStart = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

// generatedData is 13 hours of server "gen" from generatedStart: a snapshot a minute (the
// WAL counter reset at minute 400, temp bytes going back at minute 500 with no reset
// recorded), a sample every 30 s (the wait sampler's seconds for the first 6 hours only, the
// sample grid's counts after), three tracked tables vacuumed now and then, a standby, and 12
// hourly runs of batch "hourly", the last one held up by locks, checkpoints and temp spills.
var generatedData = []string{
	`SELECT telemetry._ensure_partitions($1), telemetry._ensure_partitions($1::timestamptz + interval '1 day')`,
	`SELECT telemetry._note_server('gen', '7000000000000000002', 17, $1)`,
	`INSERT INTO telemetry.snapshots (captured_at, pg_version, server, wal_bytes, ckpt_timed, ckpt_requested,
		checkpoint_lsn, checkpoint_time, io_client_writes, io_client_buffer_writes, temp_files, temp_bytes, wal_stats_reset, ckpt_stats_reset, db_stats_reset)
	SELECT $1::timestamptz + i * interval '1 minute', 17, 'gen',
		CASE WHEN i < 400 THEN i * 4000000::bigint + (i % 7) * 100000 ELSE (i - 400) * 3000000::bigint END,
		i / 5 + greatest(i - 720, 0) / 2, i / 60, '0/1000000'::pg_lsn + (i / 5) * 20000000::numeric,
		$1::timestamptz + (i / 5) * interval '5 minutes', i * 1500 + greatest(i - 720, 0) * 9000, i * 1500 + greatest(i - 720, 0) * 9000,
		i / 30 + greatest(i - 720, 0), CASE WHEN i < 500 THEN (i / 30) * 8388608::bigint ELSE (i / 40) * 8388608::bigint END
			+ greatest(i - 720, 0) * 33554432::bigint,
		CASE WHEN i < 400 THEN $1::timestamptz - interval '1 day' ELSE $1::timestamptz + interval '400 minutes' END,
		$1::timestamptz - interval '1 day', $1::timestamptz - interval '1 day'
	FROM generate_series(0, 13 * 60) i`,
	`INSERT INTO telemetry.tracked_tables (relid, schemaname, relname) SELECT 16384 + t, 'public', 'table_' || t FROM generate_series(1, 3) t`,
	`INSERT INTO telemetry.table_snapshots (snapshot_id, relid, schemaname, relname, n_live_tup, n_dead_tup, autovacuum_count, server, captured_at)
	SELECT s.id, 16384 + t, 'public', 'table_' || t, 100000 + s.n * 50, s.n % 5000, (s.n * t) / 90, s.server, s.captured_at
	FROM (SELECT id, captured_at, server, row_number() OVER (ORDER BY captured_at) AS n FROM telemetry.snapshots) s, generate_series(1, 3) t`,
	`INSERT INTO telemetry.replication_snapshots (snapshot_id, pid, application_name, state, sync_state, sent_lsn, replay_lsn, server, captured_at)
	SELECT id, 4242, 'standby1', 'streaming', 'async', checkpoint_lsn + 1000 + extract(minute FROM captured_at)::int * 4096,
		checkpoint_lsn + 500, server, captured_at
	FROM telemetry.snapshots`,
	`INSERT INTO telemetry.samples (captured_at, server) SELECT $1::timestamptz + i * interval '30 seconds', 'gen' FROM generate_series(0, 13 * 120) i`,
	`INSERT INTO telemetry.wait_samples (sample_id, backend_type, wait_event_type, wait_event, state, count, server, captured_at)
	SELECT s.id, g.backend_type, g.wait_event_type, g.wait_event, g.state,
		1 + (s.id * 7 + g.n * 13) % 5 + CASE WHEN g.n IN (4, 5) AND s.captured_at >= $1::timestamptz + interval '12 hours' THEN 6 ELSE 0 END,
		s.server, s.captured_at
	FROM telemetry.samples s, (VALUES
		(1, 'client backend', 'Running', 'CPU', 'active'), (2, 'client backend', 'IO', 'DataFileRead', 'active'),
		(3, 'client backend', 'IO', 'WALWrite', 'active'), (4, 'client backend', 'Lock', 'transactionid', 'active'),
		(5, 'client backend', 'IO', 'BufFileWrite', 'active'), (6, 'client backend', 'Client', 'ClientRead', 'idle'),
		(7, 'client backend', 'Lock', 'extend', 'active'), (8, 'checkpointer', 'Activity', 'CheckpointerMain', 'unknown')
	) g(n, backend_type, wait_event_type, wait_event, state)
	WHERE (g.n * 3 + s.id) % 8 < 6`,
	`INSERT INTO telemetry.wait_time_samples (sample_id, wait_event_type, wait_event, seconds, server, captured_at)
	SELECT s.id, w.wait_event_type, w.wait_event, 0.5 + (s.id * 3 + w.n) % 20, s.server, s.captured_at
	FROM telemetry.samples s, (VALUES (1, 'Running', 'CPU'), (2, 'IO', 'DataFileRead'), (3, 'IO', 'WALWrite'),
		(4, 'Lock', 'transactionid'), (5, 'Lock', 'relation'), (6, 'IPC', 'SyncRep'), (7, 'LWLock', 'CheckpointerComm')
	) w(n, wait_event_type, wait_event)
	WHERE s.captured_at < $1::timestamptz + interval '6 hours'`,
	`INSERT INTO telemetry.lock_samples (sample_id, blocked_pid, blocked_user, blocked_app, blocked_query_preview,
		blocked_duration, blocking_pid, blocking_user, blocking_app, blocking_query_preview, lock_type, locked_relation, server, captured_at)
	SELECT s.id, 10000 + l, 'app', 'worker_1', 'UPDATE public.table_1 SET status = ''done'' WHERE id = 42',
		(s.id % 60) * interval '1 second', 10020 + l, 'app', 'worker_2', 'UPDATE public.table_1 SET status = ''held''',
		'transactionid', 'public.table_1', s.server, s.captured_at
	FROM telemetry.samples s, generate_series(1, 3) l
	WHERE s.id % 11 = 0 AND l = 1 OR s.captured_at >= $1::timestamptz + interval '12 hours' AND s.id % 3 <> 0 AND l <= 1 + s.id % 3`,
	`INSERT INTO telemetry.activity_samples (sample_id, pid, usename, application_name, backend_type, state,
		wait_event_type, wait_event, query_start, state_change, query_preview, server, captured_at, datname)
	SELECT s.id, 10000 + k, 'app', 'worker_' || k, 'client backend', 'active',
		(ARRAY['IO', 'Lock', NULL])[1 + (s.id + k) % 3], (ARRAY['BufFileWrite', 'transactionid', NULL])[1 + (s.id + k) % 3],
		s.captured_at - k * interval '7 seconds', s.captured_at - k * interval '1 second',
		'SELECT * FROM public.table_' || k || ' ORDER BY id', s.server, s.captured_at, 'app'
	FROM telemetry.samples s, generate_series(1, 3) k`,
	`INSERT INTO telemetry.progress_samples (sample_id, progress_type, pid, relid, relname, phase, blocks_total, blocks_done, server, captured_at, datname)
	SELECT s.id, 'vacuum', 20000, 16385, 'table_1', 'scanning heap', 1000, s.id % 1000, s.server, s.captured_at, 'app'
	FROM telemetry.samples s WHERE s.id % 40 < 4`,
	`INSERT INTO telemetry.batch_runs (batch, started_at, ended_at, status, source, server)
	SELECT 'hourly', $1::timestamptz + i * interval '1 hour' + interval '5 minutes',
		$1::timestamptz + i * interval '1 hour' + interval '35 minutes' + (i % 3) * interval '1 minute' + CASE WHEN i = 12 THEN interval '15 minutes' ELSE interval '0' END,
		CASE WHEN i = 4 THEN 'failed' ELSE 'succeeded' END, 'marker', 'gen'
	FROM generate_series(1, 12) i ORDER BY i`,
}

// TestOutputOverGeneratedData: diagnose and diagnose_run over generated windows and runs,
// and the report's pages of each (its findings, compare, waits and the charts' series), are
// what testdata/generated holds (go test -run TestOutputOverGeneratedData -update rewrites
// it): a change that means to keep the output keeps it.
func TestOutputOverGeneratedData(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		dsn := srv.NewDatabase(t)
		ctx := context.Background()
		pool := pgtest.Pool(t, dsn, false, "")
		if err := schema.Migrate(ctx, pool); err != nil {
			t.Fatal(err)
		}
		conn := pgtest.Connect(t, dsn, "")
		for _, sql := range generatedData {
			var args []any
			if strings.Contains(sql, "$1") {
				args = append(args, generatedStart)
			}
			pgtest.MustExec(t, conn, sql, args...)
		}
		web := httptest.NewServer(report.Handler(report.Options{Pool: pgtest.Pool(t, dsn, true, "")}))
		defer web.Close()

		got := map[string]string{}
		rows := func(sql string, args ...any) string {
			t.Helper()
			r, err := conn.Query(ctx, sql, args...)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for r.Next() {
				var line string
				if err := r.Scan(&line); err != nil {
					t.Fatal(err)
				}
				b.WriteString(line + "\n")
			}
			if err := r.Err(); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
			return b.String()
		}
		page := func(path string) string {
			t.Helper()
			code, body := get(t, web.URL+path)
			if code != http.StatusOK {
				t.Fatalf("%s: %d\n%s", path, code, body)
			}
			return body
		}
		hour := func(h float64) time.Time { return generatedStart.Add(time.Duration(h * float64(time.Hour))) }
		for i, w := range [][2]time.Time{{hour(1), hour(2)}, {hour(5), hour(8)}, {hour(11.5), hour(12.9)}, {hour(0), hour(13)}} {
			got[fmt.Sprintf("window%d-diagnose.txt", i+1)] = rows(`SELECT to_jsonb(d)::text FROM telemetry.diagnose($1, $2) d`, w[0], w[1])
			got[fmt.Sprintf("window%d.html", i+1)] = page("/report?from=" + w[0].Format(time.RFC3339) + "&to=" + w[1].Format(time.RFC3339))
		}
		var runs []int64
		r, _ := conn.Query(ctx, `SELECT run_id FROM telemetry.batch_runs ORDER BY run_id`)
		for r.Next() {
			var id int64
			if err := r.Scan(&id); err != nil {
				t.Fatal(err)
			}
			runs = append(runs, id)
		}
		if len(runs) != 12 {
			t.Fatalf("runs %v, want 12", runs)
		}
		for i, id := range runs {
			got[fmt.Sprintf("run%02d-diagnose_run.txt", i+1)] = rows(`SELECT to_jsonb(d)::text FROM telemetry.diagnose_run($1) d`, id)
			got[fmt.Sprintf("run%02d.html", i+1)] = page(fmt.Sprintf("/report/run/%d", id))
		}
		compareGenerated(t, got)
	})
}

// compareGenerated checks the output against testdata/generated, or rewrites it (-update).
func compareGenerated(t *testing.T, got map[string]string) {
	t.Helper()
	dir := filepath.Join("testdata", "generated")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, text := range got {
		file := filepath.Join(dir, name)
		if *update {
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if string(want) != text {
			t.Errorf("%s differs from %s (go test -run TestOutputOverGeneratedData -update rewrites it):\n%s", name, file, firstDifference(string(want), text))
		}
	}
}

// firstDifference shows the first line where two texts differ.
func firstDifference(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\nwant %s\ngot  %s", i+1, wl, gl)
		}
	}
	return ""
}
