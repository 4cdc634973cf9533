package pgtest_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func queryString(t *testing.T, c *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var s string
	if err := c.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func dbName(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

func TestVersionsEnv(t *testing.T) {
	t.Setenv("PGBATCH_TEST_VERSIONS", "")
	if got := fmt.Sprint(pgtest.Versions()); got != "[15 16 17 18]" {
		t.Errorf("default Versions() = %s", got)
	}
	t.Setenv("PGBATCH_TEST_VERSIONS", " 17, 15 ,")
	if got := fmt.Sprint(pgtest.Versions()); got != "[17 15]" {
		t.Errorf("Versions() = %s", got)
	}
}

// TestBinaries fetches the npm binaries of every version of Versions() and
// runs `postgres --version` (scripts/ci-deps.sh runs it to prefetch them).
func TestBinaries(t *testing.T) {
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprint(major), func(t *testing.T) {
			t0 := time.Now()
			bin, err := pgtest.BinDir(major)
			if err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin+"/postgres", "--version").CombinedOutput()
			if err != nil {
				t.Fatalf("postgres --version: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), fmt.Sprintf("(PostgreSQL) %d.", major)) {
				t.Errorf("postgres --version = %q, want major %d", out, major)
			}
			t.Logf("%s: %s (%v)", bin, strings.TrimSpace(string(out)), time.Since(t0).Round(time.Millisecond))
		})
	}
}

func TestServers(t *testing.T) {
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprint(major), func(t *testing.T) {
			t.Parallel()
			t0 := time.Now()
			s := pgtest.Start(t, major)
			t.Logf("Start: %v", time.Since(t0).Round(time.Millisecond))
			if s2 := pgtest.Start(t, major); s2 != s {
				t.Errorf("second Start returned another server")
			}
			want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port)
			if s.DSN("postgres") != want {
				t.Errorf("DSN = %s, want %s", s.DSN("postgres"), want)
			}
			c := pgtest.Connect(t, s.DSN("postgres"), "")
			num := queryString(t, c, "SHOW server_version_num")
			if !strings.HasPrefix(num, fmt.Sprint(major)) || len(num) != 6 {
				t.Errorf("server_version_num = %s, want %d....", num, major)
			}
			for setting, want := range map[string]string{
				"fsync": "off", "track_io_timing": "on", "track_wal_io_timing": "on",
				"max_connections": "300", "wal_level": "replica", "listen_addresses": "127.0.0.1",
				"server_encoding": "UTF8", "is_superuser": "on",
			} {
				if got := queryString(t, c, "SELECT current_setting($1)", setting); got != want {
					t.Errorf("%s = %q, want %q", setting, got, want)
				}
			}

			if got := queryString(t, c, "SELECT datcollate FROM pg_database WHERE datname = 'postgres'"); got != "C" {
				t.Errorf("datcollate = %q, want C", got)
			}

			var dsn string
			t.Run("NewDatabase", func(t *testing.T) {
				dsn = s.NewDatabase(t)
				dsn2 := s.NewDatabase(t)
				if dsn == dsn2 {
					t.Fatalf("NewDatabase returned %s twice", dsn)
				}
				s.Exec(t, dbName(t, dsn), "CREATE TABLE x(i int); INSERT INTO x VALUES (1)")
				s.Exec(t, dsn, "INSERT INTO x VALUES (2)") // a DSN works too
				dc := pgtest.Connect(t, dsn, "")
				if n := queryString(t, dc, "SELECT count(*)::text FROM x"); n != "2" {
					t.Errorf("count = %s", n)
				}
				// dc is still open when the database is dropped: FORCE.
			})
			n := queryString(t, c, "SELECT count(*)::text FROM pg_database WHERE datname = $1", dbName(t, dsn))
			if n != "0" {
				t.Errorf("database %s not dropped after the subtest", dbName(t, dsn))
			}
		})
	}
}

func TestDebianPgCron(t *testing.T) {
	if _, err := os.Stat("/usr/lib/postgresql/15/bin/postgres"); err != nil {
		t.Fatalf("Debian's PostgreSQL 15 is missing (%v): run `make deps` (apt-get install postgresql-15 postgresql-15-cron)", err)
	}
	if _, err := os.Stat("/usr/lib/postgresql/15/lib/pg_cron.so"); err != nil {
		t.Fatalf("pg_cron for Debian's PostgreSQL 15 is missing (%v): run `make deps` (apt-get install postgresql-15-cron)", err)
	}
	opts := pgtest.Options{Debian: true, SharedPreload: []string{"pg_cron"}}
	s := pgtest.StartWith(t, 15, opts)
	if s2 := pgtest.StartWith(t, 15, opts); s2 != s {
		t.Errorf("StartWith with equal Options returned another server")
	}
	if s.BinDir != "/usr/lib/postgresql/15/bin" {
		t.Errorf("BinDir = %s", s.BinDir)
	}
	s.Exec(t, "postgres", "CREATE EXTENSION IF NOT EXISTS pg_cron")
	c := pgtest.Connect(t, s.DSN("postgres"), "")
	if v := queryString(t, c, "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'"); v == "" {
		t.Errorf("pg_cron has no version")
	}
	if got := queryString(t, c, "SELECT current_setting('cron.database_name')"); got != "postgres" {
		t.Errorf("cron.database_name = %q", got)
	}
	id := queryString(t, c, "SELECT cron.schedule('pgtest', '* * * * *', 'SELECT 1')::text")
	if id == "" {
		t.Errorf("cron.schedule returned nothing")
	}
	queryString(t, c, "SELECT cron.unschedule('pgtest')::text")
}

func TestPrivateStopRestart(t *testing.T) {
	major := pgtest.Versions()[0]
	s := pgtest.StartWith(t, major, pgtest.Options{Private: true, Settings: map[string]string{"application_name": "pgtest's"}})
	if s == pgtest.Start(t, major) {
		t.Fatal("private server is the shared one")
	}
	dsn := s.NewDatabase(t)
	s.Exec(t, dsn, "CREATE TABLE kept(i int); INSERT INTO kept VALUES (42)")
	port := s.Port

	s.Stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := pgx.Connect(ctx, dsn); err == nil {
		c.Close(ctx)
		t.Fatal("connected to a stopped server")
	}

	s.Restart(t)
	if s.Port != port {
		t.Errorf("port changed %d -> %d", port, s.Port)
	}
	c := pgtest.Connect(t, dsn, "")
	if v := queryString(t, c, "SELECT i::text FROM kept"); v != "42" {
		t.Errorf("kept = %s", v)
	}
	if v := queryString(t, c, "SHOW application_name"); v != "pgtest's" {
		// the server default; pgx does not set application_name
		t.Errorf("application_name = %q", v)
	}
	s.Restart(t) // while running: stop -m fast, start
	c2 := pgtest.Connect(t, dsn, "")
	queryString(t, c2, "SELECT 1::text")
}

// TestStandby: a standby streams what its primary writes, shows in the primary's
// pg_stat_replication under its name (one to quote), and holds what it replays while paused.
func TestStandby(t *testing.T) {
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			testStandby(t, major)
		})
	}
}

func testStandby(t *testing.T, major int) {
	primary := pgtest.StartWith(t, major, pgtest.Options{Private: true})
	dsn := primary.NewDatabase(t)
	standby := primary.StartStandby(t, `replica a's`) // quoted in its primary_conninfo
	p := pgtest.Connect(t, dsn, "")
	pgtest.MustExec(t, p, "CREATE TABLE streamed(i int); INSERT INTO streamed VALUES (1)")
	s := pgtest.Connect(t, standby.DSN(dbName(t, dsn)), "")
	count := func() string { return queryString(t, s, "SELECT count(*)::text FROM streamed") }
	pgtest.Eventually(t, 30*time.Second, "the standby replays the primary's insert", func() bool {
		var n string
		return s.QueryRow(context.Background(), "SELECT count(*)::text FROM streamed").Scan(&n) == nil && n == "1"
	})
	if v := queryString(t, p, "SELECT string_agg(application_name || ':' || state, ',') FROM pg_stat_replication"); v != "replica a's:streaming" {
		t.Errorf("pg_stat_replication: %q, want replica a's streaming", v)
	}
	pgtest.MustExec(t, s, "SELECT pg_wal_replay_pause()")
	pgtest.MustExec(t, p, "INSERT INTO streamed VALUES (2)")
	time.Sleep(time.Second)
	if n := count(); n != "1" {
		t.Errorf("a paused standby has %s rows, want 1", n)
	}
	pgtest.MustExec(t, s, "SELECT pg_wal_replay_resume()")
	pgtest.Eventually(t, 30*time.Second, "replay resumed", func() bool { return count() == "2" })
}

// TestSharedStopRefused checks that Stop on a shared server fails the test.
func TestSharedStopRefused(t *testing.T) {
	s := pgtest.Start(t, pgtest.Versions()[0])
	ft := &fatalTB{TB: t}
	func() {
		defer func() { recover() }()
		s.Stop(ft)
	}()
	if !ft.failed {
		t.Fatal("Stop on a shared server was not refused")
	}
	c := pgtest.Connect(t, s.DSN("postgres"), "")
	queryString(t, c, "SELECT 1::text")
}

type fatalTB struct {
	testing.TB
	failed bool
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.failed = true
	panic("fatal")
}
