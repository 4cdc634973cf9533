package collectors

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("bgwriter", TierSnapshot, true, "Background writer and backend buffer writes from pg_stat_bgwriter",
		func(Config) Collector { return bgwriterCollector{} })
}

var (
	bgwCleanDesc      = newDesc("bgwriter_buffers_clean_total", "Buffers written by the background writer.")
	bgwMaxwrittenDesc = newDesc("bgwriter_maxwritten_clean_total", "Times the background writer stopped a cleaning scan because it had written too many buffers.")
	bgwAllocDesc      = newDesc("bgwriter_buffers_alloc_total", "Buffers allocated.")
	backendWritesDesc = newDesc("backend_buffers_written_total",
		"Buffers written directly by client backends: buffers_backend on 15/16, pg_stat_io client backend writes on 17+.")
	backendFsyncDesc = newDesc("backend_buffers_fsync_total", "Times a backend had to execute its own fsync (PostgreSQL 15/16).")
)

type bgwriterCollector struct{}

// SQLBGWriter reads pg_stat_bgwriter; 17 moved the backend columns out of it.
func SQLBGWriter(s Server) string {
	backend := "buffers_backend, buffers_backend_fsync"
	if s.Major() >= 17 {
		backend = "NULL::bigint, NULL::bigint"
	}
	return `SELECT buffers_clean, maxwritten_clean, buffers_alloc, ` + backend + `, stats_reset FROM pg_stat_bgwriter`
}

// SQLClientBackendWrites reads on 17+ what buffers_backend was: the shared buffers client
// backends wrote themselves, pg_stat_io's relation rows (18 counts the WAL's writes there too,
// object wal; temp relations are local buffers, which buffers_backend never counted). The
// bgwriter collector reads it itself, so the metric does not depend on the io collector being on.
const SQLClientBackendWrites = `SELECT sum(writes)::bigint FROM pg_stat_io WHERE backend_type = 'client backend' AND object = 'relation'`

func (bgwriterCollector) Collect(ctx context.Context, tx pgx.Tx, c *Collection) error {
	var b BGWriter
	if err := tx.QueryRow(ctx, SQLBGWriter(c.Server)).Scan(&b.BuffersClean, &b.MaxwrittenClean, &b.BuffersAlloc, &b.BuffersBackend, &b.BuffersBackendFsync, &b.StatsReset); err != nil {
		return err
	}
	if c.Server.Major() >= 17 {
		if err := tx.QueryRow(ctx, SQLClientBackendWrites).Scan(&b.ClientBackendWrites); err != nil {
			return err
		}
	}
	c.BGWriter = &b
	return nil
}

func (bgwriterCollector) Emit(c *Collection, ch chan<- prometheus.Metric) {
	b := c.BGWriter
	if b == nil {
		return
	}
	counter(ch, bgwCleanDesc, float64(b.BuffersClean))
	counter(ch, bgwMaxwrittenDesc, float64(b.MaxwrittenClean))
	counter(ch, bgwAllocDesc, float64(b.BuffersAlloc))
	optCounter(ch, backendFsyncDesc, b.BuffersBackendFsync, 1)
	if w := c.BackendBuffersWritten(); w != nil {
		counter(ch, backendWritesDesc, float64(*w))
	}
}

// BackendBuffersWritten is the buffers client backends wrote themselves, from wherever
// this server version keeps the count; nil when it is not known.
func (c *Collection) BackendBuffersWritten() *int64 {
	if c.BGWriter == nil {
		return nil
	}
	if c.BGWriter.BuffersBackend != nil {
		return c.BGWriter.BuffersBackend
	}
	return c.BGWriter.ClientBackendWrites
}
