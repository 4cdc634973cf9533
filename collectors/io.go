package collectors

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("io", TierSnapshot, true, "I/O by backend type, object and context from pg_stat_io (PostgreSQL 16+)",
		func(Config) Collector { return ioCollector{} })
}

var (
	ioLabels  = []string{"backend_type", "object", "context", "op"}
	ioOpsDesc = newDesc("io_operations_total", "I/O operations from pg_stat_io, by op (read, write, writeback, extend, hit, eviction, reuse, fsync).", ioLabels...)
	ioSecDesc = newDesc("io_seconds_total", "Time spent in I/O operations from pg_stat_io (track_io_timing).", ioLabels...)
)

// ioOps maps each pg_stat_io operation to its count and time columns (nil where the view has no time).
var ioOps = []struct {
	op    string
	count func(*IOStat) *int64
	time  func(*IOStat) *float64
}{
	{"read", func(s *IOStat) *int64 { return s.Reads }, func(s *IOStat) *float64 { return s.ReadTimeMs }},
	{"write", func(s *IOStat) *int64 { return s.Writes }, func(s *IOStat) *float64 { return s.WriteTimeMs }},
	{"writeback", func(s *IOStat) *int64 { return s.Writebacks }, func(s *IOStat) *float64 { return s.WritebackMs }},
	{"extend", func(s *IOStat) *int64 { return s.Extends }, func(s *IOStat) *float64 { return s.ExtendTimeMs }},
	{"hit", func(s *IOStat) *int64 { return s.Hits }, nil},
	{"eviction", func(s *IOStat) *int64 { return s.Evictions }, nil},
	{"reuse", func(s *IOStat) *int64 { return s.Reuses }, nil},
	{"fsync", func(s *IOStat) *int64 { return s.Fsyncs }, func(s *IOStat) *float64 { return s.FsyncTimeMs }},
}

type ioCollector struct{}

// SQLIO reads pg_stat_io; the columns used are the same on 16, 17 and 18.
const SQLIO = `SELECT backend_type, object, context, reads, read_time, writes, write_time,
	writebacks, writeback_time, extends, extend_time, hits, evictions, reuses, fsyncs, fsync_time
FROM pg_stat_io`

// SQLIOReset is when pg_stat_io last restarted from zero (pg_stat_reset_shared('io'), a
// crash): one time for every row.
const SQLIOReset = `SELECT max(stats_reset) FROM pg_stat_io`

func (ioCollector) Collect(ctx context.Context, tx pgx.Tx, c *Collection) error {
	if c.Server.Major() < 16 {
		return nil
	}
	io, err := queryAll(ctx, tx, SQLIO, func(s *IOStat) []any {
		return []any{&s.BackendType, &s.Object, &s.Context, &s.Reads, &s.ReadTimeMs, &s.Writes, &s.WriteTimeMs,
			&s.Writebacks, &s.WritebackMs, &s.Extends, &s.ExtendTimeMs, &s.Hits, &s.Evictions, &s.Reuses, &s.Fsyncs, &s.FsyncTimeMs}
	})
	if err != nil {
		return err
	}
	if err := tx.QueryRow(ctx, SQLIOReset).Scan(&c.IOStatsReset); err != nil {
		return err
	}
	c.IO = io
	return nil
}

func (ioCollector) Emit(c *Collection, ch chan<- prometheus.Metric) {
	for i := range c.IO {
		s := &c.IO[i]
		for _, o := range ioOps {
			optCounter(ch, ioOpsDesc, o.count(s), 1, s.BackendType, s.Object, s.Context, o.op)
			if o.time != nil {
				optCounter(ch, ioSecDesc, o.time(s), msToSeconds, s.BackendType, s.Object, s.Context, o.op)
			}
		}
	}
}
