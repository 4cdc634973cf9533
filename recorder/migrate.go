package recorder

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Migrations are recorder/migrations/NNNN_name.sql, applied in order, each once, in a
// transaction of its own. Numbers 0001-0049 belong to the recorder, 0050 and up to batches
// and diagnosis. Each must be re-runnable (CREATE ... IF NOT EXISTS, CREATE OR REPLACE):
// an interrupted psql install may run one again. sql/collect.sql is applied again whenever
// its text changes, since it follows the collectors' statements.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

//go:embed sql/collect.sql
var collectFile string

// collectScript is the name under which collect.sql is recorded in schema_migrations.
const collectScript = "collect.sql"

var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// migrationLockKey is the advisory lock that serialises migrations (Go and install.sql).
const migrationLockKey = 7366_4321_0003

// migrationSearchPath is set in every migration's transaction: views and defaults bind their
// operators and functions when created, and an object another role planted in public (an
// exact-type "/" or unnest) would otherwise be baked into them and run for every reader.
// Telemetry objects are named with their schema.
const migrationSearchPath = `SET LOCAL search_path = pg_catalog, pg_temp`

// sqlBootstrap creates what the migrations are recorded in. CREATE SCHEMA IF NOT EXISTS
// would still ask for CREATE on the database, which a role given the schema lacks.
const sqlBootstrap = `DO $$ BEGIN
    IF to_regnamespace('telemetry') IS NULL THEN
        CREATE SCHEMA telemetry;
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS telemetry.schema_migrations (
    name text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);`

type script struct {
	name, sql, checksum string
}

func newScript(name, sql string) script {
	sum := sha256.Sum256([]byte(sql))
	return script{name: name, sql: sql, checksum: hex.EncodeToString(sum[:])}
}

// scripts are the migrations in order, then collect.sql.
func scripts() ([]script, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []script
	numbers := map[string]string{}
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration %s: the name must be NNNN_name.sql (lower case)", e.Name())
		}
		if other, dup := numbers[m[1]]; dup {
			return nil, fmt.Errorf("migrations %s and %s have the same number", other, e.Name())
		}
		numbers[m[1]] = e.Name()
		b, err := fs.ReadFile(migrationFiles, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, newScript(e.Name(), string(b)))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return append(out, newScript(collectScript, collectFile)), nil
}

// Migrate creates or upgrades the telemetry schema. Running it again is a no-op; it never
// drops data. A role that is not the schema's owner can run it once the schema is current.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	all, err := scripts()
	if err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLockKey)); err != nil {
		return fmt.Errorf("waiting for the migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrationLockKey))

	// CREATE ... IF NOT EXISTS still needs the privilege to create: ask first.
	var bootstrapped bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('telemetry.schema_migrations') IS NOT NULL`).Scan(&bootstrapped); err != nil {
		return err
	}
	if !bootstrapped {
		if err := pgx.BeginFunc(ctx, conn.Conn(), func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, migrationSearchPath+";\n"+sqlBootstrap)
			return err
		}); err != nil {
			return fmt.Errorf("creating schema telemetry: %w", err)
		}
	}
	applied := map[string]string{}
	rows, _ := conn.Query(ctx, `SELECT name, checksum FROM telemetry.schema_migrations`)
	var name, sum string
	if _, err := pgx.ForEachRow(rows, []any{&name, &sum}, func() error { applied[name] = sum; return nil }); err != nil {
		return err
	}
	for _, s := range all {
		prev, done := applied[s.name]
		if done && (s.name != collectScript || prev == s.checksum) {
			continue
		}
		if err := apply(ctx, conn.Conn(), s); err != nil {
			return fmt.Errorf("migration %s: %w", s.name, err)
		}
	}
	return nil
}

func apply(ctx context.Context, conn *pgx.Conn, s script) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// DDL on a large table may take a while; it stays bounded. The migration's names
		// resolve in the catalogs alone, whatever pool it was given (see migrationSearchPath).
		if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = '10min'; `+migrationSearchPath); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, s.sql); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO telemetry.schema_migrations (name, checksum) VALUES ($1, $2)
			ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum, applied_at = now()`, s.name, s.checksum)
		return err
	})
}

// InstallSQL is the text of sql/install.sql: psql applies the same scripts as Migrate, under
// the same lock, then schedules the pg_cron jobs (sql/jobs.sql).
func InstallSQL() (string, error) {
	all, err := scripts()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(`-- Installs or upgrades the telemetry schema for pg_cron mode: psql -f recorder/sql/install.sql
-- Generated by recorder.InstallSQL from the migrations: do not edit (see sql/jobs.sql).
\set ON_ERROR_STOP on
\set QUIET on
-- The whole install resolves names in the catalogs alone, as Migrate does (migrationSearchPath).
SET search_path = pg_catalog, pg_temp;
`)
	fmt.Fprintf(&b, "SELECT pg_advisory_lock(%d) \\gset lock_\n%s\n", migrationLockKey, sqlBootstrap)
	for _, s := range all {
		file := "../migrations/" + s.name
		check := fmt.Sprintf("name = '%s'", s.name)
		if s.name == collectScript {
			file = collectScript
			check += fmt.Sprintf(" AND checksum = '%s'", s.checksum)
		}
		fmt.Fprintf(&b, `SELECT NOT EXISTS (SELECT FROM telemetry.schema_migrations WHERE %s) AS apply \gset
\if :apply
BEGIN;
\ir %s
INSERT INTO telemetry.schema_migrations (name, checksum) VALUES ('%s', '%s')
    ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum, applied_at = now();
COMMIT;
\endif
`, check, file, s.name, s.checksum)
	}
	fmt.Fprintf(&b, "SELECT pg_advisory_unlock(%d) \\gset unlock_\n\\ir jobs.sql\n", migrationLockKey)
	return b.String(), nil
}
