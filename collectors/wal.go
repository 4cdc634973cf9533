package collectors

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("wal", TierSnapshot, true, "WAL generation from pg_stat_wal", func(Config) Collector { return walCollector{} })
}

var (
	walRecordsDesc     = newDesc("wal_records_total", "WAL records generated.")
	walFPIDesc         = newDesc("wal_fpi_total", "WAL full page images generated.")
	walBytesDesc       = newDesc("wal_bytes_total", "WAL generated, in bytes.")
	walBuffersFullDesc = newDesc("wal_buffers_full_total", "Times WAL was written because the WAL buffers were full.")
	walWriteDesc       = newDesc("wal_write_seconds_total", "Time spent writing WAL to disk (track_wal_io_timing; PostgreSQL 15-17).")
	walSyncDesc        = newDesc("wal_sync_seconds_total", "Time spent syncing WAL to disk (track_wal_io_timing; PostgreSQL 15-17).")
)

type walCollector struct{}

// SQLWAL reads pg_stat_wal; 18 moved the write and sync timings to pg_stat_io.
func SQLWAL(s Server) string {
	timings := "wal_write_time, wal_sync_time"
	if s.Major() >= 18 {
		timings = "NULL::float8, NULL::float8"
	}
	return `SELECT wal_records, wal_fpi, wal_bytes::bigint, wal_buffers_full, ` + timings + `, stats_reset FROM pg_stat_wal`
}

func (walCollector) Collect(ctx context.Context, tx pgx.Tx, c *Collection) error {
	var w WAL
	err := tx.QueryRow(ctx, SQLWAL(c.Server)).Scan(&w.Records, &w.FPI, &w.Bytes, &w.BuffersFull, &w.WriteTimeMs, &w.SyncTimeMs, &w.StatsReset)
	if err != nil {
		return err
	}
	c.WAL = &w
	return nil
}

func (walCollector) Emit(c *Collection, ch chan<- prometheus.Metric) {
	w := c.WAL
	if w == nil {
		return
	}
	counter(ch, walRecordsDesc, float64(w.Records))
	counter(ch, walFPIDesc, float64(w.FPI))
	counter(ch, walBytesDesc, float64(w.Bytes))
	counter(ch, walBuffersFullDesc, float64(w.BuffersFull))
	optCounter(ch, walWriteDesc, w.WriteTimeMs, msToSeconds)
	optCounter(ch, walSyncDesc, w.SyncTimeMs, msToSeconds)
}
