package schema

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/diagnosis/patterns"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// An applied schema migration whose text changed stops Migrate and install.sql with an
// error naming it, before anything is applied.
func TestEditedMigrationFailsLoudly(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Versions()[0])
	e := newEnv(t, srv)
	e.exec(`UPDATE telemetry.schema_migrations SET checksum = 'edited' WHERE name = '0002_batch_runs.sql'`)
	err := Migrate(context.Background(), e.pool)
	if err == nil || !strings.Contains(err.Error(), "applied schema migrations were edited since: 0002_batch_runs.sql") {
		t.Fatalf("Migrate after an edit: %v", err)
	}
	abs, _ := filepath.Abs(installSQL)
	out, perr := pgtest.PsqlOutput(e.dsn, "-f", abs)
	if perr == nil || !strings.Contains(out, "0002_batch_runs.sql") {
		t.Fatalf("install.sql after an edit: %v\n%s", perr, out)
	}
}

// A definition whose text changed is applied again; one that did not is left alone.
func TestDefinitionsReappliedWhenChanged(t *testing.T) {
	e := newEnv(t, pgtest.Start(t, pgtest.Versions()[0]))
	c := e.conn()
	// As if diagnose.sql had changed since it was applied, and api.sql had not.
	e.exec(`CREATE OR REPLACE FUNCTION telemetry._ts(p_at timestamptz) RETURNS text LANGUAGE sql AS $$ SELECT 'old' $$;
		CREATE OR REPLACE FUNCTION telemetry._pretty_bytes(bigint) RETURNS text LANGUAGE sql AS $$ SELECT 'kept' $$;
		UPDATE telemetry.schema_migrations SET checksum = 'previous' WHERE name = 'diagnosis/diagnosissql/diagnose.sql'`)
	if err := Migrate(context.Background(), e.pool); err != nil {
		t.Fatal(err)
	}
	rows := pgtest.Query(t, c, `SELECT telemetry._ts('2026-01-02 03:04:05+00') <> 'old' AS reapplied, telemetry._pretty_bytes(1) AS untouched`)
	if rows[0]["reapplied"] != true || rows[0]["untouched"] != "kept" {
		t.Errorf("after Migrate: %v", rows[0])
	}
}

// A definition that changed is applied again with every one after it, by Migrate and by
// install.sql: api.sql drops and creates the type _snapshot_diff (CASCADE), which drops
// diagnose.sql's functions that return it; applied alone, the migration failed on the next
// definition using them (install.sql: left them dropped).
func TestLaterDefinitionsReappliedAfterAChange(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Versions()[0])
	e := newEnv(t, srv)
	abs, _ := filepath.Abs(installSQL)
	for _, install := range []string{"Migrate", "install.sql"} {
		e.exec(`UPDATE telemetry.schema_migrations SET checksum = 'previous' WHERE name = 'recorder/sql/api.sql'`)
		if install == "Migrate" {
			if err := Migrate(context.Background(), e.pool); err != nil {
				t.Fatal(err)
			}
		} else {
			srv.PsqlFile(t, e.dsn, abs)
		}
		rows := pgtest.Query(t, e.conn(), `SELECT to_regprocedure('telemetry._shared_compare(jsonb)') IS NOT NULL AS defined`)
		if rows[0]["defined"] != true {
			t.Errorf("%s: telemetry._shared_compare after api.sql was applied again: %v", install, rows[0])
		}
	}
}

// A database migrated by the scripts before migrations and definitions were split
// (testdata/prelayout, recorded as they recorded themselves) upgrades in place: its data
// stays, and its functions and views end up exactly those of a fresh install.
func TestUpgradeFromPreLayoutSchema(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		old := srv.NewDatabase(t)
		files := []string{"0001_schema.sql", "0002_api.sql", "0003_sql_collection.sql", "0050_batch_runs.sql", "0060_diagnose.sql", "0070_statements.sql", "collect.sql"}
		srv.Exec(t, old, sqlBootstrap)
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join("testdata", "prelayout", f))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			srv.Exec(t, old, "BEGIN;\n"+string(b)+"\n;INSERT INTO telemetry.schema_migrations (name, checksum) VALUES ('"+f+"', '"+hex.EncodeToString(sum[:])+"'); COMMIT;")
		}
		// batch_begin and batch_end take a snapshot each: no recorder listens.
		srv.Exec(t, old, `SELECT telemetry.snapshot(); SELECT telemetry.sample(); SELECT telemetry.batch_begin('nightly')`)

		e := newEnvOn(t, srv, old) // Migrate
		c := e.conn()
		e.exec(`SELECT telemetry.batch_end('nightly'); SELECT telemetry.snapshot()`)
		rows := pgtest.Query(t, c, `SELECT (SELECT count(*) FROM telemetry.snapshots) AS snapshots,
				(SELECT count(*) FROM telemetry.compare((SELECT min(captured_at) FROM telemetry.snapshots), (SELECT max(captured_at) FROM telemetry.snapshots))) AS compared,
				(SELECT count(*) FROM telemetry.batch_runs WHERE status = 'succeeded') AS runs,
				(SELECT string_agg(name, ',' ORDER BY name) FROM telemetry.schema_migrations WHERE name NOT LIKE '%/%') AS migrations`)
		// Every migration the binary holds, read from them: a list written out here lost those
		// of branches merged beside it.
		entries, err := fs.ReadDir(migrationFiles, "migrations")
		if err != nil {
			t.Fatal(err)
		}
		var migrations []string
		for _, m := range entries {
			migrations = append(migrations, m.Name())
		}
		if len(migrations) < 12 || migrations[0] != "0001_recorder_tables.sql" {
			t.Fatalf("the embedded migrations: %v", migrations)
		}
		want := map[string]any{"snapshots": int64(4), "compared": int64(1), "runs": int64(1), "migrations": strings.Join(migrations, ",")}
		for k, v := range want {
			if rows[0][k] != v {
				t.Errorf("after the upgrade: %s = %v, want %v", k, rows[0][k], v)
			}
		}
		fresh := newEnv(t, srv)
		if a, b := schemaDefinitions(t, e), schemaDefinitions(t, fresh); a != b {
			t.Errorf("upgraded and fresh schemas differ:\n%s", diffLines(a, b))
		}
	})
}

// schemaDefinitions is every function, view, table and column of the telemetry schema with
// its definition and privileges, one per line.
func schemaDefinitions(t *testing.T, e *env) string {
	t.Helper()
	var out string
	err := e.conn().QueryRow(context.Background(), `SELECT string_agg(d, E'\n' ORDER BY d) FROM (
		SELECT 'function ' || p.oid::regprocedure || ' ' || coalesce(p.proacl::text, '') || ' ' || pg_get_functiondef(p.oid) AS d
		FROM pg_proc p WHERE p.pronamespace = 'telemetry'::regnamespace
		UNION ALL
		SELECT c.relkind::text || ' ' || c.relname || ' ' || coalesce(pg_get_viewdef(c.oid), '') || ' ' ||
		       (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
		        FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
		FROM pg_class c WHERE c.relnamespace = 'telemetry'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'c') AND NOT c.relispartition
		UNION ALL
		SELECT 'threshold ' || name || ' ' || value || ' ' || unit || ' ' || description FROM telemetry.diagnose_thresholds) x`).Scan(&out)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diffLines lists the lines only in a (-) and only in b (+).
func diffLines(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ia, ib := in(a), in(b)
	var out []string
	for l := range ia {
		if !ib[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range ib {
		if !ia[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// attackerObjects are what a role that may create in public plants before the schema is
// installed: each matches a call or operator of the definitions more exactly than
// pg_catalog's, so that a script run under the default search_path would bind to it.
const attackerObjects = `
	CREATE FUNCTION public.attacker_div(double precision, bigint) RETURNS double precision LANGUAGE sql AS 'SELECT 0::double precision';
	CREATE OPERATOR public./ (LEFTARG = double precision, RIGHTARG = bigint, FUNCTION = public.attacker_div);
	CREATE FUNCTION public.attacker_ndiv(numeric, bigint) RETURNS numeric LANGUAGE sql AS 'SELECT 0::numeric';
	CREATE OPERATOR public./ (LEFTARG = numeric, RIGHTARG = bigint, FUNCTION = public.attacker_ndiv);
	CREATE FUNCTION public.attacker_minus(bigint, bigint) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint';
	CREATE FUNCTION public.unnest(integer[]) RETURNS SETOF integer LANGUAGE sql AS 'SELECT 0';
	CREATE FUNCTION public.round(double precision, integer) RETURNS numeric LANGUAGE sql AS 'SELECT 0::numeric';
	CREATE FUNCTION public.nullif(bigint, integer) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint';
	CREATE FUNCTION public.extract(text, interval) RETURNS numeric LANGUAGE sql AS 'SELECT 0::numeric';
	CREATE FUNCTION public.make_interval(secs double precision) RETURNS interval LANGUAGE sql AS 'SELECT interval ''0''';
	CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT ''2000-01-01''::timestamptz';
	CREATE FUNCTION public.btrim(text) RETURNS text LANGUAGE sql AS 'SELECT ''x''';`

// No view or function of the schema refers to an object in public, though an attacker
// planted look-alikes there before the first Migrate or install.sql (issue 9 hole 2).
func TestDefinitionsBindNoPublicObject(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		for _, install := range []string{"Migrate", "install.sql"} {
			t.Run(install, func(t *testing.T) {
				dsn := srv.NewDatabase(t)
				srv.Exec(t, dsn, attackerObjects)
				if install == "Migrate" {
					// A pool with the server's default search_path ("$user", public):
					// Migrate must not rely on its caller's sessions.
					pool, err := pgxpool.New(context.Background(), dsn)
					if err != nil {
						t.Fatal(err)
					}
					defer pool.Close()
					if err := Migrate(context.Background(), pool); err != nil {
						t.Fatal(err)
					}
				} else {
					srv.PsqlFile(t, dsn, installSQL)
				}
				e := &env{t: t, srv: srv, dsn: dsn}
				c := e.conn()
				// Views record what they reference; function bodies are text.
				for _, r := range pgtest.Query(t, c, `SELECT DISTINCT v.relname AS view, pg_describe_object(d.refclassid, d.refobjid, 0) AS object
						FROM pg_class v JOIN pg_rewrite w ON w.ev_class = v.oid
						JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid
						LEFT JOIN pg_proc p ON d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid
						LEFT JOIN pg_operator o ON d.refclassid = 'pg_operator'::regclass AND o.oid = d.refobjid
						WHERE v.relnamespace = 'telemetry'::regnamespace
						  AND 'public'::regnamespace IN (p.pronamespace, o.oprnamespace)`) {
					t.Errorf("view %s uses %s", r["view"], r["object"])
				}
				rows := pgtest.Query(t, c, `SELECT 'view ' || c.relname AS object, pg_get_viewdef(c.oid) AS def
						FROM pg_class c WHERE c.relnamespace = 'telemetry'::regnamespace AND c.relkind = 'v'
						UNION ALL
						SELECT 'function ' || p.oid::regprocedure, pg_get_functiondef(p.oid)
						FROM pg_proc p WHERE p.pronamespace = 'telemetry'::regnamespace`)
				if len(rows) < 30 {
					t.Fatalf("only %d views and functions", len(rows))
				}
				for _, r := range rows {
					if strings.Contains(r["def"].(string), "public.") {
						t.Errorf("%s refers to public:\n%s", r["object"], r["def"])
					}
				}
				// What the views compute is the real arithmetic.
				e.exec(`SELECT telemetry.snapshot(); SELECT pg_sleep(0.01); SELECT telemetry.snapshot()`)
				if rows := pgtest.Query(t, c, `SELECT count(*) AS n, count(*) FILTER (WHERE interval_seconds > 0) AS positive FROM telemetry.deltas`); rows[0]["n"] == int64(0) || rows[0]["n"] != rows[0]["positive"] {
					t.Errorf("deltas: %v", rows)
				}
			})
		}
	})
}

// TestOneDefinitionOfActiveSession: every SQL definition that tells active sessions from idle
// ones spells the rule as collectors.SQLActiveState does (idle in transaction (aborted) was
// counted active by one and idle by another).
func TestOneDefinitionOfActiveSession(t *testing.T) {
	all, err := scripts()
	if err != nil {
		t.Fatal(err)
	}
	rule := regexp.MustCompile(`(?i)\bstate\s*(NOT\s+IN\s*\([^)]*'idle[^)]*\)|IN\s*\([^)]*'idle[^)]*\)|(NOT\s+)?LIKE\s*'idle[^']*'|(<>|!=|=)\s*'idle[^']*')`)
	want := strings.TrimPrefix(collectors.SQLActiveState("state"), "state")
	found := 0
	for _, s := range all {
		for _, m := range rule.FindAllString(s.sql, -1) {
			found++
			if !strings.HasSuffix(m, want) {
				t.Errorf("%s: %q, want the one rule %q", s.name, m, want)
			}
		}
	}
	if found == 0 {
		t.Error("no definition tells active sessions apart: the pattern no longer finds them")
	}
}

// TestThrowawayPatternThroughItsFolder: a pattern added as docs/diagnosis.md ("Adding a
// pattern") says, one folder with its pattern.sql and measures.sql
// (diagnosis/patterns/testdata/throwaway), is one of diagnose's findings, ordered with the
// others, and its measures (one of its own, one summing the wait events it owns) are compared
// by diagnose_run with the run's baseline; with the folder gone, Migrate takes it out again,
// its functions too.
func TestThrowawayPatternThroughItsFolder(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		ctx := context.Background()
		from := e.sample().Add(-time.Second)
		mid := e.sample()
		to := e.sample().Add(time.Second)
		// A run before the middle sample, the baseline of the one from it.
		pgtest.MustExec(t, e.conn(), `INSERT INTO telemetry.batch_runs (batch, started_at, ended_at, status, source)
			VALUES ('throwaway', $1, $2, 'succeeded', 'marker'), ('throwaway', $2, $3, 'succeeded', 'marker')`, from, mid, to)

		withThrowaway := fstest.MapFS{}
		if err := fs.WalkDir(patterns.Files, ".", func(name string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(patterns.Files, name)
			withThrowaway[name] = &fstest.MapFile{Data: b}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile("../diagnosis/patterns/testdata/throwaway/pattern.sql")
		if err != nil {
			t.Fatal(err)
		}
		withThrowaway["throwaway/pattern.sql"] = &fstest.MapFile{Data: b}
		if b, err = os.ReadFile("../diagnosis/patterns/testdata/throwaway/measures.sql"); err != nil {
			t.Fatal(err)
		}
		withThrowaway["throwaway/measures.sql"] = &fstest.MapFile{Data: b}
		sources, err := definitionSourcesWith(withThrowaway)
		if err != nil {
			t.Fatal(err)
		}
		all, err := scriptsFrom(sources)
		if err != nil {
			t.Fatal(err)
		}
		if err := migrate(ctx, e.pool, all); err != nil {
			t.Fatal(err)
		}
		c := e.conn()
		findings := `SELECT string_agg(pattern || ':' || severity, ',' ORDER BY ord) AS patterns,
				(SELECT evidence->>'samples' FROM telemetry.diagnose($1, $2) WHERE pattern = 'throwaway') AS samples,
				to_regprocedure('telemetry._pattern_throwaway(timestamptz, timestamptz, timestamptz, text, jsonb)') IS NOT NULL AS defined
			FROM telemetry.diagnose($1, $2) WITH ORDINALITY d(pattern, severity, summary, evidence, recommendation, ord)`
		got := pgtest.Query(t, c, findings, from, to)[0]
		// Three samples and no snapshot at the start: insufficient_data (score 100) first.
		if got["patterns"] != "insufficient_data:warning,throwaway:warning,window:info" || got["samples"] != "3" || got["defined"] != true {
			t.Errorf("with the throwaway folder: %v, want its warning among the findings", got)
		}
		measures := `SELECT string_agg(d.measure || ':' || d.pattern || ':' || d.value || ':' || d.baseline_median || ':' || d.baseline_runs, ','
				ORDER BY d.measure) FILTER (WHERE d.pattern = 'throwaway') AS throwaway,
				to_regprocedure('telemetry._measures_throwaway(timestamptz, timestamptz, timestamptz, text, jsonb)') IS NOT NULL
				OR to_regprocedure('telemetry._waits_throwaway()') IS NOT NULL AS defined
			FROM telemetry.diagnose_run((SELECT max(run_id) FROM telemetry.batch_runs)) d`
		// Its own measure (the run's 2 samples, the middle one and the last, against the 2 of
		// the one before) and its waits summed (none of type Throwaway: 0 on both sides).
		if got := pgtest.Query(t, c, measures)[0]; got["throwaway"] != "throwaway_samples:throwaway:2:2:1,throwaway_wait_seconds:throwaway:0.00:0:1" || got["defined"] != true {
			t.Errorf("diagnose_run with the throwaway folder: %v, want its two measures against the baseline run", got)
		}
		if err := Migrate(ctx, e.pool); err != nil {
			t.Fatal(err)
		}
		got = pgtest.Query(t, c, findings, from, to)[0]
		if got["patterns"] != "insufficient_data:warning,window:info" || got["defined"] != false {
			t.Errorf("with the folder removed: %v, want no throwaway finding and no function", got)
		}
		if got := pgtest.Query(t, c, measures)[0]; got["throwaway"] != nil || got["defined"] != false {
			t.Errorf("diagnose_run with the folder removed: %v, want no throwaway measure and no function", got)
		}
	})
}
