package collectors

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/internal/repeatlog"
)

// Consumer receives every successful collection (the recorder is one).
type Consumer func(*Collection)

// Runner collects each tier on its own schedule and keeps the latest collection of each in
// memory: a scrape reads from here and never queries the database.
type Runner struct {
	pool       *pgxpool.Pool
	logger     *slog.Logger
	collectors map[Tier][]Named
	intervals  map[Tier]time.Duration
	waits      *WaitSampler // nil when --no-collector.waits
	trigger    map[Tier]chan struct{}

	mu          sync.RWMutex
	consumers   []Consumer
	latest      map[Tier]*Collection
	lastSuccess map[Tier]time.Time
	up          bool
	down        *repeatlog.Failure // the server cannot be reached
	takeBatch   func() []BatchWait // the batch tracker's, once set
	server      Server
	// requested: a snapshot was asked for (Trigger); the next one to start is Requested.
	requested atomic.Bool
}

// RunnerOptions configures a Runner. A zero field is the exporter's default (its flag's).
type RunnerOptions struct {
	Pool   *pgxpool.Pool
	Logger *slog.Logger
	// Selection is the collectors to run; nil: those on by default.
	Selection *Selection
	Config    Config
	// SampleEvery, SnapshotEvery and WaitSampleEvery space the sample tier, the snapshot
	// tier and the wait sampler (0: DefaultSampleEvery, DefaultSnapshotEvery,
	// DefaultWaitSampleEvery).
	SampleEvery     time.Duration
	SnapshotEvery   time.Duration
	WaitSampleEvery time.Duration
	// RunWaitSampleEvery spaces the wait sampler while a batch runs (WaitSampler.BatchRunning),
	// so that a statement taking a second of the run is seen; 0: DefaultRunWaitSampleEvery.
	RunWaitSampleEvery time.Duration
}

// The exporter's defaults (--tier.sample-interval, --tier.snapshot-interval,
// --collector.waits.interval, --collector.waits.run-interval), which a zero field of
// RunnerOptions stands for.
const (
	DefaultSampleEvery     = 30 * time.Second
	DefaultSnapshotEvery   = time.Minute
	DefaultWaitSampleEvery = time.Second
	// DefaultRunWaitSampleEvery: at 100 sessions the sampler then costs under 1% of a core
	// while a batch runs (docs/performance.md, wait sampler cost), and a statement of a second
	// is seen about four times.
	DefaultRunWaitSampleEvery = 250 * time.Millisecond
)

// WithDefaults fills the zero fields with the exporter's defaults.
func (o RunnerOptions) WithDefaults() RunnerOptions {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Selection == nil {
		o.Selection = DefaultSelection()
	}
	o.Config.Statements = o.Config.Statements.WithDefaults()
	o.SampleEvery = cmp.Or(o.SampleEvery, DefaultSampleEvery)
	o.SnapshotEvery = cmp.Or(o.SnapshotEvery, DefaultSnapshotEvery)
	o.WaitSampleEvery = cmp.Or(o.WaitSampleEvery, DefaultWaitSampleEvery)
	o.RunWaitSampleEvery = cmp.Or(o.RunWaitSampleEvery, DefaultRunWaitSampleEvery)
	return o
}

// NewRunner builds the selected collectors of both tiers.
func NewRunner(o RunnerOptions) *Runner {
	o = o.WithDefaults()
	o.Config.Logger = o.Logger
	var waits *WaitSampler
	if o.Selection.Enabled("waits") {
		waits = NewWaitSampler(o.Pool, o.WaitSampleEvery, o.Logger)
		waits.runInterval = o.RunWaitSampleEvery
		if o.Selection.Enabled("locks") {
			waits.followLockWaits()
		}
		o.Config.TouchedRelations = waits.TouchedRelations
	}
	r := &Runner{
		waits:  waits,
		pool:   o.Pool,
		logger: o.Logger,
		down:   repeatlog.New(o.Logger),
		collectors: map[Tier][]Named{
			TierSample:   o.Selection.Build(TierSample, o.Config),
			TierSnapshot: o.Selection.Build(TierSnapshot, o.Config),
		},
		intervals:   map[Tier]time.Duration{TierSample: o.SampleEvery, TierSnapshot: o.SnapshotEvery},
		trigger:     map[Tier]chan struct{}{TierSample: make(chan struct{}, 1), TierSnapshot: make(chan struct{}, 1)},
		latest:      map[Tier]*Collection{},
		lastSuccess: map[Tier]time.Time{},
	}
	return r
}

// Subscribe adds a consumer of every successful collection.
func (r *Runner) Subscribe(c Consumer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.consumers = append(r.consumers, c)
}

// Waits is the wait sampler, or nil when it is disabled.
func (r *Runner) Waits() *WaitSampler { return r.waits }

// Trigger asks for a collection of the tier now (for example at a batch's boundaries).
func (r *Runner) Trigger(t Tier) {
	if t == TierSnapshot {
		r.requested.Store(true)
	}
	select {
	case r.trigger[t] <- struct{}{}:
	default: // one is already pending
	}
}

// schedule is one thing the runner does on its own clock: a tier's collection or the wait
// sampler's reading. run gets the time the run stands for (see every).
type schedule struct {
	interval func() time.Duration // may change between runs (the wait sampler's, while a batch runs)
	// instant places each run in its interval-long stratum (nil: at its start). What samples
	// session states runs at a random instant (randomInstant): it must not lock onto jobs that
	// fire on the second.
	instant func(interval time.Duration) time.Duration
	trigger <-chan struct{}
	// repace says the interval changed: the wait for a stratum not yet begun is cut short.
	repace <-chan struct{}
	run    func(ctx context.Context, span time.Duration) error
}

// randomInstant is a uniformly random instant of a stratum.
func randomInstant(interval time.Duration) time.Duration { return rand.N(interval) }

func (r *Runner) schedules() []schedule {
	tier := func(t Tier) func(context.Context, time.Duration) error {
		return func(ctx context.Context, _ time.Duration) error { _, err := r.Collect(ctx, t); return err }
	}
	fixed := func(t Tier) func() time.Duration { return func() time.Duration { return r.intervals[t] } }
	out := []schedule{
		// The sample tier counts sessions by state, as the wait sampler does.
		{interval: fixed(TierSample), instant: randomInstant, trigger: r.trigger[TierSample], run: tier(TierSample)},
		{interval: fixed(TierSnapshot), trigger: r.trigger[TierSnapshot], run: tier(TierSnapshot)},
	}
	if r.waits != nil {
		out = append(out, schedule{interval: r.waits.Interval, instant: randomInstant, repace: r.waits.paced, run: func(ctx context.Context, span time.Duration) error {
			return r.setUp(r.waits.sample(ctx, func(time.Time) time.Duration { return span }), "waits")
		}})
	}
	return out
}

// Run collects both tiers and samples waits until ctx ends. A collection under way then
// finishes (bounded by statement_timeout) rather than being cancelled: a cancelled query is
// an ERROR in the server's log, which the DBA reads. Lock waits the wait sampler followed
// since the last sample-tier collection go with one more, those still going on as still
// waiting, where a last lock sample sees them.
func (r *Runner) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range r.schedules() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			every(ctx, s)
		}()
	}
	wg.Wait()
	if r.waits != nil && r.waits.stopLockEpisodes(context.WithoutCancel(ctx)) > 0 {
		_, _ = r.Collect(context.WithoutCancel(ctx), TierSample) // a failure is logged
	}
}

// every runs s once in each interval-long stratum of time from now on, at the instant of it
// s.instant says. Each run stands for its own stratum and any missed since the previous
// successful run, at most two (an outage is not booked to what is seen after it). Stratified
// this way a sample estimates the time spent in a state without bias whatever the workload's
// period; weighting by the actual time since the previous instant would not (a wait late in
// each period would count about 30% too much). A new pace begins at once in a stratum whose
// run is still due: that run, at its instant, stands for the part of its stratum before the
// change, which keeps the estimate unbiased (had it come before the change, it stood for the
// whole stratum); restarting the strata from the stratum's start lost that part (at a batch's
// start, up to a second of its first statement). A stratum already run keeps its pace to its
// end, and strata a slow run overran at the old pace go with the first run at the new one (at
// most one). After a failure it retries sooner than the interval might, with exponential
// back-off from 1s, but never more often than once a second. A trigger runs it at once.
func every(ctx context.Context, s schedule) {
	const minBackoff = time.Second
	interval := s.interval()
	backoff := minBackoff
	origin := time.Now()
	stratum, lastDone := int64(0), int64(-1)
	var carried time.Duration // the old pace's strata missed before a new pace began
	// The old pace's run still due when the pace changed in its stratum: when pending fires,
	// standing for pendingSpan.
	var pending <-chan time.Time
	var pendingSpan time.Duration
	for {
		begins := origin.Add(time.Duration(stratum) * interval)
		if now := s.interval(); now != interval && begins.After(time.Now()) {
			// A new pace: strata of the new length from where the old ones stopped, each run
			// standing for its own again.
			if lastDone >= 0 {
				carried = min(begins.Sub(origin.Add(time.Duration(lastDone+1)*interval)), interval)
			}
			origin, interval = begins, now
			stratum, lastDone = 0, -1
		}
		maxBackoff := max(interval, 30*time.Second)
		at := begins
		if s.instant != nil {
			at = at.Add(s.instant(interval))
		}
		t := time.NewTimer(time.Until(at))
		// The stratum this run stands for: the one waited for, but a run triggered before that
		// stratum began stands for the one it runs in (a batch triggers one a second: each
		// must not push the schedule a stratum further away).
		done := stratum
	wait:
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-pending:
			_ = s.run(context.WithoutCancel(ctx), pendingSpan) // failed, that part goes unbooked
			pending = nil
			goto wait
		case <-s.trigger:
			t.Stop()
			done = min(stratum, int64(time.Since(origin)/interval))
		case <-s.repace:
			now := time.Now()
			if !begins.After(now) {
				if pending != nil || !at.After(now) {
					goto wait // the stratum under way runs at its instant; the new pace follows it
				}
				// Its run stands for the part before the change (and a stratum a slow run
				// overran just before it); the new pace begins now.
				from := begins
				if booked := origin.Add(time.Duration(lastDone+1) * interval); lastDone >= 0 && booked.Before(from) {
					from = booked
				}
				pending, pendingSpan = time.After(time.Until(at)), min(now.Sub(from), 2*interval)
				origin, interval = now, s.interval()
				stratum, lastDone = 0, -1
			}
			t.Stop()
			continue
		case <-t.C:
		}
		err := s.run(context.WithoutCancel(ctx), time.Duration(min(max(done-lastDone, 1), 2))*interval+carried)
		carried = 0
		// From the run's end: the intervals a slow run overran are skipped, not run back to back.
		next := time.Now()
		if err != nil {
			next = next.Add(min(backoff, maxBackoff))
			backoff = min(backoff*2, maxBackoff)
		} else {
			backoff, lastDone = minBackoff, done
		}
		// The first stratum that starts at or after next.
		stratum = max(done+1, int64((next.Sub(origin)+interval-1)/interval))
	}
}

// ErrNoConnection wraps failures to reach the server, as opposed to a collector failing.
var ErrNoConnection = errors.New("cannot reach PostgreSQL")

// Collect reads one tier now, in a fresh read-only transaction, each collector in its own
// savepoint. It fails only when the server cannot be reached; collector failures are in Results.
func (r *Runner) Collect(ctx context.Context, tier Tier) (*Collection, error) {
	c, err := r.collect(ctx, tier)
	if err != nil {
		r.setUp(err, string(tier))
		r.mu.Lock()
		// Keep the failed results, so pgbatch_collector_success says so, but drop stale values.
		r.latest[tier] = failedCollection(tier, r.collectors[tier], err)
		r.mu.Unlock()
		return nil, err
	}
	r.setUp(nil, string(tier))
	r.mu.Lock()
	r.latest[tier] = c
	r.lastSuccess[tier] = time.Now()
	if !c.Server.ReadsAllStats && (r.server.ReadsAllStats || r.server.VersionNum == 0) {
		r.logger.Warn("the role may not read other sessions' activity (grant pg_monitor): they are left out of these collectors",
			"collectors", readsOtherSessions, "reason", reasonNoReadAllStats)
	}
	r.server = c.Server
	consumers := r.consumers
	r.mu.Unlock()
	for _, consume := range consumers {
		consume(c)
	}
	return c, nil
}

func (r *Runner) collect(ctx context.Context, tier Tier) (*Collection, error) {
	tx, err := r.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoConnection, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	c := &Collection{Tier: tier, Requested: tier == TierSnapshot && r.requested.Swap(false)}
	if err := readServer(ctx, tx, c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoConnection, err)
	}
	for _, n := range r.collectors[tier] {
		start := time.Now()
		err := inSavepoint(ctx, tx, func(sp pgx.Tx) error { return n.Collect(ctx, sp, c) })
		if err != nil {
			r.logger.Warn("collector failed", "collector", n.Name, "err", err)
		}
		c.Results = append(c.Results, Result{Collector: n.Name, Duration: time.Since(start), Err: err})
	}
	if tier == TierSample && r.waits != nil {
		c.WaitTime, c.StatementWaits = r.waits.TakeSinceLast()
		if f := r.batchWaits(); f != nil {
			c.BatchWaits = f()
		}
		c.LockEpisodes = r.waits.takeLockEpisodes()
		c.BatchRelations = r.waits.takeBatchRelations()
	}
	return c, tx.Commit(ctx)
}

// inSavepoint runs f so that its failure (a statement or lock timeout) rolls back only itself.
func inSavepoint(ctx context.Context, tx pgx.Tx, f func(pgx.Tx) error) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	if err := f(sp); err != nil {
		if rbErr := sp.Rollback(ctx); rbErr != nil {
			return errors.Join(err, rbErr)
		}
		return err
	}
	return sp.Commit(ctx)
}

// SQLServer reads what every collection needs to know about the server. now() is the
// transaction's start: one timestamp for the whole collection.
const SQLServer = `SELECT current_setting('server_version_num')::int, current_database(), pg_is_in_recovery(),
	now(), (SELECT system_identifier::text FROM pg_control_system()), pg_has_role('pg_read_all_stats', 'USAGE')`

func readServer(ctx context.Context, tx pgx.Tx, c *Collection) error {
	return tx.QueryRow(ctx, SQLServer).Scan(&c.Server.VersionNum, &c.Server.Database, &c.Server.InRecovery,
		&c.CapturedAt, &c.Server.SystemID, &c.Server.ReadsAllStats)
}

func failedCollection(tier Tier, ns []Named, err error) *Collection {
	c := &Collection{Tier: tier}
	for _, n := range ns {
		c.Results = append(c.Results, Result{Collector: n.Name, Err: err})
	}
	return c
}

// setUp records whether the server answers. A server that cannot be reached (stopped,
// max_connections exhausted) is logged once for all schedules, not per retry of each.
func (r *Runner) setUp(err error, what string) error {
	down := err != nil && errors.Is(err, ErrNoConnection)
	switch {
	case down:
		r.down.Failed("collection failed: PostgreSQL cannot be reached; retrying with back-off", err, "collection", what)
	case err != nil:
		r.logger.Warn("collection failed", "collection", what, "err", err)
	default:
		r.down.Succeeded("PostgreSQL answers again", "collection", what)
	}
	r.mu.Lock()
	r.up = !down
	r.mu.Unlock()
	return err
}

// SetBatchWaits gives the sample tier what splits the wait sampler's seconds between each
// running batch's sessions and the others (the batch tracker, made after the runner).
func (r *Runner) SetBatchWaits(take func() []BatchWait) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.takeBatch = take
}

func (r *Runner) batchWaits() func() []BatchWait {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.takeBatch
}

// Latest returns the most recent collection of a tier (nil before the first).
func (r *Runner) Latest(t Tier) *Collection {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.latest[t]
}

// status is what the self-metrics report.
type status struct {
	up          bool
	server      Server
	lastSuccess map[Tier]time.Time
}

func (r *Runner) status() status {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ls := make(map[Tier]time.Time, len(r.lastSuccess))
	for k, v := range r.lastSuccess {
		ls[k] = v
	}
	return status{r.up, r.server, ls}
}
