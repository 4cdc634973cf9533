package exposition_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/exposition"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func startExporter(t *testing.T, dsn string, every time.Duration) (*httptest.Server, *collectors.Runner, *pgxpool.Pool) {
	t.Helper()
	return startExporterTracking(t, dsn, every)
}

// startExporterTracking starts an exporter with every collector on, tracking the given tables
// of schema public.
func startExporterTracking(t testing.TB, dsn string, every time.Duration, track ...string) (*httptest.Server, *collectors.Runner, *pgxpool.Pool) {
	t.Helper()
	cfg, err := postgres.Config(postgres.Options{DSN: dsn, MaxConns: 2, StatementTimeout: 5 * time.Second, LockTimeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.ConnectTimeout = time.Second
	pool, err := postgres.NewPool(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var cc collectors.Config
	for _, name := range track {
		cc.TrackTables = append(cc.TrackTables, collectors.TableName{Schema: "public", Table: strings.TrimPrefix(name, "public.")})
	}
	r := collectors.NewRunner(collectors.RunnerOptions{Pool: pool, Selection: collectors.AllEnabled(), Config: cc,
		SampleEvery: every, SnapshotEvery: every, WaitSampleEvery: every})
	h, err := exposition.Handler(r, exposition.Options{MetricsPath: "/metrics", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts, r, pool
}

func scrape(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func sampleValue(body, series string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// TestTierViewsAndLanding: each tier can be scraped alone, and scrapes never touch the database.
func TestTierViewsAndLanding(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Versions()[len(pgtest.Versions())-1])
	ts, r, pool := startExporter(t, srv.NewDatabase(t), time.Hour)
	for _, tier := range []collectors.Tier{collectors.TierSample, collectors.TierSnapshot} {
		if _, err := r.Collect(context.Background(), tier); err != nil {
			t.Fatal(err)
		}
	}
	acquired := pool.Stat().AcquireCount()
	for range 20 {
		scrape(t, ts.URL+"/metrics")
	}
	if n := pool.Stat().AcquireCount(); n != acquired {
		t.Errorf("20 scrapes used the pool %d times; scrapes must be served from memory", n-acquired)
	}

	_, all := scrape(t, ts.URL+"/metrics")
	_, sample := scrape(t, ts.URL+"/metrics?tier=sample")
	_, snapshot := scrape(t, ts.URL+"/metrics?tier=snapshot")
	for _, c := range []struct {
		body, name string
		want       bool
	}{
		{all, "pgbatch_sessions{", true}, {all, "pgbatch_wal_bytes_total ", true}, {all, "go_goroutines ", true},
		{sample, "pgbatch_sessions{", true}, {sample, "pgbatch_wal_bytes_total ", false},
		{snapshot, "pgbatch_wal_bytes_total ", true}, {snapshot, "pgbatch_sessions{", false},
		{sample, "pg_batch_exporter_build_info{", true}, {snapshot, "pgbatch_up ", true},
	} {
		if strings.Contains(c.body, c.name) != c.want {
			t.Errorf("%q present=%v, want %v", c.name, !c.want, c.want)
		}
	}
	if code, body := scrape(t, ts.URL+"/metrics?tier=bogus"); code != http.StatusBadRequest || !strings.Contains(body, "unknown tier") {
		t.Errorf("?tier=bogus: %d %q", code, body)
	}
	if code, body := scrape(t, ts.URL+"/"); code != http.StatusOK || !strings.Contains(body, "pg-batch-exporter") || !strings.Contains(body, "tier=snapshot") {
		t.Errorf("landing page: %d", code)
	}
	// Without the recorder the report says what it needs, rather than a bare 404.
	for _, path := range []string{"/report", "/report/run/1"} {
		if code, body := scrape(t, ts.URL+path); code != http.StatusNotFound || !strings.Contains(body, "--recorder.enabled") {
			t.Errorf("%s without the recorder: %d %q", path, code, body)
		}
	}
}

// TestServerDownAndBack: with the server stopped the exporter keeps serving pgbatch_up 0, then
// reconnects by itself, and never holds more connections than its pool allows.
func TestServerDownAndBack(t *testing.T) {
	srv := pgtest.StartWith(t, pgtest.Versions()[0], pgtest.Options{Private: true})
	ts, r, _ := startExporter(t, srv.DSN("postgres"), 200*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	up := func(want float64) func() bool {
		return func() bool {
			code, body := scrape(t, ts.URL+"/metrics")
			v, ok := sampleValue(body, "pgbatch_up")
			return code == http.StatusOK && ok && v == want
		}
	}
	pgtest.Eventually(t, 10*time.Second, "up before the stop", up(1))
	srv.Stop(t)
	pgtest.Eventually(t, 10*time.Second, "down while stopped", up(0))
	// The wait sampler may notice first; each tier says so at its next attempt.
	pgtest.Eventually(t, 10*time.Second, "wal collector failing while stopped", func() bool {
		_, body := scrape(t, ts.URL+"/metrics")
		v, ok := sampleValue(body, `pgbatch_collector_success{collector="wal"}`)
		return ok && v == 0
	})
	time.Sleep(time.Second) // a few failed attempts, to exercise the back-off
	srv.Restart(t)
	pgtest.Eventually(t, 20*time.Second, "up after the restart", up(1))

	conn, err := pgx.Connect(context.Background(), srv.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pg-batch-exporter%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n > 2 {
		t.Errorf("%d exporter connections after reconnecting, pool allows 2", n)
	}
}

// A database named from a LATIN1 database ("café", stored in LATIN1 bytes, which reach the
// exporter unconverted) made /metrics answer 500 for everyone: client_golang refuses a label
// value that is not valid UTF-8. Its series are served with U+FFFD for the invalid byte, and
// the others with them.
func TestNamesInAnotherEncoding(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Versions()[0])
	latin1, db := "latin1_"+strconv.Itoa(os.Getpid()), "café_"+strconv.Itoa(os.Getpid())
	srv.Exec(t, "postgres", `CREATE DATABASE `+latin1+` ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`)
	c := pgtest.Connect(t, srv.DSN(latin1), "")
	t.Cleanup(func() { srv.Exec(t, "postgres", `DROP DATABASE IF EXISTS `+latin1+` WITH (FORCE)`) })
	pgtest.MustExec(t, c, `SET client_encoding = 'UTF8'`) // as psql in a UTF-8 terminal
	pgtest.MustExec(t, c, `CREATE DATABASE `+pgx.Identifier{db}.Sanitize())
	t.Cleanup(func() {
		_, _ = c.Exec(context.Background(), `DROP DATABASE IF EXISTS `+pgx.Identifier{db}.Sanitize()+` WITH (FORCE)`)
	})

	ts, r, _ := startExporter(t, srv.NewDatabase(t), time.Hour)
	for _, tier := range []collectors.Tier{collectors.TierSample, collectors.TierSnapshot} {
		if _, err := r.Collect(context.Background(), tier); err != nil {
			t.Fatal(err)
		}
	}
	code, body := scrape(t, ts.URL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d\n%.500s", code, body)
	}
	if want := `pgbatch_database_commits_total{datname="caf` + "\uFFFD" + `_` + strconv.Itoa(os.Getpid()) + `"}`; !strings.Contains(body, want) {
		t.Errorf("no series %s", want)
	}
}
