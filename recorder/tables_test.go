package recorder

import (
	"os"
	"slices"
	"testing"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestThrowawayTableThroughItsDeclaration: a table added as schema/README.md says, its DDL
// (a migration) and one declaration, gets its day partition, each collection's rows and the
// retention of the rest, with nothing else to change.
func TestThrowawayTableThroughItsDeclaration(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		migration, err := os.ReadFile("../schema/testdata/throwaway_samples.sql")
		if err != nil {
			t.Fatal(err)
		}
		e.exec(string(migration))
		// This recorder's declarations only: the package's serve the other tests.
		e.rec.tables = append(slices.Clone(e.rec.tables), collectors.Recorded("throwaway_samples", collectors.TierSample, "",
			func(c *collectors.Collection) []collectors.Collection { return []collectors.Collection{*c} },
			collectors.Col("sessions", "integer", func(c *collectors.Collection) any { return len(c.Sessions) })))
		at := e.record(collectors.TierSample)
		c := e.conn()
		rows := pgtest.Query(t, c, `SELECT (SELECT count(*) FROM telemetry.throwaway_samples t JOIN telemetry.samples s
				ON s.id = t.sample_id AND s.captured_at = t.captured_at WHERE t.captured_at = $1 AND t.sessions > 0) AS rows,
			(SELECT count(*) FROM pg_partition_tree('telemetry.throwaway_samples') WHERE isleaf) AS partitions,
			(SELECT count(*) FROM pg_constraint WHERE contype = 'f'
				AND conrelid IN (SELECT relid FROM pg_partition_tree('telemetry.throwaway_samples') WHERE isleaf)) AS foreign_keys`, at)
		if rows[0]["rows"] != int64(1) || rows[0]["partitions"] != int64(1) || rows[0]["foreign_keys"] != int64(1) {
			t.Fatalf("throwaway table: %v, want its row, today's partition and its key to the samples of that day", rows)
		}
		e.exec(`SELECT telemetry.cleanup('0 seconds')`)
		if left := pgtest.Query(t, c, `SELECT count(*) AS n FROM telemetry.throwaway_samples`); left[0]["n"] != int64(0) {
			t.Errorf("after cleanup('0 seconds'): %v rows left, want none (retention as the rest)", left[0]["n"])
		}
	})
}
