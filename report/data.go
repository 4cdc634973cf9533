package report

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/diagnosis"
)

// window is the stretch of recorded telemetry a page is about. For a run, snapshotStart is
// where its start snapshot is looked for (telemetry._run_window: the snapshot batch_begin
// asked for lands shortly after the begin); for a time window it is the start.
type window struct {
	start, end, snapshotStart time.Time
	server                    *string
}

// table is a result set shown as is: the SQL API's column names and values.
type table struct {
	Columns []string
	Rows    [][]any
}

// runRow is one line of telemetry.batch_run_durations: a run against its batch's usual.
type runRow struct {
	RunID           int64
	Batch           string
	StartedAt       time.Time
	EndedAt         *time.Time
	Status          string
	Source          string
	DurationSeconds float64
	UsualMedian     *float64
	UsualP90        *float64
	BaselineRuns    *int32
	Slow            *bool
}

// IsSlow tells a run past its batch's usual 90th percentile (false without a usual yet).
func (r runRow) IsSlow() bool { return r.Slow != nil && *r.Slow }

// batchRuns are a batch's recent runs, newest first.
type batchRuns struct {
	Batch string
	Runs  []runRow
}

// recentRuns are the runs of the last 7 days (and open ones) of the maxBatches batches with
// the latest runs, at most perBatch each.
func recentRuns(ctx context.Context, pool *pgxpool.Pool, maxBatches, perBatch int) ([]batchRuns, error) {
	rows, _ := pool.Query(ctx, `SELECT run_id, batch, started_at, ended_at, status, source, duration_seconds,
		usual_median_seconds, usual_p90_seconds, baseline_runs, slow
		FROM telemetry.batch_run_durations(now() - interval '7 days', $1, $2)`, perBatch, maxBatches)
	runs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[runRow])
	var out []batchRuns
	for _, r := range runs {
		if len(out) == 0 || out[len(out)-1].Batch != r.Batch {
			out = append(out, batchRuns{Batch: r.Batch})
		}
		out[len(out)-1].Runs = append(out[len(out)-1].Runs, r)
	}
	return out, err
}

// errUnknownRun is a run_id that telemetry.batch_runs does not hold.
var errUnknownRun = errors.New("unknown run")

func runWindow(ctx context.Context, pool *pgxpool.Pool, runID int64) (window, error) {
	var w window
	err := pool.QueryRow(ctx, `SELECT start_time, end_time, snapshot_start, server FROM telemetry._run_window($1)`, runID).
		Scan(&w.start, &w.end, &w.snapshotStart, &w.server)
	if err != nil {
		var exists bool
		if qerr := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM telemetry.batch_runs WHERE run_id = $1)`, runID).Scan(&exists); qerr == nil && !exists {
			return w, fmt.Errorf("%w: no batch run with run_id %d is recorded", errUnknownRun, runID)
		}
	}
	return w, err
}

// baselineRuns are the runs diagnose_run compares a run with, as the SQL API defines them
// (telemetry._baseline_runs), newest first.
func baselineRuns(ctx context.Context, pool *pgxpool.Pool, run *diagnosis.Run) ([]int64, error) {
	rows, _ := pool.Query(ctx, `SELECT run_id FROM telemetry._baseline_runs($1) ORDER BY start_time DESC`, run.RunID)
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// compareRow is telemetry.compare() over the window: one row, or none when the window has no
// snapshot on one side.
func compareRow(ctx context.Context, pool *pgxpool.Pool, w window) (table, error) {
	return query(ctx, pool, 1, `SELECT * FROM telemetry.compare($1, $2, $3)`, w.snapshotStart, w.end, w.server)
}

func waitSummary(ctx context.Context, pool *pgxpool.Pool, w window) (table, error) {
	// Client sessions' waits first: background processes (checkpointer, walwriter) wait at
	// 100% when idle and would push the client lock wait that matters down the table.
	return query(ctx, pool, 20, `SELECT * FROM telemetry.wait_summary($1, $2, $3) ORDER BY backend_type IS DISTINCT FROM 'client backend'`, w.start, w.end, w.server)
}

func query(ctx context.Context, pool *pgxpool.Pool, limit int, sql string, args ...any) (table, error) {
	var t table
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return t, err
	}
	defer rows.Close()
	for _, f := range rows.FieldDescriptions() {
		t.Columns = append(t.Columns, f.Name)
	}
	for rows.Next() && len(t.Rows) < limit {
		v, err := rows.Values()
		if err != nil {
			return t, err
		}
		t.Rows = append(t.Rows, v)
	}
	return t, rows.Err()
}

// point is a value at an offset in seconds from the window's start.
type point struct{ T, V float64 }

// counterGrowth sums a counter's growth over successive readings. Across a statistics
// reset (its stats_reset changed, or the counter went backwards) the counter restarted
// from zero, so its new value is what it counted since: a counter grown back past its old
// value is not read as the difference.
type counterGrowth struct {
	started bool
	prev    float64
	reset   *time.Time
	sum     float64
}

func (g *counterGrowth) add(v float64, reset *time.Time) float64 {
	switch {
	case !g.started: // the first reading: growth counts from here
	case v >= g.prev && sameTime(reset, g.reset):
		g.sum += v - g.prev
	default:
		g.sum += v
	}
	g.started, g.prev, g.reset = true, v, reset
	return g.sum
}

func sameTime(a, b *time.Time) bool {
	return a == nil && b == nil || a != nil && b != nil && a.Equal(*b)
}

// series are the charts' data for one window.
type series struct {
	WAL, Checkpoints, TempBytes []point // growth since the window's first snapshot
	Locks                       []point // sessions blocked on a lock, per sample
	Waits                       map[string][]point
}

// loadSeries reads the window's snapshots and samples. As in compare(), the snapshots run
// from the last at or before the start to the first at or after the end, so that the
// counters' growth covers the whole window.
func loadSeries(ctx context.Context, pool *pgxpool.Pool, w window) (*series, error) {
	s := &series{Waits: map[string][]point{}}
	rows, _ := pool.Query(ctx, `
		WITH srv AS (SELECT telemetry._resolve_server($3) AS server),
		first AS (SELECT coalesce(max(captured_at), $1) AS at FROM telemetry.snapshots, srv
		          WHERE snapshots.server = srv.server AND captured_at <= $1),
		last AS (SELECT coalesce(min(captured_at), $2) AS at FROM telemetry.snapshots, srv
		         WHERE snapshots.server = srv.server AND captured_at >= $2)
		SELECT extract(epoch FROM captured_at - $1)::float8, wal_bytes::float8,
		       (ckpt_timed + ckpt_requested)::float8, temp_bytes::float8,
		       wal_stats_reset, ckpt_stats_reset, db_stats_reset
		FROM telemetry.snapshots, srv, first, last
		WHERE snapshots.server = srv.server AND captured_at BETWEEN first.at AND last.at
		ORDER BY captured_at`, w.start, w.end, w.server)
	var t float64
	var vals [3]*float64
	var resets [3]*time.Time
	var growth [3]counterGrowth
	_, err := pgx.ForEachRow(rows, []any{&t, &vals[0], &vals[1], &vals[2], &resets[0], &resets[1], &resets[2]}, func() error {
		dst := []*[]point{&s.WAL, &s.Checkpoints, &s.TempBytes}
		for i, v := range vals {
			if v != nil {
				*dst[i] = append(*dst[i], point{t, growth[i].add(*v, resets[i])})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	rows, _ = pool.Query(ctx, `
		WITH srv AS (SELECT telemetry._resolve_server($3) AS server)
		SELECT extract(epoch FROM s.captured_at - $1)::float8, count(DISTINCT l.blocked_pid)::float8
		FROM telemetry.samples s JOIN srv ON s.server = srv.server
		LEFT JOIN telemetry.lock_samples l ON l.sample_id = s.id AND l.captured_at = s.captured_at
		WHERE s.captured_at BETWEEN $1 AND $2
		GROUP BY s.id, s.captured_at ORDER BY s.captured_at`, w.start, w.end, w.server)
	var lockN float64
	_, err = pgx.ForEachRow(rows, []any{&t, &lockN}, func() error {
		s.Locks = append(s.Locks, point{t, lockN})
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Waits: the average sessions in each wait since the previous sample, as the SQL API
	// counts them (telemetry._wait_rows: the wait sampler's, else the sample grid's).
	rows, _ = pool.Query(ctx, `
		SELECT extract(epoch FROM r.captured_at - $1)::float8, r.wait_event_type || ': ' || r.wait_event, r.sessions
		FROM telemetry._wait_rows($1, $2, telemetry._resolve_server($3)) r
		WHERE r.sessions IS NOT NULL
		ORDER BY 1, 2`, w.start, w.end, w.server)
	var event string
	var sessions float64
	_, err = pgx.ForEachRow(rows, []any{&t, &event, &sessions}, func() error {
		s.Waits[event] = append(s.Waits[event], point{t, sessions})
		return nil
	})
	return s, err
}

// topWaits keeps the n wait events with the most session-seconds and sums the others into
// "other", each series filled with zeros at the sample times where the event was not seen.
func topWaits(waits map[string][]point, samples []point, n int) (names []string, out map[string][]point) {
	total := map[string]float64{}
	for name, ps := range waits {
		for _, p := range ps {
			total[name] += p.V
		}
	}
	for name := range waits {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		if total[names[i]] != total[names[j]] {
			return total[names[i]] > total[names[j]]
		}
		return names[i] < names[j]
	})
	merged := map[string]map[float64]float64{}
	for i, name := range names {
		key := name
		if i >= n {
			key = "other"
		}
		if merged[key] == nil {
			merged[key] = map[float64]float64{}
		}
		for _, p := range waits[name] {
			merged[key][p.T] += p.V
		}
	}
	if len(names) > n {
		names = append(names[:n], "other")
	}
	out = map[string][]point{}
	for _, name := range names {
		for _, smp := range samples {
			out[name] = append(out[name], point{smp.T, merged[name][smp.T]})
		}
	}
	return names, out
}

// sum adds the series point by point (on the sample grid they share).
func sum(series map[string][]point, samples []point) []point {
	out := make([]point, len(samples))
	for i, smp := range samples {
		out[i].T = smp.T
	}
	idx := map[float64]int{}
	for i, smp := range samples {
		idx[smp.T] = i
	}
	for _, ps := range series {
		for _, p := range ps {
			if i, ok := idx[p.T]; ok {
				out[i].V += p.V
			}
		}
	}
	return out
}
