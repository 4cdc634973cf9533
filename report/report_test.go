package report_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/exposition"
	"github.com/pg-batch-exporter/pg-batch-exporter/recorder"
	"github.com/pg-batch-exporter/pg-batch-exporter/report"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestMain shows the pages' times in UTC, so that TestOutputOverGeneratedData's pages read the
// same on any machine.
func TestMain(m *testing.M) {
	time.Local = time.UTC
	pgtest.Main(m)
}

// recorded is an exporter with the recorder on against a real server, serving the report
// pages, with two runs of batch "nightly" recorded: a normal one, then one held up by a
// lock, a checkpoint and a temp spill.
type recorded struct {
	url            string
	dsn            string
	normal, slow   int64
	normalFrom, to time.Time
}

var (
	once    sync.Once
	shared  *recorded
	failure string
)

// setUp records the two runs once per test process; the tests only read them.
func setUp(t *testing.T) *recorded {
	t.Helper()
	once.Do(func() {
		// The runs outlive the test that records them: they use a context of their own.
		shared = record(t)
	})
	if shared == nil {
		t.Fatalf("recording the runs failed earlier: %s", failure)
	}
	return shared
}

func record(t *testing.T) *recorded {
	t.Helper()
	fail := func(format string, args ...any) {
		failure = fmt.Sprintf(format, args...)
		t.Fatal(failure)
	}
	versions := pgtest.Versions()
	srv := pgtest.Start(t, versions[len(versions)-1])
	// Not NewDatabase: the database must outlive this test, for the other tests; the
	// server and its databases go when the test process ends.
	dsn := srv.DSN("postgres")
	srv.Exec(t, "postgres", "CREATE DATABASE report_test")
	dsn = strings.Replace(dsn, "/postgres?", "/report_test?", 1)
	ctx := context.Background()

	recPool := pgtest.Pool(t, dsn, false, "pg-batch-exporter recorder")
	if err := schema.Migrate(ctx, recPool); err != nil {
		fail("migrate: %v", err)
	}
	// Snapshots every 500 ms: the runs hold delta statement snapshots between their boundaries.
	runner := collectors.NewRunner(collectors.RunnerOptions{Pool: pgtest.Pool(t, dsn, true, ""), Selection: collectors.AllEnabled(),
		SampleEvery: 300 * time.Millisecond, SnapshotEvery: 500 * time.Millisecond, WaitSampleEvery: 100 * time.Millisecond})
	rec := recorder.New(recorder.Options{Pool: recPool, Retention: 24 * time.Hour, BufferRows: 100000, Trigger: runner.Trigger})
	runner.Subscribe(rec.Consume)
	go runner.Run(ctx)
	go rec.Run(ctx)
	h, err := exposition.Handler(runner, exposition.Options{MetricsPath: "/metrics", Logger: slog.New(slog.DiscardHandler),
		Report: report.Handler(report.Options{Pool: pgtest.Pool(t, dsn, true, "pg-batch-exporter report")})})
	if err != nil {
		fail("handler: %v", err)
	}
	r := &recorded{url: httptest.NewServer(h).URL, dsn: dsn}

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		fail("connect: %v", err)
	}
	defer conn.Close(ctx)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			fail("%s: %v", sql, err)
		}
	}
	runID := func(sql string) int64 {
		var id int64
		if err := conn.QueryRow(ctx, sql).Scan(&id); err != nil {
			fail("%s: %v", sql, err)
		}
		return id
	}
	exec(`CREATE EXTENSION pg_stat_statements`)
	exec(`CREATE TABLE orders (id int PRIMARY KEY, amount numeric);
		INSERT INTO orders SELECT g, g FROM generate_series(1, 20000) g`)
	work := func() {
		exec(`UPDATE orders SET amount = amount + 1`)
		exec(`SELECT pg_sleep(1.5)`)
	}

	// batch_begin asks for its boundary snapshot and returns: the run's work waits for it here,
	// so that a loaded machine cannot move the run's first statements before its start.
	begun := func(run int64) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			var ok bool
			err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM telemetry.statement_info_snapshots s, telemetry.batch_runs r
				WHERE r.run_id = $1 AND s.captured_at >= r.started_at)`, run).Scan(&ok)
			if err == nil && ok {
				return
			}
			if time.Now().After(deadline) {
				fail("no snapshot recorded after the start of run %d (err %v)", run, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	r.normalFrom = time.Now()
	r.normal = runID(`SELECT telemetry.batch_begin('nightly')`)
	begun(r.normal)
	work()
	runID(`SELECT telemetry.batch_end('nightly')`)

	r.slow = runID(`SELECT telemetry.batch_begin('nightly')`)
	begun(r.slow)
	locker, err := pgx.Connect(ctx, dsn)
	if err != nil {
		fail("connect: %v", err)
	}
	defer locker.Close(ctx)
	if _, err := locker.Exec(ctx, `BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE`); err != nil {
		fail("lock: %v", err)
	}
	released := make(chan error, 1)
	go func() {
		time.Sleep(2 * time.Second)
		_, err := locker.Exec(ctx, `COMMIT`)
		released <- err
	}()
	work() // waits for the lock first
	if err := <-released; err != nil {
		fail("commit: %v", err)
	}
	exec(`CHECKPOINT`)
	exec(`SET work_mem = '64kB'`)
	exec(`SELECT count(*) FROM (SELECT g FROM generate_series(1, 300000) g ORDER BY g DESC) s`)
	runID(`SELECT telemetry.batch_end('nightly')`)
	r.to = time.Now()

	// The report needs the snapshot batch_end asked for.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ok bool
		err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM telemetry.snapshots s, telemetry.batch_runs r
			WHERE r.run_id = $1 AND s.captured_at >= r.ended_at)`, r.slow).Scan(&ok)
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			fail("no snapshot recorded after the end of run %d (err %v)", r.slow, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return r
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestRunPage(t *testing.T) {
	r := setUp(t)
	code, body := get(t, r.url+"/report/run/"+itoa(r.slow))
	if code != http.StatusOK {
		t.Fatalf("run page: %d\n%s", code, body)
	}
	for _, want := range []string{
		"nightly", "Diagnosis", "lock_contention", "temp_file_spills", "checkpoint_interference",
		"Against the baseline", "previous normal run (" + itoa(r.normal) + ")", "duration",
		"compare()", "wal_bytes_delta", "wait_summary()", "Lock", "telemetry.diagnose_run(" + itoa(r.slow) + ")",
		"WAL written", "Checkpoints", "Waits by event", "Sessions blocked on locks", "Temp bytes",
		"<h2>Statements</h2>", "UPDATE orders SET amount = amount", "telemetry.run_statements(" + itoa(r.slow) + ")",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("run page lacks %q", want)
		}
	}
	if n := strings.Count(body, `<path class="series" d="M`); n < 10 {
		t.Errorf("run page has %d chart lines, want at least 10 (5 charts, the run and its baseline)", n)
	}
	if strings.Contains(body, "ZgotmplZ") {
		t.Error("the template rejected a value (ZgotmplZ)")
	}
	for _, asset := range []string{"<script", "src=\"http", "href=\"http", "@import"} {
		if strings.Contains(body, asset) {
			t.Errorf("run page loads something (%q): it must work offline", asset)
		}
	}
}

func TestIndexAndLanding(t *testing.T) {
	r := setUp(t)
	code, body := get(t, r.url+"/report")
	if code != http.StatusOK {
		t.Fatalf("index: %d\n%s", code, body)
	}
	for _, id := range []int64{r.normal, r.slow} {
		if !strings.Contains(body, `href="/report/run/`+itoa(id)+`"`) {
			t.Errorf("index lacks a link to run %d", id)
		}
	}
	if _, body := get(t, r.url+"/"); !strings.Contains(body, `href="/report"`) {
		t.Error("the landing page does not link to the batch runs")
	}
}

func TestWindowPage(t *testing.T) {
	r := setUp(t)
	q := "?from=" + r.normalFrom.UTC().Format(time.RFC3339) + "&to=" + r.to.Add(time.Second).UTC().Format(time.RFC3339)
	code, body := get(t, r.url+"/report"+q)
	if code != http.StatusOK {
		t.Fatalf("window page: %d\n%s", code, body)
	}
	for _, want := range []string{"Window report", "lock_contention", "telemetry.diagnose(", "Waits by event"} {
		if !strings.Contains(body, want) {
			t.Errorf("window page lacks %q", want)
		}
	}
}

func TestBadInput(t *testing.T) {
	r := setUp(t)
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/report/run/999999", 404, "no batch run with run_id 999999"},
		{"/report/run/abc", 400, "not a run id"},
		{"/report/run/-1", 400, "not a run id"},
		{"/report?from=yesterday&to=2026-01-01T00:00:00Z", 400, "is not a time"},
		{"/report?from=2026-01-01T00:00:00Z", 400, "to is missing"},
		{"/report?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", 400, "must be after"},
		{"/report?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", 400, "the window is 2192 days long; at most 31 days"},
		// Issue 17, finding 8: no Duration's overflow ("2562047h47m16s") in the message.
		{"/report?from=0001-01-01T00:00:00Z&to=9999-12-31T00:00:00Z", 400, "the window is 3652058 days long; at most 31 days"},
		// A window the SQL refuses (before 2000) is the request's fault, not the server's.
		{"/report?from=1999-12-30T00:00:00Z&to=1999-12-31T00:00:00Z", 422, "must be a finite time from 2000-01-01"},
		{"/report/nothing", 404, "no report page at /report/nothing"},
	} {
		code, body := get(t, r.url+c.path)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d, want %d with %q\n%s", c.path, code, c.code, c.want, body)
		}
	}
}

// TestRunsOutOfRange (issue 17, finding 2): runs whose times are out of range ('infinity',
// the year 12000), stored before batch_begin refused them, do not break the pages: the index
// lists the others and says how many it left out, a run's baseline skips them, and the page
// of one says why it cannot be diagnosed (422, not 500).
func TestRunsOutOfRange(t *testing.T) {
	r := setUp(t)
	ctx := context.Background()
	conn := pgtest.Connect(t, r.dsn, "")
	var bad []int64
	for _, sql := range []string{
		`INSERT INTO telemetry.batch_runs (batch, started_at, ended_at, status, source)
			VALUES ('nightly', 'infinity', 'infinity', 'succeeded', 'marker') RETURNING run_id`,
		`INSERT INTO telemetry.batch_runs (batch, started_at, ended_at, status, source)
			VALUES ('nightly', '-infinity', now() - interval '1 day', 'succeeded', 'marker') RETURNING run_id`,
		`INSERT INTO telemetry.batch_runs (batch, started_at, ended_at, status, source)
			VALUES ('nightly', now() - interval '2 days', '12000-01-01', 'succeeded', 'marker') RETURNING run_id`,
	} {
		var id int64
		if err := conn.QueryRow(ctx, sql).Scan(&id); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		bad = append(bad, id)
	}
	t.Cleanup(func() { _, _ = conn.Exec(ctx, `DELETE FROM telemetry.batch_runs WHERE run_id = ANY ($1)`, bad) })

	code, body := get(t, r.url+"/report")
	if code != http.StatusOK || !strings.Contains(body, `href="/report/run/`+itoa(r.slow)+`"`) ||
		!strings.Contains(body, "3 recorded run(s) have a begin or end out of range") {
		t.Errorf("index with runs out of range: %d\n%s", code, body)
	}
	if code, body := get(t, r.url+"/report/run/"+itoa(r.slow)); code != http.StatusOK ||
		!strings.Contains(body, "previous normal run ("+itoa(r.normal)+")") {
		t.Errorf("run page with runs out of range before it: %d\n%s", code, body)
	}
	for _, id := range bad {
		if code, body := get(t, r.url+"/report/run/"+itoa(id)); code != http.StatusUnprocessableEntity ||
			!strings.Contains(body, "must be a finite time from 2000-01-01") {
			t.Errorf("page of run %d, out of range: %d\n%s", id, code, body)
		}
	}
	// A run a writer began long ago (batch_begin's p_started_at), closed by age: its page
	// would read the whole history; it is refused as a window that long is.
	var long int64
	if err := conn.QueryRow(ctx, `SELECT telemetry.batch_begin('longago', 'marker', now() - interval '40 days')`).Scan(&long); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = conn.Exec(ctx, `DELETE FROM telemetry.batch_runs WHERE run_id = $1`, long) })
	if _, err := conn.Exec(ctx, `SELECT telemetry.close_abandoned_runs()`); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, r.url+"/report/run/"+itoa(long)); code != http.StatusUnprocessableEntity ||
		!strings.Contains(body, "run "+itoa(long)+" is 40 days long; at most 31 days fit one report") {
		t.Errorf("page of a run of 40 days: %d\n%s", code, body)
	}
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }

// TestRunsAgainstTheirUsual: a batch with four normal runs, then a slow one, then one in
// progress. The index lists the batch's runs against its usual duration, the slow one marked
// and the running one "so far"; the running run's page says it is still running and compares
// it with its baseline runs' whole and same elapsed part.
func TestRunsAgainstTheirUsual(t *testing.T) {
	r := setUp(t)
	ctx := context.Background()
	conn := pgtest.Connect(t, r.dsn, "hourly")
	run := func(seconds float64) int64 {
		var id int64
		if err := conn.QueryRow(ctx, `SELECT telemetry.batch_begin('hourly')`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		pgtest.MustExec(t, conn, `SELECT pg_sleep($1)`, seconds)
		return id
	}
	var normal []int64
	for range 4 { // the fourth has a usual duration, and is within it
		normal = append(normal, run(0.3))
		pgtest.MustExec(t, conn, `SELECT telemetry.batch_end('hourly')`)
	}
	slow := run(1.5)
	pgtest.MustExec(t, conn, `SELECT telemetry.batch_end('hourly')`)
	running := run(0.5)
	defer pgtest.MustExec(t, conn, `SELECT telemetry.batch_end('hourly')`)

	code, body := get(t, r.url+"/report")
	if code != http.StatusOK {
		t.Fatalf("index: %d\n%s", code, body)
	}
	_, hourly, _ := strings.Cut(body, `<h2 class="mono">hourly</h2>`)
	hourly, _, _ = strings.Cut(hourly, "</table>")
	for _, want := range []string{
		`href="/report/run/` + itoa(slow) + `"`, `href="/report/run/` + itoa(running) + `"`,
		`<span class="badge critical">slow</span>`, "past the p90", "within the usual", " so far", "Usual p90",
	} {
		if !strings.Contains(hourly, want) {
			t.Errorf("the index's hourly runs lack %q:\n%s", want, hourly)
		}
	}
	// Each run's row: the slow one marked, the normal ones not (the one running may become
	// slow by the time the page is read on a loaded machine).
	rows := map[int64]string{}
	for _, row := range strings.Split(hourly, "<tr>")[1:] {
		for _, id := range append([]int64{slow}, normal...) {
			if strings.Contains(row, `href="/report/run/`+itoa(id)+`"`) {
				rows[id] = row
			}
		}
	}
	if !strings.Contains(rows[slow], "badge critical") {
		t.Errorf("run %d, past its usual p90, is not marked slow: %s", slow, rows[slow])
	}
	for _, id := range normal {
		if strings.Contains(rows[id], "badge critical") {
			t.Errorf("normal run %d is marked slow: %s", id, rows[id])
		}
	}

	// Slow is past the p90 by more than baseline_floor_seconds (0.5 s): three runs of 10 s,
	// then one 0.4 s past them (within the usual) and one 1 s past them (slow).
	pgtest.MustExec(t, conn, `INSERT INTO telemetry.batch_runs (batch, started_at, ended_at, status, source)
		SELECT 'floor', now() - make_interval(hours => 6 - i), now() - make_interval(hours => 6 - i, secs => -s), 'succeeded', 'marker'
		FROM unnest(ARRAY[1, 2, 3, 4, 5], ARRAY[10, 10, 10, 10.4, 11]) AS r (i, s)`)
	var slowness string
	if err := conn.QueryRow(ctx, `SELECT string_agg(coalesce(slow::text, 'none'), ' ' ORDER BY started_at)
		FROM telemetry.batch_run_durations(now() - interval '1 day') WHERE batch = 'floor'`).Scan(&slowness); err != nil {
		t.Fatal(err)
	}
	if slowness != "none none none false true" {
		t.Errorf("slow of runs of 10, 10, 10, 10.4 and 11 s = %s, want none none none false true", slowness)
	}

	code, body = get(t, r.url+"/report/run/"+itoa(running))
	if code != http.StatusOK {
		t.Fatalf("running run page: %d\n%s", code, body)
	}
	for _, want := range []string{"still running", "This run has not ended", "previous normal run(s) took",
		"So far, against the baseline", "Same elapsed part", "telemetry.run_so_far(" + itoa(running) + ")"} {
		if !strings.Contains(body, want) {
			t.Errorf("the running run's page lacks %q", want)
		}
	}
	if strings.Contains(body, "ZgotmplZ") {
		t.Error("the template rejected a value (ZgotmplZ)")
	}
}

// TestIndexWithManyBatches: a batch role may name 20,000 batches (a run each: batch_begin
// lets a role own any new name); the index still answers, with the 50 batches of the latest
// runs (before: every batch's runs against their usual, 500 at the 30 s statement timeout).
func TestIndexWithManyBatches(t *testing.T) {
	r := setUp(t)
	ctx := context.Background()
	conn := pgtest.Connect(t, r.dsn, "")
	pgtest.MustExec(t, conn, `INSERT INTO telemetry.batch_runs (batch, started_at, ended_at, status, source)
		SELECT 'flood' || i, now() - interval '2 days', now() - interval '2 days' + interval '1 second', 'succeeded', 'marker'
		FROM generate_series(1, 20000) i`)
	t.Cleanup(func() { _, _ = conn.Exec(ctx, `DELETE FROM telemetry.batch_runs WHERE batch LIKE 'flood%'`) })
	start := time.Now()
	code, body := get(t, r.url+"/report")
	took := time.Since(start)
	t.Logf("index with 20,000 batches: %d, %d bytes in %s", code, len(body), took)
	if code != http.StatusOK || !strings.Contains(body, `href="/report/run/`+itoa(r.slow)+`"`) {
		t.Fatalf("index with 20,000 batches: %d\n%.2000s", code, body)
	}
	if n := strings.Count(body, `<h2 class="mono">`); n != 50 {
		t.Errorf("the index lists %d batches, not the 50 with the latest runs", n)
	}
}
