// Package report serves the recorder's batch report pages: one per batch run
// (/report/run/<id>) and one per time window (/report?from=...&to=...), and the list of
// recent runs (/report). Each page shows the diagnosis, compare() and wait_summary(), and
// charts of WAL, checkpoints, waits, locks and temp bytes over the window, a run beside its
// baseline. The pages are plain server-rendered HTML with inline CSS and SVG: no script, no
// external asset, so they work offline and behind any proxy.
package report

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/diagnosis"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/units"
)

// Options configure the report pages.
type Options struct {
	// Pool reads the telemetry schema (the recorder's database); read-only is enough.
	Pool   *pgxpool.Pool
	Logger *slog.Logger
}

// Handler serves /report, /report/run/<id> and /report?from=&to=.
func Handler(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /report", h.windowOrIndex)
	mux.HandleFunc("GET /report/run/{id}", h.run)
	mux.HandleFunc("/report/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, http.StatusNotFound, fmt.Errorf("no report page at %s: see /report for the recent runs", r.URL.Path))
	})
	return mux
}

// Disabled answers every report page where the recorder is off: the report reads what the
// recorder wrote, so the page says how to turn it on.
func Disabled() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := &handler{o: Options{Logger: slog.New(slog.DiscardHandler)}}
		h.render(w, http.StatusNotFound, &page{Kind: "error", Title: "The batch report needs the recorder",
			Error: "The batch report reads the runs and telemetry the recorder writes, and this exporter runs without it: start it with --recorder.enabled (and --recorder.dsn for a database of its own)."})
	})
}

type handler struct{ o Options }

//go:embed page.html
var files embed.FS

var pageTemplate = template.Must(template.New("page.html").Funcs(template.FuncMap{
	"ts":       formatTime,
	"cell":     formatCell,
	"numeric":  isNumeric,
	"measure":  formatMeasure,
	"signed":   formatSigned,
	"seconds":  units.Seconds,
	"short":    shortText,
	"severity": strings.ToUpper,
	"elapsed":  func(from, to time.Time) float64 { return to.Sub(from).Seconds() },
	"usual":    formatAgainstUsual,
}).ParseFS(files, "page.html"))

// page is what page.html renders; Kind picks the content.
type page struct {
	Kind  string // index, run, window, error
	Title string
	Error string

	Batches []batchRuns // index
	// IndexBatches and IndexRunsPerBatch bound what the index lists.
	IndexBatches, IndexRunsPerBatch int
	// OutOfRange counts the runs left out of Batches for their times (diagnosis.OutOfRangeRuns).
	OutOfRange int

	From, To time.Time
	Run      *diagnosis.Run
	Findings []diagnosis.Finding
	// Extra is the run's extra time against its baseline median, split by cause (the bar).
	Extra    *extraBar
	Measures []diagnosis.Measure // run: against the baseline, rank 0 is the duration
	// Changes are what changed since the baseline's latest run.
	Changes []diagnosis.Change
	// Statements are the run's top statements by time beyond their baseline median.
	Statements []diagnosis.Statement
	// Plans are the plans of the run's changed statements beside their baseline plans.
	Plans    []planComparison
	Baseline []int64 // run: the previous normal runs compared with
	// Running, Usual and SoFar: a run in progress, diagnosed up to now (diagnosis.Report).
	Running bool
	Usual   *diagnosis.Usual
	SoFar   []diagnosis.SoFarMeasure
	Compare []compareLine
	Waits   table
	Charts  []chart
	SQL     []string // the SQL that shows the same, for psql
}

// The index lists the recent runs of at most indexBatches batches, those with the latest
// runs (a batch role may name thousands: each run listed is a read of its baseline), and
// at most indexRunsPerBatch runs of each.
const (
	indexBatches      = 50
	indexRunsPerBatch = 20
)

// maxWindow bounds a window report: longer windows read too much for one page.
const maxWindow = 31 * 24 * time.Hour

func (h *handler) windowOrIndex(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	defer cancel()
	q := r.URL.Query()
	if q.Get("from") == "" && q.Get("to") == "" {
		p := &page{Kind: "index", Title: "Batch runs", IndexBatches: indexBatches, IndexRunsPerBatch: indexRunsPerBatch}
		batches, err := recentRuns(ctx, h.o.Pool, indexBatches, indexRunsPerBatch)
		if err == nil {
			p.Batches = batches
			p.OutOfRange, err = diagnosis.OutOfRangeRuns(ctx, h.o.Pool, "")
		}
		if err != nil {
			h.fail(w, http.StatusInternalServerError, err)
			return
		}
		h.render(w, http.StatusOK, p)
		return
	}
	from, to, err := parseWindow(q)
	if err != nil {
		h.fail(w, http.StatusBadRequest, err)
		return
	}
	p, err := h.windowPage(ctx, from, to)
	if err != nil {
		h.fail(w, errorStatus(err), err)
		return
	}
	h.render(w, http.StatusOK, p)
}

func (h *handler) windowPage(ctx context.Context, from, to time.Time) (*page, error) {
	win := window{start: from, end: to, snapshotStart: from}
	// The diagnosis and the charts' data are read at once, on two connections: over a month
	// each takes a few hundred milliseconds.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var rep *diagnosis.Report
	diagnosed := make(chan error, 1)
	go func() {
		var err error
		rep, err = diagnosis.Window(ctx, h.o.Pool, from, to, "")
		diagnosed <- err
	}()
	p := &page{Kind: "window", Title: "Window " + formatTime(from) + " to " + formatTime(to), From: from, To: to}
	if err := h.fill(ctx, p, win, nil); err != nil {
		cancel() // the diagnosis is not needed any more
		<-diagnosed
		return nil, err
	}
	if err := <-diagnosed; err != nil {
		return nil, err
	}
	p.Findings = rep.Findings
	lit := func(t time.Time) string { return "'" + t.Format(time.RFC3339Nano) + "'" }
	p.SQL = []string{
		fmt.Sprintf("SELECT * FROM telemetry.diagnose(%s, %s);", lit(from), lit(to)),
		fmt.Sprintf("SELECT * FROM telemetry.compare(%s, %s);", lit(from), lit(to)),
		fmt.Sprintf("SELECT * FROM telemetry.wait_summary(%s, %s);", lit(from), lit(to)),
	}
	return p, nil
}

func (h *handler) run(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	defer cancel()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		h.fail(w, http.StatusBadRequest, fmt.Errorf("%q is not a run id: run ids are positive whole numbers (telemetry.batch_runs.run_id)", r.PathValue("id")))
		return
	}
	win, err := runWindow(ctx, h.o.Pool, id)
	if errors.Is(err, errUnknownRun) {
		h.fail(w, http.StatusNotFound, err)
		return
	}
	if err == nil {
		// A writer may begin a run long ago (batch_begin's p_started_at): its page would read
		// the whole history, until the statement timeout.
		if lenErr := fitsOneReport(win.start, win.end); lenErr != nil {
			h.fail(w, http.StatusUnprocessableEntity, fmt.Errorf("run %d is %w (SELECT * FROM telemetry.diagnose_run(%d) reads it in psql)", id, lenErr, id))
			return
		}
	}
	var rep *diagnosis.Report
	if err == nil {
		rep, err = diagnosis.ForRun(ctx, h.o.Pool, id)
	}
	if err != nil {
		h.fail(w, errorStatus(err), err)
		return
	}
	p := &page{Kind: "run", Title: fmt.Sprintf("%s, run %d", rep.Run.Batch, id), From: rep.From, To: rep.To,
		Run: rep.Run, Findings: rep.Findings, Measures: rep.Baseline, Statements: rep.Statements, Changes: rep.Changes,
		Running: rep.Running, Usual: rep.Usual, SoFar: rep.SoFar, Extra: newExtraBar(rep),
		Plans: planComparisons(rep.Findings)}
	baseline, err := baselineRuns(ctx, h.o.Pool, rep.Run)
	if err != nil {
		h.fail(w, http.StatusInternalServerError, err)
		return
	}
	for _, b := range baseline {
		p.Baseline = append(p.Baseline, b.runID)
	}
	if err := h.fill(ctx, p, win, baseline); err != nil {
		h.fail(w, http.StatusInternalServerError, err)
		return
	}
	p.SQL = []string{
		fmt.Sprintf("SELECT * FROM telemetry.diagnose_run(%d);", id),
		fmt.Sprintf("SELECT * FROM telemetry.diagnose_run_findings(%d);", id),
		fmt.Sprintf("SELECT * FROM telemetry.run_account(%d);", id),
		fmt.Sprintf("SELECT * FROM telemetry.run_changes(%d);", id),
		fmt.Sprintf("SELECT * FROM telemetry.run_so_far(%d);", id),
		fmt.Sprintf("SELECT * FROM telemetry.run_plans(%d);", id),
		fmt.Sprintf("SELECT * FROM telemetry.batch_runs WHERE batch = %s ORDER BY started_at DESC;", quoteLiteral(rep.Run.Batch)),
	}
	h.render(w, http.StatusOK, p)
}

// extraBar is a run's extra time split by cause: a segment for each cause's explained seconds
// and one for the unexplained, each as a share of the bar (the larger of the extra time and
// the parts' sum, so that causes explaining more than the extra still fit).
type extraBar struct {
	Seconds float64
	Parts   []barPart
}

type barPart struct {
	Name    string
	Seconds float64
	Pct     float64
	Color   string
}

func newExtraBar(rep *diagnosis.Report) *extraBar {
	if rep.ExtraSeconds == nil || *rep.ExtraSeconds <= 0 {
		return nil
	}
	b := &extraBar{Seconds: *rep.ExtraSeconds}
	for _, f := range rep.Findings {
		if f.ExplainedSeconds != nil && *f.ExplainedSeconds > 0 {
			b.Parts = append(b.Parts, barPart{Name: f.Pattern, Seconds: *f.ExplainedSeconds, Color: palette[len(b.Parts)%len(palette)]})
		}
	}
	if u := rep.UnexplainedSeconds; u != nil && *u > 0 {
		b.Parts = append(b.Parts, barPart{Name: "not explained", Seconds: *u, Color: baselineColor})
	}
	total := b.Seconds
	for _, p := range b.Parts {
		total = max(total, p.Seconds)
	}
	var sum float64
	for _, p := range b.Parts {
		sum += p.Seconds
	}
	total = max(total, sum)
	for i := range b.Parts {
		b.Parts[i].Pct = 100 * b.Parts[i].Seconds / total
	}
	return b
}

// fill adds the compare and wait_summary tables and the charts of the window; with baseline
// runs (their windows, newest first), compare shows their median and the charts the latest
// of them.
func (h *handler) fill(ctx context.Context, p *page, win window, baseline []window) error {
	cur, err := compareRow(ctx, h.o.Pool, win)
	if err != nil {
		return err
	}
	var base []table
	for _, bw := range baseline {
		t, err := compareRow(ctx, h.o.Pool, bw)
		if err != nil {
			return err
		}
		base = append(base, t)
	}
	p.Compare = compareLines(cur, base)
	if p.Waits, err = waitSummary(ctx, h.o.Pool, win); err != nil {
		return err
	}
	s, err := loadSeries(ctx, h.o.Pool, win)
	if err != nil {
		return err
	}
	var prev *series
	var prevLabel string
	xmax := win.end.Sub(win.start).Seconds()
	if len(baseline) > 0 {
		bw := baseline[0]
		if prev, err = loadSeries(ctx, h.o.Pool, bw); err != nil {
			return err
		}
		prevLabel = fmt.Sprintf("previous normal run (%d)", bw.runID)
		xmax = max(xmax, bw.end.Sub(bw.start).Seconds())
	}
	p.Charts = charts(s, prev, prevLabel, xmax)
	return nil
}

// charts lays out the five charts; prev, when not nil, is drawn dashed beside the window.
func charts(s, prev *series, prevLabel string, xmax float64) []chart {
	this := "this run"
	if prev == nil {
		this = "this window"
	}
	pair := func(title, help, unit string, get func(*series) []point) chart {
		c := chart{Title: title, Help: help, Unit: unit, XMax: xmax,
			Lines: []line{{Name: this, Color: palette[0], Points: get(s)}}}
		if prev != nil {
			c.Lines = append(c.Lines, line{Name: prevLabel, Color: baselineColor, Dashed: true, Points: get(prev)})
		}
		return c
	}
	waits := chart{Title: "Waits by event", Help: "Average client sessions in each wait (Running: CPU is working, not waiting), per sample (over windows longer than 36 hours: per hour)", Unit: "sessions", XMax: xmax}
	names, top := topWaits(s.Waits, s.Locks, len(palette)-1)
	for i, name := range names {
		waits.Lines = append(waits.Lines, line{Name: name, Color: palette[i%len(palette)], Points: top[name]})
	}
	if prev != nil {
		waits.Lines = append(waits.Lines, line{Name: "all waits, " + prevLabel, Color: baselineColor, Dashed: true, Points: sum(prev.Waits, prev.Locks)})
	}
	checkpoints := pair("Checkpoints", "Checkpoints completed since the start, timed and requested", "count", func(s *series) []point { return s.Checkpoints })
	checkpoints.Step = true
	return []chart{
		pair("WAL written", "WAL bytes generated since the start (pg_stat_wal)", "bytes", func(s *series) []point { return s.WAL }),
		checkpoints,
		waits,
		pair("Sessions blocked on locks", "Sessions waiting for a heavyweight lock held by another, per sample (over windows longer than 36 hours: the most at once in each hour)", "count", func(s *series) []point { return s.Locks }),
		pair("Temp bytes", "Temporary file bytes written since the start (sorts and hashes beyond work_mem)", "bytes", func(s *series) []point { return s.TempBytes }),
	}
}

func (h *handler) render(w http.ResponseWriter, status int, p *page) {
	var b strings.Builder
	if err := pageTemplate.Execute(&b, p); err != nil {
		h.o.Logger.Error("rendering report page", "err", err)
		http.Error(w, "rendering the report page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Nothing but this page's own inline styles and images may load.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

func (h *handler) fail(w http.ResponseWriter, status int, err error) {
	msg := err.Error()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" || errors.As(err, &pgErr) && pgErr.Code == "42883" {
		msg = "The telemetry schema is not installed in this database yet: the recorder creates it on start (--recorder.enabled). " + msg
	}
	if status >= 500 {
		h.o.Logger.Error("report page", "err", err)
	}
	h.render(w, status, &page{Kind: "error", Title: http.StatusText(status), Error: msg})
}

// errorStatus is the status of a page that failed with err: 422 for times telemetry refuses
// (a window's, or a stored run's: telemetry._check_time), else 500.
func errorStatus(err error) int {
	var pgErr *pgconn.PgError
	if errors.Is(err, diagnosis.ErrOutOfRange) || errors.As(err, &pgErr) && pgErr.Code == "22008" { // datetime_field_overflow
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

// parseWindow reads ?from=&to=: two times, to after from, at most maxWindow apart.
func parseWindow(q url.Values) (from, to time.Time, err error) {
	if from, err = parseTime("from", q.Get("from")); err != nil {
		return from, to, err
	}
	if to, err = parseTime("to", q.Get("to")); err != nil {
		return from, to, err
	}
	switch {
	case !to.After(from):
		return from, to, fmt.Errorf("to (%s) must be after from (%s)", formatTime(to), formatTime(from))
	}
	if err := fitsOneReport(from, to); err != nil {
		return from, to, fmt.Errorf("the window is %w", err)
	}
	return from, to, nil
}

// fitsOneReport refuses a window (or a run) longer than maxWindow.
func fitsOneReport(from, to time.Time) error {
	if to.Sub(from) <= maxWindow {
		return nil
	}
	// In days from the seconds apart: a Duration saturates at 292 years ("2562047h47m...").
	return fmt.Errorf("%d days long; at most %d days fit one report", (to.Unix()-from.Unix())/86400, int(maxWindow.Hours()/24))
}

func parseTime(name, s string) (time.Time, error) {
	if strings.TrimSpace(s) == "" {
		return time.Time{}, fmt.Errorf("%s is missing: give both from and to, e.g. ?from=2026-01-02T01:00:00Z&to=2026-01-02T02:00:00Z", name)
	}
	t, err := diagnosis.ParseTime(strings.TrimSpace(s))
	if err != nil {
		return t, fmt.Errorf("%s: %w", name, err)
	}
	return t, nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
