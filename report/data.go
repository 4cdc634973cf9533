package report

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/diagnosis"
)

// window is the stretch of recorded telemetry a page is about. For a run (runID not 0),
// snapshotStart is where its start snapshot is looked for (telemetry.run_window: the snapshot
// batch_begin asked for lands shortly after the begin); for a time window it is the start.
type window struct {
	runID                     int64
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
	err := pool.QueryRow(ctx, `SELECT run_id, start_time, end_time, snapshot_start, server FROM telemetry.run_window($1)`, runID).
		Scan(&w.runID, &w.start, &w.end, &w.snapshotStart, &w.server)
	if err != nil {
		var exists bool
		if qerr := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM telemetry.batch_runs WHERE run_id = $1)`, runID).Scan(&exists); qerr == nil && !exists {
			return w, fmt.Errorf("%w: no batch run with run_id %d is recorded", errUnknownRun, runID)
		}
	}
	return w, err
}

// baselineRuns are the windows of the runs diagnose_run compares a run with
// (telemetry.run_baseline), newest first.
func baselineRuns(ctx context.Context, pool *pgxpool.Pool, run *diagnosis.Run) ([]window, error) {
	rows, _ := pool.Query(ctx, `SELECT run_id, start_time, end_time, snapshot_start, server FROM telemetry.run_baseline($1)`, run.RunID)
	var out []window
	var w window
	_, err := pgx.ForEachRow(rows, []any{&w.runID, &w.start, &w.end, &w.snapshotStart, &w.server}, func() error {
		out = append(out, w)
		return nil
	})
	return out, err
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

// series are the charts' data for one window.
type series struct {
	WAL, Checkpoints, TempBytes []point // growth since the window's first snapshot
	Locks                       []point // sessions blocked on a lock, per sample
	Waits                       map[string][]point
}

// loadSeries reads the window's series as the SQL API gives them: telemetry.run_series for a
// run, telemetry.window_series for a time window.
func loadSeries(ctx context.Context, pool *pgxpool.Pool, w window) (*series, error) {
	const columns = `SELECT series, coalesce(wait_event_type || ': ' || wait_event, ''), offset_seconds, value`
	var rows pgx.Rows
	if w.runID != 0 {
		rows, _ = pool.Query(ctx, columns+` FROM telemetry.run_series($1)`, w.runID)
	} else {
		rows, _ = pool.Query(ctx, columns+` FROM telemetry.window_series($1, $2, $3)`, w.start, w.end, w.server)
	}
	s := &series{Waits: map[string][]point{}}
	var name, event string
	var p point
	_, err := pgx.ForEachRow(rows, []any{&name, &event, &p.T, &p.V}, func() error {
		switch name {
		case "wal_bytes":
			s.WAL = append(s.WAL, p)
		case "checkpoints":
			s.Checkpoints = append(s.Checkpoints, p)
		case "temp_bytes":
			s.TempBytes = append(s.TempBytes, p)
		case "locks":
			s.Locks = append(s.Locks, p)
		case "waits":
			s.Waits[event] = append(s.Waits[event], p)
		}
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

// sum adds the series point by point (on the sample grid they share), in the order of their
// names: floating-point sums taken in map order differed in the last digit from page to page.
func sum(series map[string][]point, samples []point) []point {
	out := make([]point, len(samples))
	for i, smp := range samples {
		out[i].T = smp.T
	}
	idx := map[float64]int{}
	for i, smp := range samples {
		idx[smp.T] = i
	}
	for _, name := range slices.Sorted(maps.Keys(series)) {
		for _, p := range series[name] {
			if i, ok := idx[p.T]; ok {
				out[i].V += p.V
			}
		}
	}
	return out
}
