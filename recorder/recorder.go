// Package recorder keeps the exporter's collections in the telemetry schema of a PostgreSQL
// database (the seed's schema, so its queries run verbatim): collect once, emit twice. It
// creates and migrates the schema, buffers collections while that database is unreachable,
// applies retention by dropping day partitions, and takes a snapshot when asked through
// telemetry.request_snapshot().
package recorder

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/repeatlog"
)

// SnapshotChannel is the channel telemetry.request_snapshot() notifies.
const SnapshotChannel = "telemetry_request_snapshot"

// Options configure a Recorder. A zero field is the exporter's default (its flag's), so
// that a zero Options records as the binary does by default.
type Options struct {
	// Pool writes to the recorder's database: writable, with statement and lock timeouts.
	Pool *pgxpool.Pool
	// ServerName labels every row; empty means the monitored server's system identifier.
	ServerName string
	// Retention is how long data is kept (whole UTC days are dropped once older); 0:
	// DefaultRetention.
	Retention time.Duration
	// BufferRows bounds the rows held in memory while the database cannot be written; 0:
	// DefaultBufferRows.
	BufferRows int
	// Trigger asks the runner for a collection now (runner.Trigger).
	Trigger func(collectors.Tier)
	Logger  *slog.Logger
	// RetryEvery is the pause after a failed write or lost connection; 0: 1s.
	RetryEvery time.Duration
	// RequestMinInterval is the least time between two requested snapshots: requests
	// within it are coalesced into one snapshot when it ends. 0: DefaultRequestMinInterval;
	// NoInterval: no limit.
	RequestMinInterval time.Duration
	// StatementsEvery is how often pg_stat_statements is stored between a batch's boundaries,
	// which always store every entry. 0: DefaultStatementsEvery; NoInterval: at every snapshot.
	StatementsEvery time.Duration
	// LiteralQueryText stores sessions' query texts as they ran, constants included; by
	// default each constant is replaced by $n (telemetry._normalized_query), since the
	// schema's readers may not read other roles' queries.
	LiteralQueryText bool
	// Boundary is called at each batch boundary the recorder is told of (batch_begin,
	// batch_end): the batch tracker reads the runs at once (Tracker.RefreshNow), so that a
	// marker run's own sessions are known from its first sample, not a refresh later.
	Boundary func()
}

// The exporter's defaults (--recorder.retention, --recorder.buffer,
// --recorder.request-min-interval, --recorder.statements-interval), which a zero field of
// Options stands for.
const (
	DefaultRetention          = 7 * 24 * time.Hour
	DefaultBufferRows         = 100000
	DefaultRequestMinInterval = 5 * time.Second
	DefaultStatementsEvery    = time.Hour
)

// NoInterval is an interval of none: RequestMinInterval NoInterval takes every request at
// once, StatementsEvery NoInterval stores the statements at every snapshot (a flag's 0).
const NoInterval time.Duration = -1

// WithDefaults fills the zero fields with the exporter's defaults.
func (o Options) WithDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Retention = cmp.Or(o.Retention, DefaultRetention)
	o.BufferRows = cmp.Or(o.BufferRows, DefaultBufferRows)
	o.RetryEvery = cmp.Or(o.RetryEvery, time.Second)
	o.RequestMinInterval = cmp.Or(o.RequestMinInterval, DefaultRequestMinInterval)
	o.StatementsEvery = cmp.Or(o.StatementsEvery, DefaultStatementsEvery)
	return o
}

// Recorder writes collections in order, one transaction each.
type Recorder struct {
	o Options

	mu          sync.Mutex
	queue       []*collectionRows
	queuedRows  int
	replication []collectors.ReplicationStat // from the latest sample, for the next snapshot
	statements  statementDeltas
	// runStarts are batch_begin's snapshot requests not yet served: the next snapshot taken
	// after each is its run's start read (batch_runs.start_snapshot_at).
	runStarts   []runStart
	wake        chan struct{}
	partitioned map[string]bool // UTC days whose partitions exist
	tables      []collectors.RecordedTable

	writeFailure, listenFailure, settleFailure *repeatlog.Failure
	// servers are the servers whose collections this recorder wrote: the ones whose ended
	// runs it settles (settleLoop).
	servers        map[string]bool
	refusalsLogged map[refusal]bool

	written  *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	refused  *prometheus.CounterVec
	buffered prometheus.GaugeFunc

	requests       requestLimiter
	ignoredRequest *prometheus.CounterVec
}

// New builds a recorder; Consume feeds it and Run writes.
func New(o Options) *Recorder {
	o = o.WithDefaults()
	r := &Recorder{o: o, wake: make(chan struct{}, 1), partitioned: map[string]bool{},
		writeFailure: repeatlog.New(o.Logger), listenFailure: repeatlog.New(o.Logger), settleFailure: repeatlog.New(o.Logger), servers: map[string]bool{}, refusalsLogged: map[refusal]bool{}, statements: statementDeltas{every: o.StatementsEvery}, tables: collectors.RecordedTables}
	r.requests = requestLimiter{interval: o.RequestMinInterval, snapshot: r.requestedSnapshot}
	r.ignoredRequest = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: collectors.Namespace, Name: "recorder_snapshot_requests_ignored_total",
		Help: "Snapshot requests that drove no snapshot of their own: rate_limited (within --recorder.request-min-interval of the previous requested snapshot; " +
			"one snapshot is taken when the interval ends), unauthorized (a notification on " + SnapshotChannel + " with no request of telemetry.request_snapshot() behind it)."},
		[]string{"reason"})
	for _, reason := range []string{ignoredRateLimited, ignoredUnauthorized} {
		r.ignoredRequest.WithLabelValues(reason)
	}
	r.written = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: collectors.Namespace, Name: "recorder_rows_written_total",
		Help: "Rows the recorder wrote, by table."}, []string{"table"})
	r.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: collectors.Namespace, Name: "recorder_rows_dropped_total",
		Help: "Rows the recorder dropped because its buffer was full while its database could not be written, by table."}, []string{"table"})
	r.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: collectors.Namespace, Name: "recorder_rows_refused_total",
		Help: "Rows the recorder's database refused for their data (SQLSTATE classes 22, 23, 54: a value out of range, a text it cannot store, a key too large), " +
			"by table: set aside, the rest of their collection written. A refused snapshots or samples row sets its whole collection aside."}, []string{"table"})
	r.buffered = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: collectors.Namespace, Name: "recorder_buffered_rows",
		Help: "Rows waiting in memory to be written."}, func() float64 {
		r.mu.Lock()
		defer r.mu.Unlock()
		return float64(r.queuedRows)
	})
	// Every table's series exists from the start, so that a dashboard shows 0, not "No data".
	for _, tier := range []collectors.Tier{collectors.TierSnapshot, collectors.TierSample} {
		b := newCollectionRows(&collectors.Collection{Tier: tier}, r.tables, "", nil, nil)
		for _, t := range append([]table{b.parent}, b.children...) {
			r.written.WithLabelValues(t.name)
			r.dropped.WithLabelValues(t.name)
			r.refused.WithLabelValues(t.name)
		}
	}
	return r
}

// Metrics are the recorder's own metrics.
func (r *Recorder) Metrics() []prometheus.Collector {
	return []prometheus.Collector{r.written, r.dropped, r.refused, r.buffered, r.ignoredRequest}
}

// Consume queues a collection (a collectors.Consumer). It never blocks on the database.
func (r *Recorder) Consume(c *collectors.Collection) {
	server := r.o.ServerName
	if server == "" {
		server = c.Server.SystemID
	}
	r.mu.Lock()
	if c.Tier == collectors.TierSample && succeededOrAbsent(c, "replication") {
		r.replication = c.Replication
	}
	b := newCollectionRows(c, r.tables, server, r.replication, &r.statements)
	if c.Tier == collectors.TierSnapshot {
		b.runStarts = r.takeRunStarts(c.CapturedAt)
	}
	r.queue = append(r.queue, b)
	r.queuedRows += b.rowCount()
	r.trimLocked()
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func succeededOrAbsent(c *collectors.Collection, name string) bool {
	for _, res := range c.Results {
		if res.Collector == name {
			return res.Err == nil
		}
	}
	return true
}

// trimLocked drops the oldest collections, whole, until the buffer is within its bound.
func (r *Recorder) trimLocked() {
	for r.queuedRows > r.o.BufferRows && len(r.queue) > 0 {
		old := r.queue[0]
		r.queue = r.queue[1:]
		r.queuedRows -= old.rowCount()
		r.dropped.WithLabelValues(old.parent.name).Inc()
		for _, t := range old.children {
			r.dropped.WithLabelValues(t.name).Add(float64(len(t.rows)))
		}
		r.o.Logger.Warn("recorder buffer full: dropped the oldest collection", "tier", old.tier, "captured_at", old.capturedAt)
	}
}

// Buffered returns the number of rows waiting to be written.
func (r *Recorder) Buffered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.queuedRows
}

// Run writes queued collections, listens for snapshot requests and applies retention
// until ctx ends. The schema must have been migrated (Migrate).
func (r *Recorder) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(3)
	// Settling waits for the first retention pass: a settle_run beside it returns at once,
	// settling nothing (telemetry._retention_lock), and the next pass is a minute away.
	retained := make(chan struct{})
	go func() { defer wg.Done(); r.writeLoop(ctx, retained) }()
	go func() { defer wg.Done(); r.listenLoop(ctx) }()
	go func() { defer wg.Done(); r.settleLoop(ctx, retained) }()
	wg.Wait()
}

// retentionEvery is how often old partitions are looked for.
const retentionEvery = time.Hour

// settleEvery is how often ended runs are settled, settleRetry how soon after a failure (a
// timeout on a busy server), and settleAtOnce how many of a server's at most each time, a
// statement each (telemetry.settle_run).
const (
	settleEvery  = time.Minute
	settleRetry  = 10 * time.Second
	settleAtOnce = 5
)

// writeLoop writes what is queued, and applies retention every retentionEvery; it closes
// retained once it tried the first time.
func (r *Recorder) writeLoop(ctx context.Context, retained chan<- struct{}) {
	var lastRetention time.Time
	for {
		if time.Since(lastRetention) >= retentionEvery {
			if err := r.applyRetention(ctx); err != nil {
				r.o.Logger.Warn("recorder retention failed", "err", err)
			} else {
				lastRetention = time.Now()
			}
			if retained != nil {
				close(retained)
				retained = nil
			}
		}
		wait := retentionEvery
		if err := r.drain(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.writeFailure.Failed("recorder write failed; keeping the collection buffered", err, "buffered_rows", r.Buffered())
			wait = r.o.RetryEvery
		} else {
			r.writeFailure.Succeeded("recorder writes again", "buffered_rows", r.Buffered())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// drain writes the queue's head until the queue is empty or a write fails; a failed
// collection stays at the head, so the order is kept.
func (r *Recorder) drain(ctx context.Context) error {
	for {
		r.mu.Lock()
		if len(r.queue) == 0 {
			r.mu.Unlock()
			return nil
		}
		b := r.queue[0]
		r.mu.Unlock()
		if err := r.write(ctx, b); err != nil {
			return err
		}
		r.mu.Lock()
		r.servers[b.server] = true
		// The buffer may have dropped it meanwhile; remove it only if still at the head.
		if len(r.queue) > 0 && r.queue[0] == b {
			r.queue = r.queue[1:]
			r.queuedRows -= b.rowCount()
		}
		r.mu.Unlock()
	}
}

// settleLoop stores, every settleEvery, the results of the written servers' runs whose data
// are all in (telemetry.settle_run), so that later runs read them as baseline runs without
// reading their data again; beside the writes, which it never holds up. A failure costs only
// speed: the analysis computes what is not stored.
func (r *Recorder) settleLoop(ctx context.Context, retained <-chan struct{}) {
	select {
	case <-ctx.Done():
		return
	case <-retained:
	}
	for {
		next := settleEvery
		r.mu.Lock()
		servers := make([]string, 0, len(r.servers))
		for s := range r.servers {
			servers = append(servers, s)
		}
		r.mu.Unlock()
		for _, server := range servers {
			for range settleAtOnce {
				var runID *int64
				err := r.o.Pool.QueryRow(ctx, `SELECT telemetry.settle_run($1)`, server).Scan(&runID)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					r.settleFailure.Failed("recorder could not settle ended runs (their analysis reads their data each time)", err, "server", server)
					next = settleRetry
					break
				}
				r.settleFailure.Succeeded("recorder settles ended runs again", "server", server)
				if runID == nil {
					break
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
	}
}

// Flushed says what Flush wrote and what it had to leave unwritten.
type Flushed struct {
	Collections, LostCollections, LostRows int
}

// Flush writes what is still buffered, retrying failed writes, until the buffer is empty or
// ctx ends (the shutdown timeout). Call it after Run has returned and the runner stopped:
// nothing is queued meanwhile, so what left the queue was written.
func (r *Recorder) Flush(ctx context.Context) Flushed {
	queued := r.queueLen()
	for {
		err := r.drain(ctx)
		if err == nil || ctx.Err() != nil {
			break
		}
		r.o.Logger.Debug("recorder write failed while flushing; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(r.o.RetryEvery):
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return Flushed{Collections: queued - len(r.queue), LostCollections: len(r.queue), LostRows: r.queuedRows}
}

func (r *Recorder) queueLen() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

// write stores one collection in one transaction. A collection already stored (same server
// and captured_at, from a retry whose commit was not acknowledged) is skipped. Rows the
// database refuses for their data (refused) do not hold the others back: the collection is
// written again with each table, and each row of a refused table, under a savepoint, and the
// refused rows are set aside; a refused parent row sets the whole collection aside. Any other
// error (connection lost, read-only, no privilege) is returned: the collection stays buffered.
func (r *Recorder) write(ctx context.Context, b *collectionRows) error {
	day := b.capturedAt.UTC().Format(time.DateOnly)
	if !r.partitioned[day] {
		if _, err := r.o.Pool.Exec(ctx, `SELECT telemetry._ensure_partitions($1)`, b.capturedAt); err != nil {
			if refused(err) {
				r.refuseCollection(b, err)
				return nil
			}
			return fmt.Errorf("creating partitions: %w", err)
		}
		r.partitioned[day] = true
	}
	written, setAside, err := r.insert(ctx, b, false)
	if refused(err) {
		written, setAside, err = r.insert(ctx, b, true)
	}
	if refused(err) { // the parent row
		r.refuseCollection(b, err)
		return nil
	}
	if err != nil {
		return err
	}
	for name, n := range written {
		r.written.WithLabelValues(name).Add(float64(n))
	}
	for _, x := range setAside {
		r.refuse(x.table, 1, x.err)
	}
	return nil
}

// refusedRow is a row the database refused, set aside.
type refusedRow struct {
	table string
	err   error
}

// insert writes a collection in one transaction and returns the rows written by table (none
// where it was already stored). isolate: each table under a savepoint, and each row of a
// table the database refuses, setting the refused rows aside (setAside).
func (r *Recorder) insert(ctx context.Context, b *collectionRows, isolate bool) (written map[string]int, setAside []refusedRow, err error) {
	err = pgx.BeginFunc(ctx, r.o.Pool, func(tx pgx.Tx) error {
		var id int32
		err := tx.QueryRow(ctx, r.insertSQL(b.parent.name, b.parent.columns, "ON CONFLICT (server, captured_at) DO NOTHING RETURNING id"),
			b.parent.rows[0]...).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // already stored
		}
		if err != nil {
			return err
		}
		written = map[string]int{b.parent.name: 1}
		var all pgx.Batch
		for _, t := range b.children {
			inserts := r.childInserts(b, t, id)
			if !isolate {
				all.QueuedQueries = append(all.QueuedQueries, inserts...)
				written[t.name] = len(t.rows)
				continue
			}
			if written[t.name], err = insertIsolated(ctx, tx, t.name, inserts, &setAside); err != nil {
				return err
			}
		}
		// What follows the collection's rows, by the table it writes: isolated, a group that
		// fails is set aside alone.
		type noteGroup struct {
			table   string
			queries []*pgx.QueuedQuery
		}
		notes := []noteGroup{{"servers", []*pgx.QueuedQuery{{SQL: `SELECT telemetry._note_server($1, $2, $3, $4)`, Arguments: []any{b.server, b.systemID, b.pgVersion, b.capturedAt}}}}}
		if b.tier != collectors.TierSnapshot {
			// The sample's rows are all in: its rollups (recorder/sql/rollups.sql) follow.
			notes[0].queries = append(notes[0].queries, &pgx.QueuedQuery{SQL: `SELECT telemetry._rollup_sample($1, $2, $3)`, Arguments: []any{b.server, id, b.capturedAt}})
		}
		if b.settings != nil {
			notes = append(notes, noteGroup{"server_settings", []*pgx.QueuedQuery{{SQL: `SELECT telemetry._note_settings($1, $2, $3::jsonb)`, Arguments: []any{b.server, b.capturedAt, *b.settings}}}})
		}
		// The runs this snapshot is the start read of (a run's first noted snapshot stays).
		if len(b.runStarts) > 0 {
			notes = append(notes, noteGroup{"batch_runs", []*pgx.QueuedQuery{{SQL: `UPDATE telemetry.batch_runs SET start_snapshot_at = $1
			WHERE run_id = ANY ($2) AND start_snapshot_at IS NULL`, Arguments: []any{b.capturedAt, b.runStarts}}}})
		}
		if !isolate {
			for _, n := range notes {
				all.QueuedQueries = append(all.QueuedQueries, n.queries...)
			}
			return tx.SendBatch(ctx, &all).Close()
		}
		for _, n := range notes {
			if _, err := insertIsolated(ctx, tx, n.table, n.queries, &setAside); err != nil {
				return err
			}
		}
		return nil
	})
	return written, setAside, err
}

// childInserts are the statements that insert a child table's rows of a collection whose
// parent row got id.
func (r *Recorder) childInserts(b *collectionRows, t table, id int32) []*pgx.QueuedQuery {
	out := make([]*pgx.QueuedQuery, 0, len(t.rows))
	if t.shared {
		sql := r.insertSQL(t.name, append(t.columns, "server", "first_seen"), "ON CONFLICT DO NOTHING")
		for _, row := range t.rows {
			out = append(out, &pgx.QueuedQuery{SQL: sql, Arguments: append(row, b.server, b.capturedAt)})
		}
		return out
	}
	sql := r.insertSQL(t.name, append(append([]string{parentKey(b.tier)}, t.columns...), "server", "captured_at"), "")
	for _, row := range t.rows {
		out = append(out, &pgx.QueuedQuery{SQL: sql, Arguments: append(append([]any{id}, row...), b.server, b.capturedAt)})
	}
	return out
}

// insertIsolated runs a table's inserts under a savepoint and, where the database refuses
// them, each under its own, adding the refused ones to setAside. It returns how many it
// wrote, and an error other than a refusal (the transaction is then lost).
func insertIsolated(ctx context.Context, tx pgx.Tx, name string, inserts []*pgx.QueuedQuery, setAside *[]refusedRow) (int, error) {
	err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
		return sp.SendBatch(ctx, &pgx.Batch{QueuedQueries: inserts}).Close()
	})
	if !refused(err) {
		if err != nil {
			return 0, err
		}
		return len(inserts), nil
	}
	written := 0
	for _, q := range inserts {
		err := pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
			_, err := sp.Exec(ctx, q.SQL, q.Arguments...)
			return err
		})
		switch {
		case err == nil:
			written++
		case refused(err):
			*setAside = append(*setAside, refusedRow{name, err})
		default:
			return written, err
		}
	}
	return written, nil
}

// refused tells an error about the data written, which writing the same rows again meets
// alike, unlike a lost connection, a read-only database or a revoked privilege: the database's
// SQLSTATE class 22 (data exception: a value out of range, a text not valid in its encoding),
// 23 (integrity constraint violation) or 54 (program limit exceeded: a key too large for its
// index), or a value pgx cannot encode as its column's type (an integer beyond int4), which
// pgx reports by this message only, before sending anything.
func refused(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err != nil && strings.Contains(err.Error(), "failed to encode args[")
	}
	switch pgErr.Code[:min(2, len(pgErr.Code))] {
	case "22", "23", "54":
		return true
	}
	return false
}

// refuseCollection sets a whole collection aside: its parent row, or its day, was refused.
func (r *Recorder) refuseCollection(b *collectionRows, err error) {
	r.refuse(b.parent.name, 1, err)
	for _, t := range b.children {
		r.refused.WithLabelValues(t.name).Add(float64(len(t.rows)))
	}
}

// refusal is a kind of refused row, logged once: its table and SQLSTATE ("" for pgx's).
type refusal struct{ table, code string }

// refuse counts rows of a table set aside and logs the first of each table and SQLSTATE.
func (r *Recorder) refuse(table string, rows int, err error) {
	r.refused.WithLabelValues(table).Add(float64(rows))
	k := refusal{table: table}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		k.code = pgErr.Code
	}
	r.mu.Lock()
	logged := r.refusalsLogged[k]
	r.refusalsLogged[k] = true
	r.mu.Unlock()
	if !logged {
		r.o.Logger.Warn("recorder database refused rows for their data: set aside, the rest written", "table", table, "rows", rows, "err", err,
			"repeats", "logged once per table and SQLSTATE; counted in pgbatch_recorder_rows_refused_total")
	}
}

func parentKey(t collectors.Tier) string {
	if t == collectors.TierSnapshot {
		return "snapshot_id"
	}
	return "sample_id"
}

// insertSQL inserts a row of columns, a session's query text (queryTextColumns) normalized
// unless the recorder keeps it literal.
func (r *Recorder) insertSQL(table string, columns []string, suffix string) string {
	params := make([]string, len(columns))
	for i, c := range columns {
		params[i] = fmt.Sprintf("$%d", i+1)
		if queryTextColumns[c] && !r.o.LiteralQueryText {
			params[i] = fmt.Sprintf("telemetry._normalized_query($%d)", i+1)
		}
	}
	return fmt.Sprintf("INSERT INTO telemetry.%s (%s) VALUES (%s) %s",
		table, strings.Join(columns, ", "), strings.Join(params, ", "), suffix)
}

func (r *Recorder) applyRetention(ctx context.Context) error {
	var days int
	err := r.o.Pool.QueryRow(ctx, `SELECT telemetry._drop_partitions_before(now() - $1::interval)`, r.o.Retention).Scan(&days)
	if err == nil && days > 0 {
		r.o.Logger.Info("recorder retention dropped old days", "days", days, "retention", r.o.Retention)
	}
	return err
}

// listenLoop holds a connection LISTENing on SnapshotChannel and triggers a snapshot per
// notification, reconnecting after a pause when the connection is lost.
func (r *Recorder) listenLoop(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		r.listenFailure.Failed("recorder lost its LISTEN connection", err)
		t := time.NewTimer(r.o.RetryEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (r *Recorder) listen(ctx context.Context) error {
	pooled, err := r.o.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A LISTENing connection must not go back to the pool. It runs nothing else: its last
	// query tells telemetry._recorder_listening() that a recorder listens.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+SnapshotChannel); err != nil {
		return err
	}
	r.listenFailure.Succeeded("recorder LISTENs again")
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		// Anyone may notify; only telemetry._request_snapshot() (writers alone) leaves a request.
		// One request per notification: however they interleave, bare notifications never
		// drive more snapshots than there were requests.
		var boundary bool
		var start runStart
		var runID *int64
		err := r.o.Pool.QueryRow(ctx, `DELETE FROM telemetry.snapshot_requests WHERE ctid =
			(SELECT ctid FROM telemetry.snapshot_requests ORDER BY requested_at LIMIT 1 FOR UPDATE SKIP LOCKED)
			RETURNING boundary, run_id, requested_at`).Scan(&boundary, &runID, &start.requestedAt)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			r.ignoredRequest.WithLabelValues(ignoredUnauthorized).Inc()
			continue
		case err != nil:
			return fmt.Errorf("reading snapshot requests: %w", err)
		case boundary:
			// A run's begin or end: a snapshot of its own now, never one deferred past the next
			// run's begin, which would put that run's statements into both.
			if runID != nil {
				start.runID = *runID
				r.mu.Lock()
				r.runStarts = append(r.runStarts, start)
				r.mu.Unlock()
			}
			r.requestedSnapshot()
			if r.o.Boundary != nil {
				r.o.Boundary()
			}
			continue
		}
		if !r.requests.admit() {
			r.ignoredRequest.WithLabelValues(ignoredRateLimited).Inc()
		}
	}
}

// runStart is batch_begin's request for its run's start snapshot.
type runStart struct {
	runID       int64
	requestedAt time.Time // the server's clock, as a collection's CapturedAt
}

// takeRunStarts are the runs whose start read a snapshot captured at is: those requested
// before its transaction began (r.mu held); the others wait for the next.
func (r *Recorder) takeRunStarts(at time.Time) []int64 {
	var out []int64
	r.runStarts = slices.DeleteFunc(r.runStarts, func(s runStart) bool {
		if s.requestedAt.After(at) {
			return false
		}
		out = append(out, s.runID)
		return true
	})
	return out
}

// Reasons a snapshot request is ignored (recorder_snapshot_requests_ignored_total).
const (
	ignoredRateLimited  = "rate_limited"
	ignoredUnauthorized = "unauthorized"
)

// requestedSnapshot asks the runner for a snapshot at a batch's boundary.
func (r *Recorder) requestedSnapshot() {
	r.mu.Lock()
	r.statements.fullFrom = time.Now() // a batch's boundary: every statement, for exact deltas
	r.mu.Unlock()
	if r.o.Trigger != nil {
		r.o.Trigger(collectors.TierSnapshot)
	}
}

// requestLimiter takes at most one requested snapshot per interval: a request within the
// interval of the previous snapshot is deferred to the interval's end, and those arriving
// meanwhile join it, so a batch's boundary always gets a snapshot, at most interval late.
type requestLimiter struct {
	interval time.Duration
	snapshot func()

	mu       sync.Mutex
	last     time.Time // of the latest requested snapshot
	deferred bool      // one is scheduled at last+interval
}

// admit takes a request and says whether it drives a snapshot of its own (now, or deferred
// to the end of the interval).
func (l *requestLimiter) admit() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.deferred {
		return false
	}
	now := time.Now()
	if wait := l.last.Add(l.interval).Sub(now); !l.last.IsZero() && wait > 0 {
		l.deferred = true
		time.AfterFunc(wait, func() {
			l.mu.Lock()
			l.deferred, l.last = false, time.Now()
			l.mu.Unlock()
			l.snapshot()
		})
		return true
	}
	l.last = now
	l.snapshot()
	return true
}
