package batch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/repeatlog"
)

var (
	runningDesc = prometheus.NewDesc(collectors.Namespace+"_batch_running",
		"1 while a run of the batch is in progress (detected, or open in telemetry.batch_runs).", []string{"batch"}, nil)
	runsDesc = prometheus.NewDesc(collectors.Namespace+"_batch_runs_total",
		"Runs of the batch that finished since the exporter started.", []string{"batch"}, nil)
	lastDurationDesc = prometheus.NewDesc(collectors.Namespace+"_batch_last_duration_seconds",
		"Duration of the batch's last finished run.", []string{"batch"}, nil)
	sessionsDesc = prometheus.NewDesc(collectors.Namespace+"_batch_sessions",
		"Non-idle client sessions of the batch at the last wait sample.", []string{"batch"}, nil)
	waitDesc = prometheus.NewDesc(collectors.Namespace+"_batch_wait_event_seconds_total",
		"Session-seconds the batch's own non-idle sessions spent in each wait (Running/CPU when not waiting), from the wait sampler.",
		[]string{"batch", "wait_event_type", "wait_event"}, nil)
	statementSecondsDesc = prometheus.NewDesc(collectors.Namespace+"_batch_statement_seconds_total",
		"Session-seconds the batch's own sessions spent in statements with a query_id (pg_stat_statements), from the wait sampler.",
		[]string{"batch"}, nil)
	droppedDesc = prometheus.NewDesc(collectors.Namespace+"_batch_names_dropped",
		"Batches with runs in telemetry.batch_runs left out of the batch metrics at its last read: more than --batch.max-batches are named.",
		nil, nil)
	elapsedDesc = prometheus.NewDesc(collectors.Namespace+"_batch_run_elapsed_seconds",
		"Seconds since the batch's run in progress began (absent between runs).", []string{"batch"}, nil)
	runInfoDesc = prometheus.NewDesc(collectors.Namespace+"_batch_run_info",
		"1 for the batch's run in progress, once recorded: its run_id in telemetry.batch_runs and its report page (report_url; absent without the report pages).",
		[]string{"batch", "run_id", "report_url"}, nil)
	usualDesc = prometheus.NewDesc(collectors.Namespace+"_batch_usual_duration_seconds",
		"How long the batch's runs usually take: the median (quantile 0.5) and 90th percentile (0.9) duration of its recent normal runs (telemetry.run_usual_duration), read when a run begins; absent before enough runs.",
		[]string{"batch", "quantile"}, nil)
	usualRunsDesc = prometheus.NewDesc(collectors.Namespace+"_batch_usual_duration_runs",
		"How many normal runs the batch's usual duration is taken from.", []string{"batch"}, nil)
)

// DefaultMaxBatches bounds the batches named by recorded runs that get series (--batch.max-batches):
// any role that may call batch_begin names a batch, and each is a label value of every batch metric.
const DefaultMaxBatches = 200

// Options configure a Tracker. A zero field is the exporter's default (its flag's).
type Options struct {
	Rules []Rule
	// QuietPeriod ends a detected run: no matching session active for this long; 0:
	// DefaultQuietPeriod.
	QuietPeriod time.Duration
	// RunsDB is the database whose telemetry.batch_runs is read: markers and exec runs (nil: runs are only detected).
	RunsDB *pgxpool.Pool
	// RefreshEvery is how often the open and finished runs are read; 0: DefaultRefreshEvery.
	RefreshEvery time.Duration
	// MaxBatches bounds the batches, beyond the rules', that recorded runs name (0: DefaultMaxBatches).
	// Those first seen keep their series until telemetry.batch_runs has no row of them.
	MaxBatches int
	// RecorderDB is the recorder's database, where detected runs are written into telemetry.batch_runs (nil: they stay in memory).
	RecorderDB *pgxpool.Pool
	// Trigger asks for a collection now (runner.Trigger): the sample tier at every wait sample
	// while a run is in progress, a snapshot at a detected run's boundaries, so that a short
	// run is seen sharply and the exporter stays cheap between runs.
	Trigger func(collectors.Tier)
	// ReportURL is the report page of a recorded run (nil: no report pages are served).
	ReportURL func(runID int64) string
	Logger    *slog.Logger
}

// Tracker follows each batch's runs and attributes sampled sessions to batches: a session
// belongs to the batch whose rule matches its application_name, or whose name it carries
// (the exec wrapper sets PGAPPNAME to the batch's name), or to an open recorded run that it
// began (telemetry.batch_begin) or whose beginning session's application_name it shares.
type Tracker struct {
	o            Options
	events       chan event
	refreshNow   chan struct{} // RefreshNow's, for Run
	start        time.Time
	readFailure  *repeatlog.Failure // of telemetry.batch_runs
	usualFailure *repeatlog.Failure // of telemetry.run_usual_duration

	// runsTable is set once telemetry.batch_runs is seen readable; Run's goroutine alone
	// touches it.
	runsTable bool

	mu      sync.Mutex
	batches map[string]*state
	// names are the batches by the application_names their sessions show (sessionNames).
	names    map[string]string
	counted  map[int64]time.Time // finished recorded runs already counted, by ended_at
	openRuns map[int64]*openRun  // recorded runs in progress, by run_id
	// outOfRange are the recorded runs skipped for times out of range, each logged once.
	// (Rows a writer could not add through batch_begin, so their number is the owner's.)
	outOfRange map[int64]bool
	// runWaits are the running batches' session-seconds, own and others', since the last take.
	runWaits map[collectors.BatchWait]float64 // the key's Seconds is 0
	// dropped is how many batches the last read left out (MaxBatches); limitLogged, whether
	// that was ever logged.
	dropped     int
	limitLogged bool
	// sampler is the wait sampler followed (Follow), told when batches run.
	sampler *collectors.WaitSampler
	// sampleTriggered is when a run last asked for a sample-tier collection.
	sampleTriggered time.Time
	// anyRunning is whether a batch ran at the last pace.
	anyRunning bool
}

// openRun is a recorded run in progress and the session that began it.
type openRun struct {
	batch        string
	source       string
	startedAt    time.Time
	pid          *int32
	backendStart *time.Time
	// beganBy is the role of the session that began it (nil: recorded before migration 0013, began_by).
	beganBy *string
	// applicationName is the beginning session's, once sampled: sessions sharing it are the
	// run's until it ends.
	applicationName string
}

// clientDefaultName tells an application_name that a client program or driver sets when the
// application sets none (libpq's fallback_application_name, JDBC's default): every psql or
// JDBC session has it, so a batch_begin session's sharing it makes no other session the run's.
func clientDefaultName(name string) bool {
	switch name {
	case "psql", "pgbench", "pg_dump", "pg_dumpall", "pg_restore", "vacuumdb", "reindexdb", "clusterdb",
		"pg_amcheck", "PostgreSQL JDBC Driver":
		return true
	}
	return strings.HasPrefix(name, "pgAdmin") || strings.HasPrefix(name, "DBeaver")
}

// began tells whether the sampled session is the one that began the run (a pid is reused,
// a pid with its backend_start is not).
func (r *openRun) began(w collectors.SessionWait) bool {
	return r.pid != nil && r.backendStart != nil && w.BackendStart != nil &&
		*r.pid == w.PID && r.backendStart.Equal(*w.BackendStart)
}

type state struct {
	// Detection.
	detecting  bool
	started    time.Time
	lastActive time.Time
	// Recorded runs open in telemetry.batch_runs.
	openRecorded int

	// detectedRunID is the detected run in progress once recorded (0: not yet, or none).
	detectedRunID int64
	// usual is the batch's usual duration, read for the run usualRunID when it began.
	usual      *usualDuration
	usualRunID int64

	runs         float64
	lastDuration *time.Duration
	sessions     int
	waits        map[[2]string]float64
	// statementSeconds is session-seconds in statements with a query_id.
	statementSeconds float64
}

// usualDuration is a row of telemetry.run_usual_duration.
type usualDuration struct {
	runs        int
	median, p90 float64
}

// event is a detected boundary to record.
type event struct {
	begin bool
	batch string
	at    time.Time
}

// The exporter's defaults: --batch.quiet-period, and how often it reads the recorded runs at
// the default --tier.sample-interval (runs begun by markers are read often enough to sample a
// short run at the sampler's pace).
const (
	DefaultQuietPeriod  = time.Minute
	DefaultRefreshEvery = 2 * time.Second
)

// WithDefaults fills the zero fields with the exporter's defaults.
func (o Options) WithDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.QuietPeriod = cmp.Or(o.QuietPeriod, DefaultQuietPeriod)
	o.RefreshEvery = cmp.Or(o.RefreshEvery, DefaultRefreshEvery)
	o.MaxBatches = cmp.Or(o.MaxBatches, DefaultMaxBatches)
	return o
}

// NewTracker builds a tracker; feed it with Follow (or Observe, a collectors.WaitObserver) and Run.
func NewTracker(o Options) *Tracker {
	o = o.WithDefaults()
	t := &Tracker{o: o, events: make(chan event, 64), refreshNow: make(chan struct{}, 1), start: time.Now(), readFailure: repeatlog.New(o.Logger), usualFailure: repeatlog.New(o.Logger),
		runWaits: map[collectors.BatchWait]float64{},
		batches:  map[string]*state{}, names: map[string]string{}, counted: map[int64]time.Time{}, openRuns: map[int64]*openRun{}, outOfRange: map[int64]bool{}}
	for _, r := range o.Rules {
		t.batch(r.Batch)
	}
	return t
}

// ruled tells whether a rule names the batch: its series stay whatever is recorded.
func (t *Tracker) ruled(name string) bool {
	for _, r := range t.o.Rules {
		if r.Batch == name {
			return true
		}
	}
	return false
}

func (t *Tracker) batch(name string) *state {
	s := t.batches[name]
	if s == nil {
		s = &state{waits: map[[2]string]float64{}}
		t.batches[name] = s
		for _, n := range sessionNames(name) {
			if _, taken := t.names[n]; !taken {
				t.names[n] = name
			}
		}
	}
	return s
}

// batchOf names the batch a session belongs to, or "": a rule's (its application_name and, where
// the rule names one, its role), the batch of an open run it began, or the batch whose name it
// carries (exec's PGAPPNAME, in the form the server shows it) or whose open run's beginning
// session's application_name it shares. By name alone a session of any role could be counted:
// while a marker run is open, only sessions of the role that began it are (markerRole).
func (t *Tracker) batchOf(w collectors.SessionWait) string {
	// The session that began a run is the run's first: its pid and backend_start cannot be
	// borrowed, while any role may name a batch after another's application_name.
	for _, r := range t.openRuns {
		if r.began(w) {
			return r.batch
		}
	}
	for _, r := range t.o.Rules {
		if r.Matches(w.ApplicationName, w.Usename) {
			return r.Batch
		}
	}
	if name, known := t.names[w.ApplicationName]; known && w.ApplicationName != "" && t.markerRole(name, w) {
		return name
	}
	for _, r := range t.openRuns {
		if r.applicationName != "" && r.applicationName == w.ApplicationName && t.markerRole(r.batch, w) {
			return r.batch
		}
	}
	return ""
}

// markerRole tells whether a session carrying the batch's name may be the batch's: always, but
// while a run of it begun by a marker (batch_begin) is open, only as the role that began it.
// (An exec run's commands may log in as another role than the wrapper's markers.)
func (t *Tracker) markerRole(batch string, w collectors.SessionWait) bool {
	for _, r := range t.openRuns {
		if r.batch == batch && r.source == "marker" && r.beganBy != nil && *r.beganBy != w.Usename {
			return false
		}
	}
	return true
}

// sessionNames are the forms pg_stat_activity shows an application_name set to name in: the
// server replaces each byte outside printable ASCII, by '?' on 15 and by \xNN from 16 on
// (pg_clean_ascii), and keeps NAMEDATALEN-1 (63) bytes of the result.
func sessionNames(name string) []string {
	var asked, escaped strings.Builder
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 32 || c > 126 {
			asked.WriteByte('?')
			fmt.Fprintf(&escaped, `\x%02x`, c)
		} else {
			asked.WriteByte(c)
			escaped.WriteByte(c)
		}
	}
	var out []string
	for _, n := range []string{name, asked.String(), escaped.String()} {
		if len(n) > maxSessionNameBytes {
			n = n[:maxSessionNameBytes]
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// maxSessionNameBytes is NAMEDATALEN-1: what pg_stat_activity keeps of an application_name.
const maxSessionNameBytes = 63

// Follow has the tracker take every sample of w, and w book each statement's seconds to the
// batch whose own session ran it.
func (t *Tracker) Follow(w *collectors.WaitSampler) {
	w.Observe(t.Observe)
	w.SessionBatches(t.sessionBatch)
	w.ReadIdleSessions(t.idleSessions)
	t.mu.Lock()
	t.sampler = w
	t.mu.Unlock()
}

// pace has the sampler read at its run interval while any batch runs (t.mu held). When the
// last run ends it asks for a sample-tier collection: the runs' last session-seconds
// (TakeRunWaits) are then written at once, not at the next scheduled one, up to two
// --tier.sample-interval away, while the run's diagnosis is asked for.
func (t *Tracker) pace() bool {
	running := slices.ContainsFunc(slices.Collect(maps.Values(t.batches)), (*state).running)
	if t.sampler != nil {
		t.sampler.BatchRunning(running)
	}
	if t.anyRunning && !running && t.o.Trigger != nil {
		t.o.Trigger(collectors.TierSample)
	}
	t.anyRunning = running
	return running
}

// idleSessions names the idle sessions that may be a running batch's own (batchOf tells which
// are): none between runs, so that the sampler does not read every idle session of a large
// server each interval for nothing.
func (t *Tracker) idleSessions() collectors.IdleSessions {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out collectors.IdleSessions
	for n, name := range t.names {
		if s := t.batches[name]; s != nil && s.running() { // names outlive a forgotten batch
			out.ApplicationNames = append(out.ApplicationNames, n)
		}
	}
	for _, r := range t.o.Rules {
		switch {
		case !t.batches[r.Batch].running():
		case r.User != "":
			out.Roles = append(out.Roles, r.User)
		default:
			out.All = true // an application_name pattern: matched here, not in SQL
		}
	}
	for _, r := range t.openRuns {
		if r.pid != nil {
			out.PIDs = append(out.PIDs, *r.pid)
		}
		if r.applicationName != "" {
			out.ApplicationNames = append(out.ApplicationNames, r.applicationName)
		}
	}
	return out
}

// sessionBatch names the batch a session is the own session of, or "".
func (t *Tracker) sessionBatch(w collectors.SessionWait) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.batchOf(w)
}

// Observe takes one wait sample: it books the batches' session-seconds and starts or ends
// detected runs.
func (t *Tracker) Observe(at time.Time, span time.Duration, waits []collectors.SessionWait, attributed []collectors.SessionTime) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.batches {
		s.sessions = 0
	}
	for _, w := range waits {
		for _, r := range t.openRuns {
			if r.began(w) && w.ApplicationName != "" && !clientDefaultName(w.ApplicationName) {
				r.applicationName = w.ApplicationName
			}
		}
	}
	for _, w := range waits {
		name := t.batchOf(w)
		if name == "" || w.State != collectors.SessionActive {
			continue // an idle own session is in the run's waits (splitRunWaits), not its metrics
		}
		s := t.batches[name]
		s.sessions += w.Count
		s.waits[[2]string{w.WaitEventType, w.WaitEvent}] += float64(w.Count) * span.Seconds()
	}
	for _, a := range attributed {
		if name := t.batchOf(a.SessionWait); name != "" && a.QueryID != 0 {
			t.batches[name].statementSeconds += a.Seconds
		}
	}
	boundary := false
	for _, r := range t.o.Rules {
		s := t.batches[r.Batch]
		switch {
		case s.sessions > 0 && !s.detecting:
			// The sample stands for the span before it (its session-seconds are booked so): a
			// run seen by one sample lasted that long, not zero.
			s.detecting, s.started, s.lastActive = true, at.Add(-span), at
			t.record(event{begin: true, batch: r.Batch, at: s.started})
			boundary = true
		case s.sessions > 0:
			s.lastActive = at
		case s.detecting && at.Sub(s.lastActive) >= t.o.QuietPeriod:
			s.detecting, s.detectedRunID = false, 0
			d := s.lastActive.Sub(s.started)
			s.runs++
			s.lastDuration = &d
			t.record(event{batch: r.Batch, at: s.lastActive})
			boundary = true
		}
	}
	// After detection: the sample that starts a detected run is the run's.
	t.splitRunWaits(span, waits)
	running := t.pace()
	if t.o.Trigger == nil {
		return
	}
	if boundary {
		t.o.Trigger(collectors.TierSnapshot)
	}
	// At most one a second however fast the sampler reads during the run: the sample tier's
	// rows stay what they were at the default --collector.waits.interval.
	if running && at.Sub(t.sampleTriggered) >= sampleTierInRunEvery {
		t.sampleTriggered = at
		t.o.Trigger(collectors.TierSample)
	}
}

// sampleTierInRunEvery spaces the sample-tier collections a run asks for.
const sampleTierInRunEvery = time.Second

// splitRunWaits books the sample's session-seconds, for every batch running, to its own
// sessions (by state, wait and the statement the sample shows: an idle one's last) or to the
// other non-idle sessions (by wait): what the run's findings judge. The sample's own seconds, at once: a session queued behind a
// lock for the whole run has no statement yet, and its seconds are the run's.
func (t *Tracker) splitRunWaits(span time.Duration, waits []collectors.SessionWait) {
	for name, s := range t.batches {
		if !s.running() {
			continue
		}
		for _, w := range waits {
			k := collectors.BatchWait{Batch: name, Own: t.batchOf(w) == name, State: w.State, WaitEventType: w.WaitEventType, WaitEvent: w.WaitEvent}
			if !k.Own && k.State != collectors.SessionActive {
				continue
			}
			if k.Own {
				k.QueryID, k.PID, k.Usename, k.Datname = w.QueryID, w.PID, w.Usename, w.Datname
				if w.BackendStart != nil {
					k.BackendStart = *w.BackendStart
				}
			}
			t.runWaits[k] += float64(w.Count) * span.Seconds()
		}
	}
}

// TakeRunWaits returns the running batches' session-seconds, own and others', booked since
// the previous call (the sample tier's collections carry them to the recorder).
func (t *Tracker) TakeRunWaits() []collectors.BatchWait {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]collectors.BatchWait, 0, len(t.runWaits))
	for k, v := range t.runWaits {
		k.Seconds = v
		out = append(out, k)
	}
	t.runWaits = map[collectors.BatchWait]float64{}
	return out
}

// running tells whether a run of the batch is in progress.
func (s *state) running() bool { return s.detecting || s.openRecorded > 0 }

// record queues a detected boundary for Run to write; it never blocks the sampler.
func (t *Tracker) record(e event) {
	if t.o.RecorderDB == nil {
		return
	}
	select {
	case t.events <- e:
	default:
		t.o.Logger.Warn("batch run not recorded: too many waiting", "batch", e.batch)
	}
}

// retryEvery is the pause before writing a detected boundary again.
const retryEvery = 5 * time.Second

// Run writes detected runs and reads the recorded ones until ctx ends. A boundary that cannot
// be written because the database is unreachable or not migrated yet is retried, in order.
func (t *Tracker) Run(ctx context.Context) {
	var tick <-chan time.Time
	if t.o.RunsDB != nil {
		ticker := time.NewTicker(t.o.RefreshEvery)
		defer ticker.Stop()
		tick = ticker.C
		t.refreshLogged(ctx)
	}
	var pending []event
	var retry <-chan time.Time
	flush := func() {
		for len(pending) > 0 {
			e := pending[0]
			err := t.write(ctx, e)
			if err != nil && retriable(err) && ctx.Err() == nil {
				t.o.Logger.Warn("cannot record a detected batch boundary yet; retrying", "batch", e.batch, "begin", e.begin, "err", err)
				retry = time.After(retryEvery)
				return
			}
			if err != nil {
				t.o.Logger.Warn("cannot record a detected batch boundary", "batch", e.batch, "begin", e.begin, "err", err)
			}
			pending = pending[1:]
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-t.events:
			if len(pending) >= cap(t.events) {
				t.o.Logger.Warn("batch run not recorded: too many waiting", "batch", pending[0].batch)
				pending = pending[1:]
			}
			pending = append(pending, e)
			if retry == nil {
				flush()
			}
		case <-retry:
			retry = nil
			flush()
		case <-tick:
			t.refreshLogged(ctx)
		case <-t.refreshNow:
			if t.o.RunsDB != nil {
				t.refreshLogged(ctx)
			}
		}
	}
}

// RefreshNow has Run read the recorded runs now, not at its next tick: a run has begun or
// ended (the recorder is told through telemetry_request_snapshot). It never blocks.
func (t *Tracker) RefreshNow() {
	select {
	case t.refreshNow <- struct{}{}:
	default: // one is already pending
	}
}

// errNotMigrated is a boundary that waits for the recorder's migrations.
var errNotMigrated = errors.New("the telemetry schema is not installed yet")

// retriable tells a passing failure (no connection; the schema not migrated yet) from one
// that writing again cannot cure.
func retriable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return true
	}
	return pgErr.Code == "42883" || pgErr.Code == "42P01" || pgErr.Code == "3F000" || strings.HasPrefix(pgErr.Code, "08")
}

func (t *Tracker) write(ctx context.Context, e event) error {
	if ready, err := t.schemaReady(ctx, t.o.RecorderDB); err != nil || !ready {
		return cmp.Or(err, errNotMigrated)
	}
	if !e.begin {
		_, err := t.o.RecorderDB.Exec(ctx, `SELECT telemetry.batch_end($1, 'ended', NULL, $2)`, e.batch, e.at)
		return err
	}
	var id int64
	if err := t.o.RecorderDB.QueryRow(ctx, `SELECT telemetry.batch_begin($1, 'detected', $2)`, e.batch, e.at).Scan(&id); err != nil {
		return err
	}
	t.mu.Lock()
	if s := t.batches[e.batch]; s.detecting && s.started.Equal(e.at) {
		s.detectedRunID = id
	}
	t.mu.Unlock()
	t.readUsualLogged(ctx, t.o.RecorderDB)
	return nil
}

func (t *Tracker) refreshLogged(ctx context.Context) {
	if err := t.Refresh(ctx); err != nil {
		t.readFailure.Failed("cannot read telemetry.batch_runs", err)
		return
	}
	t.readFailure.Succeeded("telemetry.batch_runs read again")
	t.readUsualLogged(ctx, t.o.RunsDB)
}

// sqlRunsReadable tells whether telemetry.batch_runs exists and this role may read it,
// through the catalog: asking the table itself would leave an ERROR in the server log, twice
// a minute, wherever the schema is not installed (or not yet migrated), and a DBA reads that log.
// Only a plain table in a schema and of an owner this role trusts (postgres.TrustedOwner).
var sqlRunsReadable = `SELECT EXISTS (SELECT FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'telemetry' AND c.relname = 'batch_runs' AND c.relkind IN ('r', 'p')
AND ` + postgres.TrustedOwner("n.nspowner") + ` AND ` + postgres.TrustedOwner("c.relowner") + `
AND pg_catalog.has_schema_privilege(n.oid, 'USAGE') AND pg_catalog.has_table_privilege(c.oid, 'SELECT'))`

// schemaReady tells whether telemetry.batch_runs can be read in the pool's database; once
// it can, the catalog is not asked again (a schema dropped later costs one error, then this
// asks again).
func (t *Tracker) schemaReady(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	if t.runsTable {
		return true, nil
	}
	err := pool.QueryRow(ctx, sqlRunsReadable).Scan(&t.runsTable)
	return t.runsTable, err
}

// SQLRecordedRuns reads the runs of markers and the exec wrapper that are open or ended
// since $1 (detected runs are this tracker's own). One cheap query per sample interval. A run
// whose times are out of range (telemetry.batch_runs_checked: 'infinity', the year 12000)
// comes with no times, to be skipped: it must not stop the reading of the others.
const SQLRecordedRuns = `SELECT run_id, batch, source, times_ok, CASE WHEN times_ok THEN started_at END,
	CASE WHEN times_ok THEN ended_at END, backend_pid, backend_start, began_by::text
FROM telemetry.batch_runs_checked WHERE source <> 'detected' AND (status = 'running' OR ended_at > $1)
ORDER BY ended_at NULLS LAST`

// countWindow is how far back finished runs are looked for: longer than any pause between
// two reads, short enough to keep the query small.
const countWindow = 10 * time.Minute

// Refresh reads the recorded runs: the open ones make their batch running, the newly
// finished ones count. Where the schema is not installed there is nothing to read.
func (t *Tracker) Refresh(ctx context.Context) error {
	if ready, err := t.schemaReady(ctx, t.o.RunsDB); err != nil || !ready {
		return err
	}
	since := time.Now().Add(-countWindow)
	if since.Before(t.start) {
		since = t.start
	}
	rows, _ := t.o.RunsDB.Query(ctx, SQLRecordedRuns, since)
	type run struct {
		id             int64
		batch, source  string
		timesOK        bool
		started, ended time.Time
		open           bool
		pid            *int32
		backendStart   *time.Time
		beganBy        *string
	}
	runs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (run, error) {
		var x run
		var started, ended *time.Time
		err := r.Scan(&x.id, &x.batch, &x.source, &x.timesOK, &started, &ended, &x.pid, &x.backendStart, &x.beganBy)
		if started != nil {
			x.started = *started
		}
		if ended == nil {
			x.open = true
		} else {
			x.ended = *ended
		}
		return x, err
	})
	var remaining []string
	if err == nil {
		remaining, err = t.recordedBatches(ctx)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") { // dropped since
		t.runsTable = false
		return nil
	}
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forgetBatches(remaining)
	// Open runs are let in first: a batch in progress is what its series are for.
	sort.SliceStable(runs, func(i, j int) bool { return runs[i].open && !runs[j].open })
	// A new batch gets series while fewer than MaxBatches beyond the rules' have them.
	recorded := t.recordedNames()
	leftOut := map[string]bool{}
	for _, r := range runs {
		if _, known := t.batches[r.batch]; known || !r.timesOK {
			continue
		}
		if len(recorded) < t.o.MaxBatches {
			t.batch(r.batch)
			recorded = append(recorded, r.batch)
		} else {
			leftOut[r.batch] = true
		}
	}
	t.noteDropped(leftOut)
	for _, s := range t.batches {
		s.openRecorded = 0
	}
	open := map[int64]*openRun{}
	var skipped []int64 // newly
	for _, r := range runs {
		if !r.timesOK {
			if !t.outOfRange[r.id] {
				t.outOfRange[r.id] = true
				skipped = append(skipped, r.id)
			}
			continue
		}
		if leftOut[r.batch] {
			continue
		}
		s := t.batch(r.batch)
		if r.open {
			s.openRecorded++
			open[r.id] = t.openRuns[r.id]
			if open[r.id] == nil {
				open[r.id] = &openRun{batch: r.batch, source: r.source, startedAt: r.started, pid: r.pid, backendStart: r.backendStart, beganBy: r.beganBy}
			}
			continue
		}
		if _, done := t.counted[r.id]; done {
			continue
		}
		t.counted[r.id] = r.ended
		d := r.ended.Sub(r.started)
		s.runs++
		s.lastDuration = &d
	}
	t.openRuns = open
	if len(skipped) > 0 { // one line for any number: a flood of such rows is not a flood of lines
		t.o.Logger.Warn("skipping recorded runs whose times are out of range (SELECT * FROM telemetry.batch_runs_out_of_range)",
			"runs", len(skipped), "run_ids", skipped[:min(len(skipped), 10)])
	}
	t.pace()
	for id, ended := range t.counted {
		if ended.Before(since) {
			delete(t.counted, id)
		}
	}
	return nil
}

// sqlBatchesWithRows keeps, of the batches named, those that telemetry.batch_runs still
// has a row of (an index probe each).
const sqlBatchesWithRows = `SELECT b FROM unnest($1::text[]) b
WHERE EXISTS (SELECT FROM telemetry.batch_runs r WHERE r.batch = b)`

// recordedNames are the batches with series that no rule names: recorded runs named them.
func (t *Tracker) recordedNames() []string {
	var names []string
	for name := range t.batches {
		if !t.ruled(name) {
			names = append(names, name)
		}
	}
	return names
}

// recordedBatches returns which of the batches known from recorded runs still have a row.
func (t *Tracker) recordedBatches(ctx context.Context) ([]string, error) {
	t.mu.Lock()
	known := t.recordedNames()
	t.mu.Unlock()
	if len(known) == 0 {
		return nil, nil
	}
	rows, _ := t.o.RunsDB.Query(ctx, sqlBatchesWithRows, known)
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// forgetBatches drops the series of the batches named by recorded runs alone whose rows are
// all gone, keeping the remaining ones'.
func (t *Tracker) forgetBatches(remaining []string) {
	keep := map[string]bool{}
	for _, name := range remaining {
		keep[name] = true
	}
	for _, name := range t.recordedNames() {
		if !keep[name] {
			delete(t.batches, name)
		}
	}
}

// noteDropped keeps the number of batches left out, and logs the first time any is.
func (t *Tracker) noteDropped(leftOut map[string]bool) {
	t.dropped = len(leftOut)
	if t.dropped == 0 || t.limitLogged {
		return
	}
	t.limitLogged = true
	example := ""
	for name := range leftOut {
		example = name
		break
	}
	t.o.Logger.Warn("more batches have recorded runs than --batch.max-batches: the others get no series (pgbatch_batch_names_dropped counts them; logged once)",
		"max_batches", t.o.MaxBatches, "left_out", t.dropped, "example", example)
}

// currentRun is the batch's run in progress: when it began and its run_id (0 while a
// detected run is not recorded yet). Of several open recorded runs, the latest.
func (t *Tracker) currentRun(name string, s *state) (began time.Time, runID int64, running bool) {
	if s.detecting {
		began, runID, running = s.started, s.detectedRunID, true
	}
	for id, r := range t.openRuns {
		if r.batch == name && (!running || r.startedAt.After(began)) {
			began, runID, running = r.startedAt, id, true
		}
	}
	return began, runID, running
}

// SQLUsualDuration reads how long a run's batch usually takes: one row once its baseline
// has enough normal runs (the SQL API defines which runs are normal).
const SQLUsualDuration = `SELECT baseline_runs, median_seconds, p90_seconds FROM telemetry.run_usual_duration($1)`

// readUsualLogged reads the usual duration of each batch whose run in progress is recorded and
// was not read for yet: once a run, when it begins, so a scrape never waits on the database.
func (t *Tracker) readUsualLogged(ctx context.Context, pool *pgxpool.Pool) {
	if pool == nil {
		return
	}
	t.mu.Lock()
	want := map[string]int64{}
	for name, s := range t.batches {
		if _, id, running := t.currentRun(name, s); running && id != 0 && id != s.usualRunID {
			want[name] = id
		}
	}
	t.mu.Unlock()
	for name, id := range want {
		var u *usualDuration
		rows, _ := pool.Query(ctx, SQLUsualDuration, id)
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (usualDuration, error) {
			var x usualDuration
			return x, r.Scan(&x.runs, &x.median, &x.p90)
		})
		if err != nil {
			t.usualFailure.Failed("cannot read the batches' usual durations (telemetry.run_usual_duration)", err)
			continue
		}
		t.usualFailure.Succeeded("the batches' usual durations read again")
		if len(got) > 0 {
			u = &got[0]
		}
		t.mu.Lock()
		if s := t.batches[name]; s != nil {
			s.usual, s.usualRunID = u, id
		}
		t.mu.Unlock()
	}
}

// Describe sends nothing: the batches are known only as they show up.
func (t *Tracker) Describe(chan<- *prometheus.Desc) {}

// Collect serves the batches' metrics from memory.
func (t *Tracker) Collect(ch chan<- prometheus.Metric) {
	t.mu.Lock()
	defer t.mu.Unlock()
	names := make([]string, 0, len(t.batches))
	for n := range t.batches {
		names = append(names, n)
	}
	sort.Strings(names)
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.GaugeValue, float64(t.dropped))
	for _, n := range names {
		s := t.batches[n]
		running := 0.0
		if s.running() {
			running = 1
		}
		ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, running, n)
		ch <- prometheus.MustNewConstMetric(runsDesc, prometheus.CounterValue, s.runs, n)
		if s.lastDuration != nil {
			ch <- prometheus.MustNewConstMetric(lastDurationDesc, prometheus.GaugeValue, s.lastDuration.Seconds(), n)
		}
		ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(s.sessions), n)
		for k, v := range s.waits {
			ch <- prometheus.MustNewConstMetric(waitDesc, prometheus.CounterValue, v, n, k[0], k[1])
		}
		ch <- prometheus.MustNewConstMetric(statementSecondsDesc, prometheus.CounterValue, s.statementSeconds, n)
		if began, runID, running := t.currentRun(n, s); running {
			ch <- prometheus.MustNewConstMetric(elapsedDesc, prometheus.GaugeValue, time.Since(began).Seconds(), n)
			if runID != 0 {
				var url string
				if t.o.ReportURL != nil {
					url = t.o.ReportURL(runID)
				}
				ch <- prometheus.MustNewConstMetric(runInfoDesc, prometheus.GaugeValue, 1, n, strconv.FormatInt(runID, 10), url)
			}
		}
		if u := s.usual; u != nil {
			ch <- prometheus.MustNewConstMetric(usualDesc, prometheus.GaugeValue, u.median, n, "0.5")
			ch <- prometheus.MustNewConstMetric(usualDesc, prometheus.GaugeValue, u.p90, n, "0.9")
			ch <- prometheus.MustNewConstMetric(usualRunsDesc, prometheus.GaugeValue, float64(u.runs), n)
		}
	}
}
