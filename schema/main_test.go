package schema

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// installSQL is InstallFile from this folder, where the tests run.
var installSQL = filepath.Join("..", InstallFile)

// TestGeneratedSQLInSync fails when recorder/sql/install.sql or a generated definition
// (recorder/sql/collect.sql, diagnosis/patterns/findings.sql) no longer matches what the collectors,
// migrations, definitions and pattern folders generate: go generate ./... rewrites them.
func TestGeneratedSQLInSync(t *testing.T) {
	install, err := InstallSQL()
	if err != nil {
		t.Fatal(err)
	}
	files, err := GeneratedFiles()
	if err != nil {
		t.Fatal(err)
	}
	files[InstallFile] = install
	if len(files) < 3 {
		t.Fatalf("generated files: %v", files)
	}
	for file, want := range files {
		if got, _ := os.ReadFile(filepath.Join("..", filepath.FromSlash(file))); string(got) != want {
			t.Errorf("%s is stale: run go generate ./...", file)
		}
	}
}

// env is one test's database with the schema installed.
type env struct {
	t    *testing.T
	srv  *pgtest.Server
	dsn  string
	pool *pgxpool.Pool // the migrating role's
}

func newEnv(t *testing.T, srv *pgtest.Server) *env {
	t.Helper()
	return newEnvOn(t, srv, srv.NewDatabase(t))
}

func newEnvOn(t *testing.T, srv *pgtest.Server, dsn string) *env {
	t.Helper()
	e := &env{t: t, srv: srv, dsn: dsn, pool: pgtest.Pool(t, dsn, false, "pg-batch-exporter recorder")}
	t.Cleanup(e.pool.Close)
	if err := Migrate(context.Background(), e.pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return e
}

// exec runs statements in the test database as the superuser.
func (e *env) exec(sql string) { e.t.Helper(); e.srv.Exec(e.t, e.dsn, sql) }

// conn is a superuser connection to the test database, closed at the end of the test.
func (e *env) conn() *pgx.Conn {
	e.t.Helper()
	return pgtest.Connect(e.t, e.dsn, "")
}

// sample records a sample-tier collection as pg_cron mode does, and returns its captured_at.
func (e *env) sample() time.Time {
	e.t.Helper()
	var at time.Time
	if err := e.conn().QueryRow(context.Background(), `SELECT telemetry.sample()`).Scan(&at); err != nil {
		e.t.Fatal(err)
	}
	return at
}
