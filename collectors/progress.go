package collectors

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("progress", TierSample, true, "Running vacuum, analyze, copy, create index and cluster operations from pg_stat_progress_*",
		func(Config) Collector { return progressCollector{} })
}

var progressOpsDesc = newDesc("progress_operations", "Operations running at the last sample, by command.", "command")

// ProgressCommands are the commands whose progress PostgreSQL reports.
var ProgressCommands = []string{"vacuum", "analyze", "copy", "create_index", "cluster"}

// SQLProgress reads every pg_stat_progress_* view in one statement. Columns that differ by
// version (17 renamed vacuum's dead-tuple counters) are read through to_jsonb(), so the same
// statement runs on 15 to 18; the rest of each row is kept in details.
const SQLProgress = `WITH p(progress_type, pid, datid, datname, relid, phase, blocks_total, blocks_done,
	tuples_total, tuples_done, bytes_total, bytes_done, row) AS (
	SELECT 'vacuum', pid, datid, datname, relid, phase, heap_blks_total, heap_blks_scanned,
		(to_jsonb(v)->>'max_dead_tuples')::bigint,
		coalesce((to_jsonb(v)->>'num_dead_tuples')::bigint, (to_jsonb(v)->>'num_dead_item_ids')::bigint),
		NULL::bigint, NULL::bigint, to_jsonb(v)
	FROM pg_stat_progress_vacuum v
	UNION ALL
	SELECT 'analyze', pid, datid, datname, relid, phase, sample_blks_total, sample_blks_scanned,
		NULL, NULL, NULL, NULL, to_jsonb(a)
	FROM pg_stat_progress_analyze a
	UNION ALL
	SELECT 'copy', pid, datid, datname, relid, NULL, NULL, NULL,
		NULL, tuples_processed, bytes_total, bytes_processed, to_jsonb(c)
	FROM pg_stat_progress_copy c
	UNION ALL
	SELECT 'create_index', pid, datid, datname, relid, phase, blocks_total, blocks_done,
		tuples_total, tuples_done, NULL, NULL, to_jsonb(i)
	FROM pg_stat_progress_create_index i
	UNION ALL
	SELECT 'cluster', pid, datid, datname, relid, phase, heap_blks_total, heap_blks_scanned,
		NULL, heap_tuples_scanned, NULL, NULL, to_jsonb(k)
	FROM pg_stat_progress_cluster k
)
SELECT progress_type, pid, datname::text, relid,
	CASE WHEN datid = (SELECT oid FROM pg_database WHERE datname = current_database())
		THEN (SELECT relname::text FROM pg_class WHERE oid = p.relid) END,
	phase, blocks_total, blocks_done, tuples_total, tuples_done, bytes_total, bytes_done,
	row - ARRAY['pid', 'datid', 'datname', 'relid', 'phase']
FROM p ORDER BY progress_type, pid`

type progressCollector struct{}

func (progressCollector) Collect(ctx context.Context, tx pgx.Tx, c *Collection) error {
	var err error
	c.Progress, err = queryAll(ctx, tx, SQLProgress, func(o *Operation) []any {
		return []any{&o.Type, &o.PID, &o.Datname, &o.Relid, &o.Relname, &o.Phase, &o.BlocksTotal, &o.BlocksDone,
			&o.TuplesTotal, &o.TuplesDone, &o.BytesTotal, &o.BytesDone, &o.Details}
	})
	return err
}

func (progressCollector) Emit(c *Collection, ch chan<- prometheus.Metric) {
	counts := map[string]int{}
	for _, o := range c.Progress {
		counts[o.Type]++
	}
	// Every command gets a series, 0 when none runs: "no vacuum now" is a reading, not a gap.
	for _, cmd := range ProgressCommands {
		gauge(ch, progressOpsDesc, float64(counts[cmd]), cmd)
	}
}
