// Package diagnosis is the Go side of telemetry.diagnose(): it calls the SQL functions that
// the recorder's migrations install and renders their findings as a report, in text or JSON.
package diagnosis

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
)

// Querier is a connection or a pool.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Finding is one row of telemetry.diagnose(): a pattern seen in the window; of a run
// (telemetry.run_diagnosis), a cause of its extra time, a caveat or a pattern of its window.
type Finding struct {
	Pattern        string          `json:"pattern"`
	Severity       string          `json:"severity"` // critical, warning or info
	Summary        string          `json:"summary"`
	Evidence       json.RawMessage `json:"evidence"`
	Recommendation *string         `json:"recommendation"`
	// ExplainedSeconds are the seconds of the run's extra time a cause explains, and
	// ShareOfExtraPct their share of it; Children the statements whose time it is.
	ExplainedSeconds *float64 `json:"explained_seconds,omitempty"`
	ShareOfExtraPct  *float64 `json:"share_of_extra_pct,omitempty"`
	Children         []Child  `json:"children,omitempty"`
}

// Child is a statement under a run's cause: its seconds of the run in that cause (Buckets:
// CPU, the waits), against the median of its baseline runs. Shared: other sessions ran it
// too, so pg_stat_statements' counters are not the batch's alone and it is judged on its
// sampled own seconds; else Statistics are its pg_stat_statements evidence (telemetry._run_statements).
type Child struct {
	QueryID         int64           `json:"queryid"`
	Query           *string         `json:"query"`
	Buckets         string          `json:"buckets"`
	Seconds         float64         `json:"seconds"`
	BaselineSeconds float64         `json:"baseline_seconds"`
	ExtraSeconds    float64         `json:"extra_seconds"`
	Shared          bool            `json:"shared"`
	Statistics      json.RawMessage `json:"statistics,omitempty"`
}

// Measure is one row of telemetry.diagnose_run(): a measure of the run against the median of
// the batch's previous normal runs. Rank 0 is the duration; 1 is the most unusual measure.
type Measure struct {
	Rank           int      `json:"rank"`
	Measure        string   `json:"measure"`
	Pattern        *string  `json:"pattern"`
	Unit           string   `json:"unit"`
	Value          *float64 `json:"value"`
	BaselineMedian *float64 `json:"baseline_median"`
	BaselineRuns   int      `json:"baseline_runs"`
	ChangePct      *float64 `json:"change_pct"`
	Score          *float64 `json:"score"`
	Summary        string   `json:"summary"`
}

// Run is one row of telemetry.batch_runs.
type Run struct {
	RunID     int64      `json:"run_id"`
	Batch     string     `json:"batch"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at"`
	Status    string     `json:"status"`
	Source    string     `json:"source"`
	ExitCode  *int32     `json:"exit_code"`
	Detail    *string    `json:"detail"`
}

// Report is what the diagnose command shows: the window's findings and, for a run, how it
// compares with the batch's previous normal runs.
type Report struct {
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Run      *Run      `json:"run,omitempty"`
	Findings []Finding `json:"findings"`
	// ExtraSeconds is how much longer the run took than its baseline median, and
	// UnexplainedSeconds what of it no cause explains, where the run was judged against a
	// baseline by its own sessions' account.
	ExtraSeconds       *float64  `json:"extra_seconds,omitempty"`
	UnexplainedSeconds *float64  `json:"unexplained_seconds,omitempty"`
	Baseline           []Measure `json:"baseline,omitempty"`
	// Statements are the run's top statements by time beyond their baseline median
	// (telemetry._run_statements), where pg_stat_statements was recorded.
	Statements []Statement `json:"statements,omitempty"`
	// Running says the run has not ended: the report is its account up to To (now).
	Running bool `json:"running,omitempty"`
	// Usual is how long the batch's normal runs take (telemetry.run_usual_duration), where
	// its baseline has enough of them.
	Usual *Usual `json:"usual,omitempty"`
	// SoFar is a running run's measures against its baseline runs' whole and the same
	// elapsed part of them (telemetry.run_so_far).
	SoFar []SoFarMeasure `json:"so_far,omitempty"`
	// Changes are what changed since the baseline's latest run (telemetry.run_changes without
	// the seconds, which the findings give).
	Changes []Change `json:"changes,omitempty"`
}

// Change is something that changed between a run's baseline and its start: an index, a
// table's statistics or size, a setting, the server's start or version.
type Change struct {
	Kind   string  `json:"kind"`
	Object string  `json:"object"`
	Old    *string `json:"old"`
	New    *string `json:"new"`
	Detail string  `json:"detail"`
	// Affects: it can slow the batch's statements (else named, never blamed).
	Affects bool `json:"affects"`
}

// Usual is a row of telemetry.run_usual_duration.
type Usual struct {
	BaselineRuns  int     `json:"baseline_runs"`
	MedianSeconds float64 `json:"median_seconds"`
	P90Seconds    float64 `json:"p90_seconds"`
}

// SoFarMeasure is a row of telemetry.run_so_far.
type SoFarMeasure struct {
	Measure        string   `json:"measure"`
	Pattern        *string  `json:"pattern"`
	Unit           string   `json:"unit"`
	Value          *float64 `json:"value"`
	ElapsedSeconds float64  `json:"elapsed_seconds"`
	BaselineRuns   int      `json:"baseline_runs"`
	MedianWhole    *float64 `json:"baseline_median_whole"`
	MedianElapsed  *float64 `json:"baseline_median_same_elapsed"`
}

// Statement is one row of telemetry._run_statements, the diagnosis's reading of a run's statements.
type Statement struct {
	Rank            int      `json:"rank"`
	QueryID         int64    `json:"queryid"`
	Query           *string  `json:"query"`
	Status          string   `json:"status"`
	Seconds         *float64 `json:"seconds"`
	BaselineSeconds *float64 `json:"baseline_seconds"`
	ExtraSeconds    *float64 `json:"extra_seconds"`
	Calls           *int64   `json:"calls"`
	BaselineCalls   *float64 `json:"baseline_calls"`
	Rows            *int64   `json:"rows"`
	SecondsPerCall  *float64 `json:"seconds_per_call"`
	BaselinePerCall *float64 `json:"baseline_seconds_per_call"`
	BlocksPerCall   *float64 `json:"blocks_per_call"`
	TempPerCall     *float64 `json:"temp_per_call"`
	WALBytes        *int64   `json:"wal_bytes"`
	TopWait         *string  `json:"top_wait"`
}

// ReportStatements is how many of a run's statements a report carries.
const ReportStatements = 10

// ErrNotFound is returned for a batch or run that is not recorded.
var ErrNotFound = errors.New("not recorded")

// ErrOutOfRange is returned for a window, or a recorded run, whose times telemetry refuses
// (telemetry._check_time, batch_runs_checked; a run's written before batch_begin checked
// them, or by hand).
var ErrOutOfRange = errors.New("times out of range")

// Window diagnoses the time between from and to on a recorded server ("": the only one).
func Window(ctx context.Context, q Querier, from, to time.Time, server string) (*Report, error) {
	fs, err := findings(ctx, q, `SELECT pattern, severity, summary, evidence, recommendation
		FROM telemetry.diagnose($1, $2, nullif($3, ''))`, from, to, server)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "22008" { // datetime_field_overflow: telemetry._check_time
		return nil, fmt.Errorf("%w: %s", ErrOutOfRange, pgErr.Message)
	}
	if err != nil {
		return nil, err
	}
	return &Report{From: from, To: to, Findings: fs}, nil
}

// LastRun finds the latest run of a batch; back 0 is the last, 1 the one before, and so on.
func LastRun(ctx context.Context, q Querier, batch string, back int) (int64, error) {
	var id int64
	// Runs whose times are out of range are skipped ('infinity' would sort first): ForRun of one says why.
	err := q.QueryRow(ctx, `SELECT run_id FROM telemetry.batch_runs_checked WHERE batch = $1 AND times_ok
		ORDER BY started_at DESC, run_id DESC OFFSET $2 LIMIT 1`, batch, back).Scan(&id)
	if !errors.Is(err, pgx.ErrNoRows) {
		return id, err
	}
	var runs int
	if err := q.QueryRow(ctx, `SELECT count(*) FROM telemetry.batch_runs_checked WHERE batch = $1 AND times_ok`, batch).Scan(&runs); err != nil {
		return 0, err
	}
	if runs == 0 {
		return 0, fmt.Errorf("%w: unknown batch %q, no run of it is recorded (SELECT * FROM telemetry.recent_batch_runs)", ErrNotFound, batch)
	}
	plural := "s"
	if runs == 1 {
		plural = ""
	}
	return 0, fmt.Errorf("%w: batch %q has only %d run%s, so there is no run %d before its last (SELECT * FROM telemetry.recent_batch_runs)", ErrNotFound, batch, runs, plural, back)
}

// CurrentRun finds the batch's run in progress (the latest, should several be open).
func CurrentRun(ctx context.Context, q Querier, batch string) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `SELECT run_id FROM telemetry.batch_runs WHERE batch = $1 AND status = 'running'
		ORDER BY started_at DESC, run_id DESC LIMIT 1`, batch).Scan(&id)
	if !errors.Is(err, pgx.ErrNoRows) {
		return id, err
	}
	var last *time.Time
	if err := q.QueryRow(ctx, `SELECT max(ended_at) FROM telemetry.batch_runs_checked WHERE batch = $1
		AND times_ok`, batch).Scan(&last); err != nil {
		return 0, err
	}
	if last == nil {
		return 0, fmt.Errorf("%w: batch %q has no run in progress, and none is recorded (SELECT * FROM telemetry.recent_batch_runs)", ErrNotFound, batch)
	}
	return 0, fmt.Errorf("%w: batch %q has no run in progress: its last run ended at %s (--run last diagnoses it)", ErrNotFound, batch, last.Local().Format("2006-01-02 15:04:05 MST"))
}

// ErrNoSchema is returned where the database holds no telemetry schema.
var ErrNoSchema = errors.New("the telemetry schema is not installed in this database: install it with pg-batch-exporter serve --recorder.enabled (the recorder creates it; --recorder.dsn chooses the database), or for pg_cron mode with psql -f recorder/sql/install.sql")

// CheckSchema returns ErrNoSchema where the telemetry schema is missing, and an error where
// another role owns it (postgres.TelemetrySchema). It asks the catalog, so it leaves no ERROR
// in the server's log.
func CheckSchema(ctx context.Context, q Querier) error {
	installed, err := postgres.TelemetrySchema(ctx, q)
	if err == nil && !installed {
		return ErrNoSchema
	}
	return err
}

// OutOfRangeRuns counts the recorded runs of batch ("": of every batch) whose times telemetry
// refuses (telemetry.batch_runs_out_of_range): the readers leave them out, and say so.
func OutOfRangeRuns(ctx context.Context, q Querier, batch string) (int, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT count(*) FROM telemetry.batch_runs_out_of_range WHERE $1 IN ('', batch)`, batch).Scan(&n)
	return n, err
}

// ForRun diagnoses a recorded run and compares it with its batch's previous normal runs.
func ForRun(ctx context.Context, q Querier, runID int64) (*Report, error) {
	var r Run
	var timesOK bool
	var started *time.Time
	err := q.QueryRow(ctx, `SELECT run_id, batch, times_ok, CASE WHEN times_ok THEN started_at END, CASE WHEN times_ok THEN ended_at END,
		status, source, exit_code, detail
		FROM telemetry.batch_runs_checked WHERE run_id = $1`, runID).
		Scan(&r.RunID, &r.Batch, &timesOK, &started, &r.EndedAt, &r.Status, &r.Source, &r.ExitCode, &r.Detail)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: no batch run with run_id %d", ErrNotFound, runID)
	}
	if err != nil {
		return nil, err
	}
	if !timesOK {
		return nil, fmt.Errorf("%w: run %d of %s has a begin or end out of range, so it cannot be diagnosed (SELECT * FROM telemetry.batch_runs_out_of_range)",
			ErrOutOfRange, runID, r.Batch)
	}
	r.StartedAt = *started
	rep := &Report{From: r.StartedAt, To: time.Now(), Run: &r}
	if r.EndedAt != nil {
		rep.To = *r.EndedAt
	}
	// One call: the findings, the measures and the statements, each computed once.
	var diagnosed []byte
	if err := q.QueryRow(ctx, `SELECT telemetry.run_diagnosis($1, $2)`, runID, ReportStatements).Scan(&diagnosed); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(diagnosed, rep); err != nil {
		return nil, fmt.Errorf("run_diagnosis(%d): %w", runID, err)
	}
	for i := range rep.Findings {
		rep.Findings[i].orInfo()
	}
	if r.EndedAt == nil {
		if err := rep.addSoFar(ctx, q, runID); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// addSoFar gives the report of a run in progress its usual duration and its measures so far.
func (rep *Report) addSoFar(ctx context.Context, q Querier, runID int64) error {
	rep.Running = true
	rows, _ := q.Query(ctx, `SELECT baseline_runs, median_seconds, p90_seconds FROM telemetry.run_usual_duration($1)`, runID)
	usual, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Usual])
	if err != nil {
		return err
	}
	if len(usual) > 0 {
		rep.Usual = &usual[0]
	}
	rows, _ = q.Query(ctx, `SELECT measure, pattern, unit, value::float8, elapsed_seconds::float8, baseline_runs,
		baseline_median_whole::float8, baseline_median_same_elapsed::float8 FROM telemetry.run_so_far($1)`, runID)
	rep.SoFar, err = pgx.CollectRows(rows, pgx.RowToStructByPos[SoFarMeasure])
	return err
}

func findings(ctx context.Context, q Querier, sql string, args ...any) ([]Finding, error) {
	rows, _ := q.Query(ctx, sql, args...)
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Finding, error) {
		var f Finding
		var severity, summary pgtype.Text
		err := row.Scan(&f.Pattern, &severity, &summary, &f.Evidence, &f.Recommendation)
		f.Severity, f.Summary = severity.String, summary.String
		f.orInfo()
		return f, err
	})
}

// orInfo shows a finding without a grade or a summary (a rule's bug, or a schema another
// version installed) as info, not fatal to the whole report.
func (f *Finding) orInfo() {
	f.Severity, f.Summary = cmp.Or(f.Severity, "info"), cmp.Or(f.Summary, "(no summary)")
}

// timeLayouts are the local-time forms ParseTime accepts besides RFC 3339.
var timeLayouts = []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"}

// ParseTime reads a time as RFC 3339 (2024-12-16T14:00:00+01:00) or as the user's local time
// (2024-12-16 14:00, with optional seconds; a date alone is its midnight).
func ParseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range timeLayouts {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use RFC 3339 (2024-12-16T14:00:00+01:00) or local time (2024-12-16 14:00)", s)
}
