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
	walWriteDesc       = newDesc("wal_write_seconds_total", "Time spent writing WAL to disk (track_wal_io_timing; pg_stat_wal, from 18 pg_stat_io's WAL rows).")
	walSyncDesc        = newDesc("wal_sync_seconds_total", "Time spent syncing WAL to disk (track_wal_io_timing; pg_stat_wal, from 18 pg_stat_io's WAL rows).")
)

type walCollector struct{}

// SQLWAL reads pg_stat_wal; 18 moved the write and sync timings to pg_stat_io, where they are
// read back: the WAL's rows of every backend type, in its normal context (init is the writing
// of new segments, which wal_write_time never counted).
func SQLWAL(s Server) string {
	if s.Major() >= 18 {
		return `SELECT w.wal_records, w.wal_fpi, w.wal_bytes::bigint, w.wal_buffers_full, io.write_time, io.fsync_time, w.stats_reset
FROM pg_stat_wal w,
     (SELECT sum(write_time) AS write_time, sum(fsync_time) AS fsync_time FROM pg_stat_io WHERE object = 'wal' AND context = 'normal') io`
	}
	return `SELECT wal_records, wal_fpi, wal_bytes::bigint, wal_buffers_full, wal_write_time, wal_sync_time, stats_reset FROM pg_stat_wal`
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
