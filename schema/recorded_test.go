package schema

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// notDeclared are the tables filled per snapshot that are not declared in
// collectors.RecordedTables: the recorder stores pg_stat_statements by deltas
// (recorder/rows.go's statementDeltas), pg_cron mode in _snapshot_statements; the plans
// auto_explain logged come from the server's log, read by the Go recorder only (planRows:
// pg_cron mode records no plans, docs/plans.md).
var notDeclared = []string{"statement_snapshots", "statement_info_snapshots", "plan_executions"}

// TestRecordedTablesAsCreated: each table declared in collectors.RecordedTables has, as the
// migrations create it, its parent's key, the declared columns with their declared types,
// server and captured_at, and no other column; every table filled per collection is declared.
func TestRecordedTablesAsCreated(t *testing.T) {
	e := newEnv(t, pgtest.Start(t, pgtest.Versions()[0]))
	c := e.conn()
	declared := map[string]bool{}
	for _, table := range collectors.RecordedTables {
		declared[table.Name] = true
		parentKey := map[collectors.Tier]string{collectors.TierSample: "sample_id", collectors.TierSnapshot: "snapshot_id"}[table.Tier]
		want := []string{parentKey + " integer"}
		for _, col := range table.Columns {
			var typ *string
			if err := c.QueryRow(t.Context(), `SELECT format_type(to_regtype($1), NULL)`, col.Type).Scan(&typ); err != nil || typ == nil {
				t.Fatalf("%s.%s: type %q: %v", table.Name, col.Name, col.Type, err)
			}
			want = append(want, col.Name+" "+*typ)
		}
		want = append(want, "server text", "captured_at timestamp with time zone")
		if exists := pgtest.Query(t, c, `SELECT to_regclass('telemetry.' || $1) IS NOT NULL AS e`, table.Name); exists[0]["e"] != true {
			t.Errorf("telemetry.%s is declared but no migration creates it: a new one, with its keys and NOT NULLs, from\n%s",
				table.Name, createTable(table, parentKey))
			continue
		}
		var got []string
		for _, r := range pgtest.Query(t, c, `SELECT a.attname || ' ' || format_type(a.atttypid, NULL) AS col
				FROM pg_attribute a WHERE a.attrelid = to_regclass('telemetry.' || $1) AND a.attnum > 0 AND NOT a.attisdropped`, table.Name) {
			got = append(got, r["col"].(string))
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("telemetry.%s as the migrations create it:\n  %s\nas declared:\n  %s", table.Name, strings.Join(got, ", "), strings.Join(want, ", "))
		}
	}
	for _, r := range pgtest.Query(t, c, `SELECT DISTINCT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
			WHERE c.relnamespace = 'telemetry'::regnamespace AND c.relkind = 'p' AND a.attname IN ('sample_id', 'snapshot_id')`) {
		if name := r["relname"].(string); !declared[name] && !slices.Contains(notDeclared, name) {
			t.Errorf("telemetry.%s is filled per collection but not declared in collectors.RecordedTables", name)
		}
	}
}

// createTable is a declared table's CREATE TABLE, for its migration to start from.
func createTable(table collectors.RecordedTable, parentKey string) string {
	lines := []string{"    " + parentKey + " integer"}
	for _, col := range table.Columns {
		lines = append(lines, "    "+col.Name+" "+col.Type)
	}
	lines = append(lines, "    server text NOT NULL", "    captured_at timestamptz NOT NULL")
	return "CREATE TABLE IF NOT EXISTS telemetry." + table.Name + " (\n" + strings.Join(lines, ",\n") + "\n) PARTITION BY RANGE (captured_at);"
}

// TestThrowawayTableInPgCronMode: a table declared as schema/README.md says, with where pg_cron
// mode reads it (From), gets its rows from telemetry.sample() through the generated
// _record_samples, with nothing else to change (recorder's TestThrowawayTableThroughItsDeclaration
// is the same table in Go mode).
func TestThrowawayTableInPgCronMode(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		migration, err := os.ReadFile("testdata/throwaway_samples.sql")
		if err != nil {
			t.Fatal(err)
		}
		e.exec(string(migration))
		throwaway := collectors.Recorded("throwaway_samples", collectors.TierSample,
			"(SELECT sum(count)::integer AS sessions FROM telemetry._collect_session_groups())",
			func(c *collectors.Collection) []collectors.Collection { return []collectors.Collection{*c} },
			collectors.Col("sessions", "integer", func(c *collectors.Collection) any { return len(c.Sessions) }))
		var b strings.Builder
		writeRecordFuncs(&b, append(slices.Clone(collectors.RecordedTables), throwaway))
		e.exec(b.String())
		at := e.sample()
		rows := pgtest.Query(t, e.conn(), `SELECT (SELECT count(*) FROM telemetry.throwaway_samples t JOIN telemetry.samples s
				ON s.id = t.sample_id AND s.captured_at = t.captured_at WHERE t.captured_at = $1 AND t.sessions > 0) AS rows,
			(SELECT count(*) FROM telemetry.wait_samples WHERE captured_at = $1) AS wait_rows`, at)
		if rows[0]["rows"] != int64(1) || rows[0]["wait_rows"] == int64(0) {
			t.Fatalf("throwaway table in pg_cron mode: %v, want its row beside the declared tables' rows", rows)
		}
	})
}
