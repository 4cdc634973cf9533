// Package schema owns the telemetry schema: the numbered migrations (migrations/), the
// application of every owner's repeatable definitions (recorder/sql, batch/batchsql,
// diagnosis/diagnosissql, diagnosis/patterns) and the generated SQL (collect.sql,
// findings.sql, install.sql). The recorder only writes collections into it.
package schema

//go:generate go run ./internal/gensql

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/batch/batchsql"
	"github.com/pg-batch-exporter/pg-batch-exporter/diagnosis/diagnosissql"
	runcauses "github.com/pg-batch-exporter/pg-batch-exporter/diagnosis/findings"
	"github.com/pg-batch-exporter/pg-batch-exporter/diagnosis/patterns"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
	recordersql "github.com/pg-batch-exporter/pg-batch-exporter/recorder/sql"
)

// The telemetry schema is built from two kinds of script (README.md in this folder):
//   - schema migrations, migrations/NNNN_name.sql: tables, indexes, data changes. Applied
//     once each, in number order; an applied one whose text changed stops Migrate.
//   - definitions: functions and views, beside their owner (sql/ here, batch/batchsql,
//     diagnosis/diagnosissql, one folder per pattern in diagnosis/patterns, one per run cause in
//     diagnosis/findings), applied after
//     the migrations in the order definitionSources declares, and again whenever their text
//     changes.
// Every script runs in a transaction of its own with search_path = pg_catalog, pg_temp, so
// that nothing in it binds to an object another role could create.

//go:embed migrations/*.sql
var migrationFiles embed.FS

// definitionSource is one owner's definitions: dir is their folder from the repository's
// root (install.sql includes them from there), order the files in the order to apply.
// generated are the texts of the files generated from code (go generate writes them to dir
// too, for install.sql); the others are read from files.
type definitionSource struct {
	dir       string
	files     fs.FS
	order     []string
	generated map[string]string
}

func definitionSources() ([]definitionSource, error) {
	return definitionSourcesWith(patterns.Files)
}

// definitionSourcesWith are the definitions with the diagnosis patterns of patternFiles (a
// test adds one).
func definitionSourcesWith(patternFiles fs.FS) ([]definitionSource, error) {
	// Each pattern folder's rule and measures, then the functions that combine them: they call
	// every one.
	registered, err := patterns.Read(patternFiles)
	if err != nil {
		return nil, err
	}
	var patternOrder []string
	for _, p := range registered {
		patternOrder = append(patternOrder, p.Files()...)
	}
	patternOrder = append(patternOrder, patterns.CombineFile)
	// Each run cause's rule, then the function that combines them.
	causes, err := patterns.FolderNames(runcauses.Files, runcauses.RuleFile)
	if err != nil {
		return nil, err
	}
	var causeOrder []string
	for _, n := range causes {
		causeOrder = append(causeOrder, path.Join(n, runcauses.RuleFile))
	}
	causeOrder = append(causeOrder, runcauses.CombineFile)
	return []definitionSource{
		{dir: "recorder/sql", files: recordersql.Files, order: recordersql.Order,
			generated: map[string]string{recordersql.CollectFile: CollectSQL()}},
		{dir: "diagnosis/diagnosissql", files: diagnosissql.Files, order: diagnosissql.ThresholdsOrder},
		{dir: "batch/batchsql", files: batchsql.Files, order: batchsql.Order},
		{dir: "diagnosis/diagnosissql", files: diagnosissql.Files, order: diagnosissql.Order},
		{dir: "diagnosis/patterns", files: patternFiles, order: patternOrder,
			generated: map[string]string{patterns.CombineFile: patterns.Combine(registered)}},
		{dir: "diagnosis/findings", files: runcauses.Files, order: causeOrder,
			generated: map[string]string{runcauses.CombineFile: runcauses.Combine(causes)}},
	}, nil
}

// GeneratedFiles are the definition files generated from code, by their path from the
// repository's root, with their text: go generate writes them (schema/internal/gensql), so
// that install.sql can include them; TestGeneratedSQLInSync checks them.
func GeneratedFiles() (map[string]string, error) {
	sources, err := definitionSources()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, src := range sources {
		for f, text := range src.generated {
			out[path.Join(src.dir, f)] = text
		}
	}
	return out, nil
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// migrationLockKey is the advisory lock that serialises migrations (Go and install.sql).
const migrationLockKey = 7366_4321_0003

// safeSearchPath is every script's search_path: built-in objects and then temporary ones
// (which are never searched for functions and operators), so no name resolves to an object
// in public or another schema an attacker may write to.
const safeSearchPath = "pg_catalog, pg_temp"

// sqlBootstrap creates what the scripts are recorded in, in a schema it can trust (one that
// another role prepared could run that role's code: a trigger on schema_migrations, say).
// CREATE SCHEMA IF NOT EXISTS would still ask for CREATE on the database, which a role given
// the schema lacks.
var sqlBootstrap = `DO $$
DECLARE
    v_owner name;
BEGIN
    IF to_regnamespace('telemetry') IS NULL THEN
        CREATE SCHEMA telemetry;
    END IF;
    SELECT ` + postgres.SQLUntrustedTelemetryOwner + ` INTO v_owner
    FROM pg_catalog.pg_namespace n WHERE n.nspname = 'telemetry';
    IF v_owner IS NOT NULL THEN
        RAISE EXCEPTION 'the telemetry schema, or an object in it, belongs to role %, which % cannot trust: nothing installed', v_owner, current_user
            USING HINT = 'Drop it (DROP SCHEMA telemetry CASCADE) if it is not yours, or install as its owner.';
    END IF;
END $$;
CREATE TABLE IF NOT EXISTS telemetry.schema_migrations (
    name text PRIMARY KEY,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);`

// script is one migration or definition. name is what schema_migrations records: the file
// name of a migration, the path from the repository's root of a definition.
type script struct {
	name, file, sql, checksum string
	repeatable                bool
}

func checksum(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:])
}

// scripts are the migrations in number order, then the definitions in declared order.
func scripts() ([]script, error) {
	sources, err := definitionSources()
	if err != nil {
		return nil, err
	}
	return scriptsFrom(sources)
}

// scriptsFrom are the migrations, then the definitions of these sources.
func scriptsFrom(sources []definitionSource) ([]script, error) {
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
		out = append(out, script{name: e.Name(), file: path.Join("schema/migrations", e.Name()), sql: string(b), checksum: checksum(string(b))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	defs, err := definitions(sources)
	if err != nil {
		return nil, err
	}
	return append(out, defs...), nil
}

// definitions reads the sources' files in order and checks that none is left out. A folder
// may be two sources (diagnosis/diagnosissql: its thresholds before batch runs'
// definitions, the rest after): each file is listed once among them.
func definitions(sources []definitionSource) ([]script, error) {
	var out []script
	listedIn := map[string]map[string]bool{}
	for _, src := range sources {
		if listedIn[src.dir] == nil {
			listedIn[src.dir] = map[string]bool{}
		}
		listed := listedIn[src.dir]
		for _, f := range src.order {
			if listed[f] {
				return nil, fmt.Errorf("%s/%s is listed twice", src.dir, f)
			}
			listed[f] = true
			text, generated := src.generated[f]
			if !generated {
				b, err := fs.ReadFile(src.files, f)
				if err != nil {
					return nil, err
				}
				text = string(b)
			}
			s := script{name: path.Join(src.dir, f), file: path.Join(src.dir, f), sql: text, checksum: checksum(text), repeatable: true}
			out = append(out, s)
		}
	}
	for _, src := range sources {
		listed := listedIn[src.dir]
		files, err := fs.Glob(src.files, "*.sql")
		if err != nil {
			return nil, err
		}
		inFolders, err := fs.Glob(src.files, "*/*.sql")
		if err != nil {
			return nil, err
		}
		for _, f := range append(files, inFolders...) {
			if !listed[f] && !(src.dir == "recorder/sql" && !isDefinitionFile(f)) {
				return nil, fmt.Errorf("%s/%s is not in the declared order of its definitions", src.dir, f)
			}
		}
	}
	return out, nil
}

// isDefinitionFile tells the recorder's definitions from the psql scripts beside them.
func isDefinitionFile(name string) bool {
	return !slices.Contains(recordersql.PsqlScripts, name)
}

// driftCheckSQL fails when an applied migration's text is not the file's any more: a
// database migrated before the edit would silently keep the old text.
func driftCheckSQL(all []script) string {
	var values []string
	for _, s := range all {
		if !s.repeatable {
			values = append(values, fmt.Sprintf("('%s', '%s')", s.name, s.checksum))
		}
	}
	return fmt.Sprintf(`DO $drift$
DECLARE
    v_changed text;
BEGIN
    SELECT string_agg(m.name, ', ' ORDER BY m.name) INTO v_changed
    FROM telemetry.schema_migrations m JOIN (VALUES %s) f (name, checksum) ON f.name = m.name
    WHERE m.checksum <> f.checksum;
    IF v_changed IS NOT NULL THEN
        RAISE EXCEPTION 'applied schema migrations were edited since: %%', v_changed
            USING HINT = 'Migrations are append-only: restore the applied text and put the change in a new migration.';
    END IF;
END
$drift$;`, strings.Join(values, ",\n        "))
}

// Migrate creates or upgrades the telemetry schema. Running it again is a no-op; it never
// drops data. A role that is not the schema's owner can run it once the schema is current.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	all, err := scripts()
	if err != nil {
		return err
	}
	return migrate(ctx, pool, all)
}

// migrate applies the scripts not applied yet in their current text.
func migrate(ctx context.Context, pool *pgxpool.Pool, all []script) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLockKey)); err != nil {
		return fmt.Errorf("waiting for the migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrationLockKey))

	// A schema someone else prepared is refused, not adopted: its objects (a trigger on
	// schema_migrations, a view) would run their owner's code with the migrating role's rights.
	if _, err := postgres.TelemetrySchema(ctx, conn); err != nil {
		return err
	}
	// CREATE ... IF NOT EXISTS still needs the privilege to create: ask first (the catalog,
	// which raises nothing where the schema cannot be used).
	var bootstrapped bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'telemetry' AND c.relname = 'schema_migrations')`).Scan(&bootstrapped); err != nil {
		return err
	}
	if !bootstrapped {
		if err := inSafeTransaction(ctx, conn.Conn(), sqlBootstrap); err != nil {
			return fmt.Errorf("creating schema telemetry: %w", err)
		}
	}
	if err := inSafeTransaction(ctx, conn.Conn(), driftCheckSQL(all)); err != nil {
		return err
	}
	applied := map[string]string{}
	rows, _ := conn.Query(ctx, `SELECT name, checksum FROM telemetry.schema_migrations`)
	var name, sum string
	if _, err := pgx.ForEachRow(rows, []any{&name, &sum}, func() error { applied[name] = sum; return nil }); err != nil {
		return err
	}
	// A definition is applied again when it or one before it changed: a later one may depend on
	// it, and what it drops and creates again (DROP TYPE ... CASCADE) drops what uses it.
	var pending []script
	redefining := false
	for _, s := range all {
		changed := applied[s.name] != s.checksum
		redefining = redefining || s.repeatable && changed
		if changed || s.repeatable && redefining {
			pending = append(pending, s)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	// One transaction for them all: a running exporter, a tracker or a reader sees the schema
	// before or after, never a table whose functions are not defined yet.
	return pgx.BeginFunc(ctx, conn.Conn(), func(tx pgx.Tx) error {
		if err := safeSession(ctx, tx); err != nil {
			return err
		}
		for _, s := range pending {
			if _, err := tx.Exec(ctx, s.sql); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if _, err := tx.Exec(ctx, recordSQL, s.name, s.checksum); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
		}
		return nil
	})
}

// recordSQL notes a script as applied.
const recordSQL = `INSERT INTO telemetry.schema_migrations (name, checksum) VALUES ($1, $2)
    ON CONFLICT (name) DO UPDATE SET checksum = excluded.checksum, applied_at = now()`

// inSafeTransaction runs sql in a transaction with the safe search_path.
func inSafeTransaction(ctx context.Context, conn *pgx.Conn, sql string) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := safeSession(ctx, tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sql)
		return err
	})
}

// safeSession sets the migration transaction's search_path and timeout: DDL on a large table
// may take a while; it stays bounded.
func safeSession(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SET LOCAL statement_timeout = '10min'; SET LOCAL search_path = `+safeSearchPath)
	return err
}

// InstallFile is pg_cron mode's install script, from the repository's root: the users' entry
// point (psql -f), beside the recorder's psql scripts it includes.
const InstallFile = "recorder/sql/install.sql"

// InstallSQL is the text of InstallFile: psql applies the same scripts as Migrate, under
// the same lock and search_path, then schedules the pg_cron jobs (sql/jobs.sql).
func InstallSQL() (string, error) {
	all, err := scripts()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(`-- Installs or upgrades the telemetry schema for pg_cron mode: psql -f recorder/sql/install.sql
-- Generated by schema.InstallSQL from the migrations and definitions (go generate ./...):
-- do not edit (see sql/jobs.sql).
\set ON_ERROR_STOP on
\set QUIET on
-- The whole install resolves names in the catalogs alone, as Migrate does (migrationSearchPath).
SET search_path = pg_catalog, pg_temp;
`)
	fmt.Fprintf(&b, "SET search_path = %s;\nSELECT pg_advisory_lock(%d) \\gset lock_\n%s\n%s\n", safeSearchPath, migrationLockKey, sqlBootstrap, driftCheckSQL(all))
	// One transaction for them all, as Migrate: a pg_cron job sees the schema before or after,
	// never a migration's table without the functions that write it. As Migrate, a definition
	// is applied again when it or one before it changed (redefining).
	b.WriteString("BEGIN;\n\\set redefining false\n")
	for _, s := range all {
		include, err := relativeTo(path.Dir(InstallFile), s.file)
		if err != nil {
			return "", err
		}
		redefining, redefined := "", ""
		if s.repeatable {
			redefining, redefined = ":'redefining'::boolean OR ", "\\set redefining true\n"
		}
		fmt.Fprintf(&b, `SELECT %sNOT EXISTS (SELECT FROM telemetry.schema_migrations WHERE name = '%s' AND checksum = '%s') AS apply \gset
\if :apply
\ir %s
%s;
%s\endif
`, redefining, s.name, s.checksum, include, strings.NewReplacer("$1", "'"+s.name+"'", "$2", "'"+s.checksum+"'").Replace(recordSQL), redefined)
	}
	fmt.Fprintf(&b, "COMMIT;\nSELECT pg_advisory_unlock(%d) \\gset unlock_\n\\ir jobs.sql\n", migrationLockKey)
	return b.String(), nil
}

// relativeTo is file's path from dir, both from the repository's root.
func relativeTo(dir, file string) (string, error) {
	rel, err := filepath.Rel(dir, file)
	return filepath.ToSlash(rel), err
}
