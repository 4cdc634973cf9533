package collectors

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pg-batch-exporter/pg-batch-exporter/internal/repeatlog"
)

func init() {
	// The wait sampler runs on its own schedule (--collector.waits.interval), not in a tier.
	register("waits", TierSample, true, "High-frequency wait sampler: session-seconds by wait event (ASH without an extension)", nil)
}

var (
	waitSecondsDesc = newDesc("wait_event_seconds_total",
		"Session-seconds non-idle client sessions spent in each wait, sampled from pg_stat_activity; rate() is the average number of active sessions in that wait. Active sessions not waiting count as Running/CPU.",
		"wait_event_type", "wait_event")
	waitUnattributedDesc = newDesc("wait_unattributed_seconds_total",
		"Of pgbatch_wait_event_seconds_total, the session-seconds no statement (query_id) could be found for, in the sample or a neighbouring one of the same query.")
)

// SQLSessionWaits is the wait sampler's query: non-idle client sessions (the exporter's own
// left out), one row each, with the statement they run (query_id: 0 where the server computes
// none, or before it knows it) and, for a session waiting on a lock before its query_id, the
// query's text ($1 bytes at most; what a statement too short to be sampled once its lock is
// granted is found by: see StatementWait). Idle sessions only where $5 (every one) or where
// their application_name ($2), role ($3) or pid ($4) may make them a running batch's own
// (IdleSessions): between runs an idle session costs the reading nothing but its filter. An
// idle session's query_id is its last statement's.
var SQLSessionWaits = `SELECT pid, coalesce(application_name, ''), coalesce(usename::text, ''), coalesce(datname::text, ''),
	CASE WHEN ` + SQLActiveState("state") + ` THEN 'active' ELSE state END,
	coalesce(wait_event_type, 'Running'), coalesce(wait_event, 'CPU'),
	coalesce(query_id, 0), query_start, backend_start,
	CASE WHEN query_id IS NULL AND wait_event_type = 'Lock' THEN pg_catalog.left(query, $1) ELSE '' END
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND (` + SQLActiveState("state") + `
		OR (state IS NOT NULL AND ($5 OR application_name = ANY ($2) OR usename = ANY ($3) OR pid = ANY ($4))))
	AND ` + sqlNotOwnSession

// IdleSessions are the idle sessions the wait sampler reads besides the non-idle ones: those
// that may be a running batch's own, by application_name, role or pid, or every one (All: a
// running batch's rule matches application_names by a pattern). The zero value: none.
type IdleSessions struct {
	ApplicationNames []string
	Roles            []string
	PIDs             []int32
	All              bool
}

// SessionActive is SessionWait.State of a session that is not idle (pg_stat_activity's
// active, fastpath function call, ...).
const SessionActive = "active"

// SessionWait is one session in the wait sampler's reading.
type SessionWait struct {
	PID             int32
	ApplicationName string
	Usename         string // the role it logged in as
	Datname         string // its database
	// State is SessionActive, or pg_stat_activity's idle state (idle, idle in transaction,
	// idle in transaction (aborted)) of a batch's own session read between its statements.
	State         string
	WaitEventType string
	WaitEvent     string
	QueryID       int64 // 0: unknown
	QueryStart    *time.Time
	BackendStart  *time.Time // tells a reused pid apart
	QueryText     string     // only of a session waiting on a lock without a query_id
	Count         int        // sessions this stands for (1 from the sampler)
}

// SessionTime is the session-seconds one sampled session stands for, with its statement:
// QueryID is resolved from a neighbouring sample of the same query where the sample had none,
// and stays 0 where neither had one.
type SessionTime struct {
	SessionWait
	Seconds float64
	// Batch is the batch whose own session this was when sampled ("": none): what tells a
	// run's statements from other sessions' (SessionBatches).
	Batch string
	// BeforeQueryID: the query had no query_id yet, resolved from a later sample. The server
	// reports it after parse analysis, where a statement first locks its tables, and
	// pg_stat_statements' times leave that phase out: these seconds add to them.
	BeforeQueryID bool
}

// WaitObserver sees each wait sample with the time it stands for (batch attribution uses it),
// the idle sessions read (ReadIdleSessions) among its sessions by their State, and the
// session-seconds attributed to statements by this sample: those of this sample
// whose statement is known, and those of the previous sample that waited for this one.
type WaitObserver func(at time.Time, span time.Duration, waits []SessionWait, attributed []SessionTime)

type waitKey struct{ typ, event string }

type statementWaitKey struct {
	batch         string
	queryID       int64
	beforeQueryID bool
	queryText     string
	waitKey
}

// StatementWait is session-seconds spent in one wait while running one statement, BeforeQueryID
// as in SessionTime. QueryID 0: no statement could be found, and QueryText is the text of a
// query that waited on a lock and never showed its query_id (a short statement queued behind a
// lock while parsing), which statement analysis matches to pg_stat_statements' texts.
type StatementWait struct {
	Batch         string // the batch whose own sessions these were, "" for every other session
	QueryID       int64
	WaitEventType string
	WaitEvent     string
	BeforeQueryID bool
	QueryText     string
	Seconds       float64
}

// unresolvedKey is a session's wait while its query has no query_id (one query per pid at a
// time: a new query_start ends the old one's wait for a query_id).
type unresolvedKey struct {
	pid int32
	waitKey
}

// runningQuery is what ties a sample without a query_id to its neighbour's.
type runningQuery struct {
	queryStart time.Time
	queryID    int64
}

// WaitSampler turns frequent pg_stat_activity samples into session-seconds per wait: each
// sample's count times the time since the previous sample.
type WaitSampler struct {
	pool     *pgxpool.Pool
	interval time.Duration
	// runInterval spaces the readings while a batch runs (0: interval): a statement taking a
	// second of a run is seen.
	runInterval  time.Duration
	batchRunning atomic.Bool
	paced        chan struct{} // the pace changed: the schedule's wait is cut short
	logger       *slog.Logger

	mu        sync.Mutex
	last      time.Time
	lastErr   error
	lastTook  time.Duration
	totals    map[waitKey]float64
	pending   map[waitKey]float64
	observers []WaitObserver
	// sessionBatch names the batch a sampled session is the own session of ("": none).
	sessionBatch func(SessionWait) string
	// idleSessions names the idle sessions read besides the non-idle (nil: none).
	idleSessions func() IdleSessions

	// Statement attribution.
	running      map[int32]runningQuery         // the previous sample's sessions with a query_id
	unresolved   map[unresolvedKey]*SessionTime // seconds of queries without a query_id so far
	byStatement  map[statementWaitKey]float64
	unattributed float64 // cumulative session-seconds left without a statement

	// locks follows lock waits from the lock samples taken when a sample sees one; nil: not
	// followed (the locks collector is off).
	locks       *lockEpisodes
	lockFailure *repeatlog.Failure

	// touched are the relations batches' own sessions held locks on since the last sample-tier
	// collection; known is every relation seen so far (at most maxKnownRelations), whose state
	// each requested snapshot reads.
	touched      map[BatchRelation]struct{}
	known        map[uint32]struct{}
	touchFailure *repeatlog.Failure
}

// maxKnownRelations bounds the relations whose state a requested snapshot reads: a batch
// creating a new table each run would otherwise grow the list for ever.
const maxKnownRelations = 1000

// NewWaitSampler samples through the pool every interval.
func NewWaitSampler(pool *pgxpool.Pool, interval time.Duration, logger *slog.Logger) *WaitSampler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &WaitSampler{pool: pool, interval: interval, paced: make(chan struct{}, 1), logger: logger, lockFailure: repeatlog.New(logger),
		totals: map[waitKey]float64{}, pending: map[waitKey]float64{}, byStatement: map[statementWaitKey]float64{},
		touched: map[BatchRelation]struct{}{}, known: map[uint32]struct{}{}, touchFailure: repeatlog.New(logger)}
}

// BatchRunning tells the sampler whether a batch runs (the batch tracker does, at each
// sample and each read of the recorded runs): it then reads every RunnerOptions.RunWaitSampleEvery.
func (w *WaitSampler) BatchRunning(running bool) {
	if w.batchRunning.Swap(running) != running {
		select {
		case w.paced <- struct{}{}:
		default:
		}
	}
}

// Interval is the time between readings now: the run interval while a batch runs.
func (w *WaitSampler) Interval() time.Duration {
	if w.batchRunning.Load() && w.runInterval > 0 {
		return min(w.runInterval, w.interval)
	}
	return w.interval
}

// followLockWaits makes each sample that sees a client session waiting on a lock take a lock
// sample, and follow each lock wait as a LockEpisode.
func (w *WaitSampler) followLockWaits() { w.locks = newLockEpisodes() }

// Observe adds an observer of every sample.
func (w *WaitSampler) Observe(o WaitObserver) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.observers = append(w.observers, o)
}

// SessionBatches has each sample's statement seconds booked with the batch whose own session
// they were (f, the batch tracker's rule): a run's statements are those its own sessions ran.
func (w *WaitSampler) SessionBatches(f func(SessionWait) string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sessionBatch = f
}

// ReadIdleSessions has each sample also read the idle sessions f names (the batch tracker's
// running batches' own sessions between statements): they go to the observers only, with
// their State; the wait totals and statement seconds stay those of the non-idle sessions.
func (w *WaitSampler) ReadIdleSessions(f func() IdleSessions) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.idleSessions = f
}

// Sample reads pg_stat_activity once and adds count × elapsed to each wait. The span a sample
// stands for is capped at two intervals, so an outage is not booked to the waits seen after it.
// (The runner samples on its own schedule, each sample standing for its stratum: see every.)
func (w *WaitSampler) Sample(ctx context.Context) error {
	return w.sample(ctx, func(now time.Time) time.Duration {
		if w.last.IsZero() {
			return w.Interval()
		}
		return min(now.Sub(w.last), 2*w.Interval())
	})
}

// sample reads pg_stat_activity once and books count × spanAt(the reading's time) to each
// wait; spanAt is called with w.mu held. Where lock waits are followed and a client session
// waits on a lock, it takes a lock sample right after.
func (w *WaitSampler) sample(ctx context.Context, spanAt func(now time.Time) time.Duration) error {
	start := time.Now()
	sessions, err := w.read(ctx)
	now := time.Now()
	waits := slices.DeleteFunc(slices.Clone(sessions), func(s SessionWait) bool { return s.State != SessionActive })
	batches := w.batchesOf(waits)
	touched := w.readTouched(ctx, waits, batches)
	lockSample := err == nil && w.locks != nil && slices.ContainsFunc(waits, func(s SessionWait) bool { return s.WaitEventType == "Lock" })
	var locks []LockWait
	var blockers map[int32]string
	var lockErr error
	lockedAt := now
	if lockSample {
		locks, lockErr = readLockWaits(ctx, w.pool)
		lockedAt = time.Now()
		blockers = w.blockingBatches(locks, waits)
		if lockErr != nil {
			w.lockFailure.Failed("lock sample failed: lock waits are followed again once it works", lockErr)
		} else {
			w.lockFailure.Succeeded("lock samples work again")
		}
	}
	w.mu.Lock()
	w.lastErr, w.lastTook = err, time.Since(start)
	if err != nil {
		w.mu.Unlock()
		return err
	}
	switch {
	case lockSample:
		w.locks.samples++
		if lockErr == nil { // else the waits are left as they were: the next sample tells
			w.locks.observe(locks, blockers, lockedAt)
		}
	case w.locks != nil:
		w.locks.observe(nil, nil, now)
	}
	span := spanAt(now)
	w.last = now
	for _, s := range waits {
		k := waitKey{s.WaitEventType, s.WaitEvent}
		secs := float64(s.Count) * span.Seconds()
		w.totals[k] += secs
		w.pending[k] += secs
	}
	attributed := w.attribute(waits, batches, span)
	w.noteTouched(touched)
	observers := w.observers
	w.mu.Unlock()
	for _, o := range observers {
		o(now, span, sessions, attributed)
	}
	return nil
}

// attribute books this sample's session-seconds by statement. A session without a query_id
// (a lock taken while parsing, some IPC waits) takes that of the same query (pid and
// query_start) in the previous sample or, failing that, in a later one: its seconds wait
// while the query goes on without a query_id, and what the query never shows one for is
// counted as unattributed.
func (w *WaitSampler) attribute(waits []SessionWait, batches []string, span time.Duration) []SessionTime {
	running := make(map[int32]runningQuery, len(waits))
	current := make(map[int32]SessionWait, len(waits))
	for _, s := range waits {
		current[s.PID] = s
		if s.QueryID != 0 && s.QueryStart != nil {
			running[s.PID] = runningQuery{*s.QueryStart, s.QueryID}
		}
	}
	var out []SessionTime
	unresolved := map[unresolvedKey]*SessionTime{}
	for k, u := range w.unresolved {
		if id := sameQuery(running, u.SessionWait); id != 0 {
			u.QueryID, u.BeforeQueryID = id, true
		} else if now, ok := current[u.PID]; ok && now.QueryStart != nil && u.QueryStart != nil && now.QueryStart.Equal(*u.QueryStart) {
			unresolved[k] = u // the same query, still without a query_id
			continue
		}
		out = append(out, *u)
	}
	for i, s := range waits {
		t := SessionTime{SessionWait: s, Seconds: float64(s.Count) * span.Seconds(), Batch: batches[i]}
		if t.QueryID == 0 {
			t.QueryID = sameQuery(w.running, s)
		}
		if t.QueryID != 0 {
			out = append(out, t)
			continue
		}
		k := unresolvedKey{s.PID, waitKey{s.WaitEventType, s.WaitEvent}}
		if u := unresolved[k]; u != nil {
			u.Seconds += t.Seconds
			// A wait begun before the tracker knew the session's run is the run's once it does.
			u.Batch = cmp.Or(u.Batch, t.Batch)
		} else {
			unresolved[k] = &t
		}
	}
	w.running, w.unresolved = running, unresolved
	for _, t := range out {
		k := statementWaitKey{batch: t.Batch, queryID: t.QueryID, beforeQueryID: t.BeforeQueryID, waitKey: waitKey{t.WaitEventType, t.WaitEvent}}
		if t.QueryID == 0 {
			k.queryText = t.QueryText
		}
		w.byStatement[k] += t.Seconds
		if t.QueryID == 0 {
			w.unattributed += t.Seconds
		}
	}
	return out
}

// batchesOf names each session's batch, outside w.mu: the tracker's rule takes its own lock.
func (w *WaitSampler) batchesOf(waits []SessionWait) []string {
	w.mu.Lock()
	f := w.sessionBatch
	w.mu.Unlock()
	out := make([]string, len(waits))
	if f != nil {
		for i, s := range waits {
			out[i] = f(s)
		}
	}
	return out
}

// blockingBatches names the batch of each blocking session that is a batch's own, by pid: as
// this sample saw it where it did (a blocker idle in its transaction is not sampled: its pid and
// application_name and role then).
func (w *WaitSampler) blockingBatches(locks []LockWait, waits []SessionWait) map[int32]string {
	sessions := make([]SessionWait, 0, len(locks))
	for _, l := range locks {
		if l.BlockingPID == 0 {
			continue // a prepared transaction: no session, no batch's
		}
		s := SessionWait{PID: l.BlockingPID}
		if i := slices.IndexFunc(waits, func(x SessionWait) bool { return x.PID == l.BlockingPID }); i >= 0 {
			s = waits[i]
		} else {
			if l.BlockingApp != nil {
				s.ApplicationName = *l.BlockingApp
			}
			if l.BlockingUser != nil {
				s.Usename = *l.BlockingUser
			}
		}
		sessions = append(sessions, s)
	}
	out := map[int32]string{}
	for i, name := range w.batchesOf(sessions) {
		if name != "" {
			out[sessions[i].PID] = name
		}
	}
	return out
}

// readTouched reads the relations the batches' own sessions of this reading hold locks on
// (SQLTouchedRelations): one query, only where a batch's session was seen. A failure is
// logged once and leaves this reading's relations out.
func (w *WaitSampler) readTouched(ctx context.Context, waits []SessionWait, batches []string) []BatchRelation {
	own := map[int32]SessionWait{}
	var pids []int32
	for i, s := range waits {
		if batches[i] != "" {
			own[s.PID] = s
			pids = append(pids, s.PID)
		}
	}
	if len(pids) == 0 {
		return nil
	}
	rows, err := w.pool.Query(ctx, SQLTouchedRelations, pids)
	var out []BatchRelation
	if err == nil {
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (BatchRelation, error) {
			var pid int32
			var b BatchRelation
			err := r.Scan(&pid, &b.Relid, &b.Schemaname, &b.Relname)
			s := own[pid]
			b.QueryID, b.Usename = s.QueryID, s.Usename
			b.Batch = batches[slices.IndexFunc(waits, func(x SessionWait) bool { return x.PID == pid })]
			return b, err
		})
	}
	if err != nil {
		w.touchFailure.Failed("reading the relations a batch's sessions lock failed: they are read again at the next reading", err)
		return nil
	}
	w.touchFailure.Succeeded("reading the relations a batch's sessions lock works again")
	return out
}

// noteTouched adds a reading's relations to those of the next sample-tier collection and to
// the known ones; w.mu held.
func (w *WaitSampler) noteTouched(touched []BatchRelation) {
	for _, b := range touched {
		w.touched[b] = struct{}{}
		if len(w.known) < maxKnownRelations {
			w.known[b.Relid] = struct{}{}
		}
	}
}

// takeBatchRelations returns the relations batches touched since the previous call.
func (w *WaitSampler) takeBatchRelations() []BatchRelation {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]BatchRelation, 0, len(w.touched))
	for b := range w.touched {
		out = append(out, b)
	}
	w.touched = map[BatchRelation]struct{}{}
	slices.SortFunc(out, func(a, b BatchRelation) int {
		return cmp.Or(cmp.Compare(a.Batch, b.Batch), cmp.Compare(a.Relid, b.Relid), cmp.Compare(a.QueryID, b.QueryID), cmp.Compare(a.Usename, b.Usename))
	})
	return out
}

// TouchedRelations are the relations batches' own sessions were seen holding locks on since
// the exporter started (Config.TouchedRelations).
func (w *WaitSampler) TouchedRelations() []uint32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]uint32, 0, len(w.known))
	for relid := range w.known {
		out = append(out, relid)
	}
	slices.Sort(out)
	return out
}

// sameQuery is the query_id of s's query in another sample, or 0.
func sameQuery(running map[int32]runningQuery, s SessionWait) int64 {
	if r, ok := running[s.PID]; ok && s.QueryStart != nil && r.queryStart.Equal(*s.QueryStart) {
		return r.queryID
	}
	return 0
}

// waitQueryTextBytes bounds a lock-waiting query's text: track_activity_query_size's default,
// which pg_stat_activity truncates to anyway.
const waitQueryTextBytes = 1024

func (w *WaitSampler) read(ctx context.Context) ([]SessionWait, error) {
	w.mu.Lock()
	f := w.idleSessions
	w.mu.Unlock()
	var idle IdleSessions
	if f != nil {
		idle = f()
	}
	// A nil list is NULL: = ANY (NULL) matches nothing.
	rows, err := w.pool.Query(ctx, SQLSessionWaits, waitQueryTextBytes, idle.ApplicationNames, idle.Roles, idle.PIDs, idle.All)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoConnection, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (SessionWait, error) {
		s := SessionWait{Count: 1}
		err := r.Scan(&s.PID, &s.ApplicationName, &s.Usename, &s.Datname, &s.State, &s.WaitEventType, &s.WaitEvent, &s.QueryID, &s.QueryStart, &s.BackendStart, &s.QueryText)
		return s, err
	})
}

func (w *WaitSampler) lastResult() (ok bool, took time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr == nil && !w.last.IsZero(), w.lastTook
}

// TakeSinceLast returns the session-seconds accumulated since the previous call, by wait and
// by statement and wait, and starts anew.
func (w *WaitSampler) TakeSinceLast() ([]WaitTime, []StatementWait) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := sortedWaits(w.pending)
	w.pending = map[waitKey]float64{}
	byStatement := make([]StatementWait, 0, len(w.byStatement))
	for k, v := range w.byStatement {
		byStatement = append(byStatement, StatementWait{Batch: k.batch, QueryID: k.queryID, WaitEventType: k.typ, WaitEvent: k.event,
			BeforeQueryID: k.beforeQueryID, QueryText: k.queryText, Seconds: v})
	}
	w.byStatement = map[statementWaitKey]float64{}
	sort.Slice(byStatement, func(i, j int) bool {
		a, b := byStatement[i], byStatement[j]
		if a.Batch != b.Batch {
			return a.Batch < b.Batch
		}
		if a.QueryID != b.QueryID {
			return a.QueryID < b.QueryID
		}
		if a.BeforeQueryID != b.BeforeQueryID {
			return !a.BeforeQueryID
		}
		return a.WaitEventType+"\x00"+a.WaitEvent+"\x00"+a.QueryText < b.WaitEventType+"\x00"+b.WaitEvent+"\x00"+b.QueryText
	})
	return out, byStatement
}

// takeLockEpisodes returns the lock waits that ended since the previous call.
func (w *WaitSampler) takeLockEpisodes() []LockEpisode {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.locks == nil {
		return nil
	}
	return w.locks.take()
}

// stopLockEpisodes ends the lock waits still open as still waiting (the sampler stops), seen
// last by a lock sample taken now where any were open, and returns how many episodes wait to
// be taken.
func (w *WaitSampler) stopLockEpisodes(ctx context.Context) int {
	if w.locks == nil {
		return 0
	}
	w.mu.Lock()
	open := len(w.locks.open) > 0
	w.mu.Unlock()
	if open {
		locks, err := readLockWaits(ctx, w.pool)
		blockers := w.blockingBatches(locks, nil) // before w.mu: it takes it
		w.mu.Lock()
		w.locks.samples++
		if err == nil { // else they end where the last sample saw them
			w.locks.observe(locks, blockers, time.Now())
		}
		w.mu.Unlock()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.locks.stop()
}

// Unattributed is the cumulative session-seconds no statement was found for.
func (w *WaitSampler) Unattributed() float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.unattributed
}

// Totals returns the cumulative session-seconds per wait.
func (w *WaitSampler) Totals() []WaitTime {
	w.mu.Lock()
	defer w.mu.Unlock()
	return sortedWaits(w.totals)
}

func sortedWaits(m map[waitKey]float64) []WaitTime {
	out := make([]WaitTime, 0, len(m))
	for k, v := range m {
		out = append(out, WaitTime{WaitEventType: k.typ, WaitEvent: k.event, Seconds: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].WaitEventType != out[j].WaitEventType {
			return out[i].WaitEventType < out[j].WaitEventType
		}
		return out[i].WaitEvent < out[j].WaitEvent
	})
	return out
}

// Emit exports the cumulative totals, read live at scrape time.
func (w *WaitSampler) Emit(ch chan<- prometheus.Metric) {
	for _, t := range w.Totals() {
		counter(ch, waitSecondsDesc, t.Seconds, t.WaitEventType, t.WaitEvent)
	}
	counter(ch, waitUnattributedDesc, w.Unattributed())
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.locks != nil {
		w.locks.emit(ch)
	}
}
