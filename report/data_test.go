package report

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestSeriesAcrossAStatisticsReset: the charts' growth lines add what a counter counted
// after a reset, even when it grew back past its old value before the next snapshot (WAL,
// with wal_stats_reset changed) or went backwards (temp bytes, with no reset time recorded).
func TestSeriesAcrossAStatisticsReset(t *testing.T) {
	for _, v := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", v), func(t *testing.T) {
			t.Parallel()
			dsn := pgtest.Start(t, v).NewDatabase(t)
			ctx := context.Background()
			pool, err := pgxpool.New(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			if err := schema.Migrate(ctx, pool); err != nil {
				t.Fatal(err)
			}
			start := time.Now().Add(-time.Hour).Truncate(time.Minute)
			conn := pgtest.Connect(t, dsn, "")
			pgtest.MustExec(t, conn, `SELECT telemetry._ensure_partitions($1)`, start)
			pgtest.MustExec(t, conn, `SELECT telemetry._note_server('x', 'x', 17, $1)`, start)
			pgtest.MustExec(t, conn, `INSERT INTO telemetry.snapshots (captured_at, pg_version, server, wal_bytes, temp_bytes, wal_stats_reset)
				VALUES ($1::timestamptz, 17, 'x', 1000, 700, $1 - interval '1 day'),
				       ($1 + interval '1 minute', 17, 'x', 5000, 100, $1 + interval '30 seconds'),
				       ($1 + interval '2 minutes', 17, 'x', 6000, 150, $1 + interval '30 seconds')`, start)
			server := "x"
			s, err := loadSeries(ctx, pool, window{start: start, end: start.Add(2 * time.Minute), server: &server})
			if err != nil {
				t.Fatal(err)
			}
			// WAL: 0, then 5000 counted since the reset, then 1000 more; temp: 0, 100, 50 more.
			if len(s.WAL) != 3 || s.WAL[1].V != 5000 || s.WAL[2].V != 6000 {
				t.Errorf("WAL growth %v, want 0, 5000, 6000", s.WAL)
			}
			if len(s.TempBytes) != 3 || s.TempBytes[1].V != 100 || s.TempBytes[2].V != 150 {
				t.Errorf("temp bytes growth %v, want 0, 100, 150", s.TempBytes)
			}
		})
	}
}
