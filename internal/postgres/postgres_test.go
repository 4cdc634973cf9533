package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestEveryQueryIsBounded: the pool's sessions carry the exporter's name, timeouts and read-only default.
func TestEveryQueryIsBounded(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Versions()[0])
	o := postgres.Options{DSN: srv.NewDatabase(t), MaxConns: 2, StatementTimeout: 1500 * time.Millisecond, LockTimeout: 250 * time.Millisecond, ReadOnly: true}
	cfg, err := postgres.Config(o)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := postgres.NewPool(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for setting, want := range map[string]string{
		"application_name":              "pg-batch-exporter",
		"statement_timeout":             "1500ms",
		"lock_timeout":                  "250ms",
		"default_transaction_read_only": "on",
		"search_path":                   "pg_catalog, pg_temp",
	} {
		var got string
		if err := pool.QueryRow(context.Background(), "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	_, err = pool.Exec(context.Background(), "SELECT pg_sleep(5)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Errorf("a 5s query under a 1.5s statement_timeout returned %v, want query_canceled", err)
	}
	if _, err := pool.Exec(context.Background(), "CREATE TABLE t (i int)"); err == nil {
		t.Error("the exporter's pool could write")
	}
}

// TestPasswordNeverInErrors: a malformed DSN is reported without its password.
func TestPasswordNeverInErrors(t *testing.T) {
	for _, dsn := range []string{
		"postgres://alice:s3cr3t-pw@localhost:notaport/db",
		"host=localhost port=notaport user=alice password=s3cr3t-pw",
		"postgres://alice:s3cr3t-pw@localhost/db?sslmode=bogus",
	} {
		_, err := postgres.Config(postgres.Options{DSN: dsn})
		if err == nil {
			t.Errorf("%q: no error", dsn)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t-pw") {
			t.Errorf("password leaked: %v", err)
		}
	}
}

// TestLibpqEnvironment: with no DSN, libpq's environment says where to connect, as for psql.
func TestLibpqEnvironment(t *testing.T) {
	t.Setenv("PGHOST", "db.example.internal")
	t.Setenv("PGPORT", "6543")
	t.Setenv("PGUSER", "batch")
	t.Setenv("PGDATABASE", "warehouse")
	t.Setenv("PGPASSWORD", "from-env-secret")
	cfg, err := postgres.Config(postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := postgres.Describe(cfg); got != "batch@db.example.internal:6543/warehouse" {
		t.Errorf("Describe = %q", got)
	}
	if cfg.ConnConfig.Password != "from-env-secret" {
		t.Error("PGPASSWORD not applied")
	}
}
