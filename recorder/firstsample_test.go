package recorder

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/batch"
	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestOwnSessionsFromTheFirstSample (issue 19, defect 6): as the exporter is wired at its
// default flags (the tracker reads the recorded runs every 2 s, and at once when the recorder
// is told of a boundary), a marker run's session that waits on a lock from its first statement
// is the run's from the first sample: its lock wait is the run's own, not booked to no batch
// until the tracker's next read.
func TestOwnSessionsFromTheFirstSample(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		ctx := context.Background()
		dsn := srv.NewDatabase(t)
		srv.Exec(t, dsn, `CREATE TABLE ledger (id int)`)
		pool := newPool(t, dsn, false, "pg-batch-exporter recorder")
		if err := schema.Migrate(ctx, pool); err != nil {
			t.Fatal(err)
		}
		runner := collectors.NewRunner(collectors.RunnerOptions{Pool: newPool(t, dsn, true, "")})
		tracker := batch.NewTracker(batch.Options{RunsDB: newPool(t, dsn, false, "pg-batch-exporter batch"), Trigger: runner.Trigger})
		tracker.Follow(runner.Waits())
		runner.SetBatchWaits(tracker.TakeRunWaits)
		rec := New(Options{Pool: pool, Trigger: runner.Trigger, Boundary: tracker.RefreshNow})
		runner.Subscribe(rec.Consume)
		runCtx, stop := context.WithCancel(ctx)
		var running sync.WaitGroup
		running.Add(3)
		go func() { defer running.Done(); runner.Run(runCtx) }()
		go func() { defer running.Done(); rec.Run(runCtx) }()
		go func() { defer running.Done(); tracker.Run(runCtx) }()
		defer func() { stop(); running.Wait() }()
		c := pgtest.Connect(t, dsn, "")
		eventually(t, c, `SELECT EXISTS (SELECT FROM pg_stat_activity WHERE query = 'LISTEN telemetry_request_snapshot')`)
		// Just after the tracker's read at its start: its next is 2 s away.
		time.Sleep(100 * time.Millisecond)

		holder := pgtest.Connect(t, dsn, "reporting")
		pgtest.MustExec(t, holder, `BEGIN; LOCK TABLE ledger IN ACCESS EXCLUSIVE MODE`)
		job := pgtest.Connect(t, dsn, "etl_ledger")
		var runID int64
		if err := job.QueryRow(ctx, `SELECT telemetry.batch_begin('ledger')`).Scan(&runID); err != nil {
			t.Fatal(err)
		}
		const wait = 4 * time.Second
		release := time.AfterFunc(wait, func() { holder.Exec(context.Background(), `COMMIT`) })
		defer release.Stop()
		pgtest.MustExec(t, job, `SELECT count(*) FROM ledger`)
		pgtest.MustExec(t, job, `SELECT telemetry.batch_end('ledger')`)
		// The next sample-tier collection carries the seconds sampled since the last.
		time.Sleep(1500 * time.Millisecond)
		runner.Trigger(collectors.TierSample)
		eventually(t, c, `SELECT EXISTS (SELECT FROM telemetry.samples s JOIN telemetry.batch_runs r ON s.captured_at > r.ended_at + interval '1 second' WHERE r.run_id = $1)`, runID)
		var own, unbooked float64
		if err := c.QueryRow(ctx, `SELECT coalesce(sum(seconds) FILTER (WHERE b.own), 0)
			FROM telemetry.batch_wait_samples b WHERE b.batch = 'ledger' AND b.wait_event_type = 'Lock'`).Scan(&own); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRow(ctx, `SELECT coalesce(sum(seconds), 0) FROM telemetry.statement_wait_samples
			WHERE batch = '' AND wait_event_type = 'Lock'`).Scan(&unbooked); err != nil {
			t.Fatal(err)
		}
		// The sampler's 1 s strata make a 4 s wait 3 to 5 sampled seconds.
		if own < wait.Seconds()-1 || unbooked > 1 {
			t.Errorf("a %s lock wait from the run's first statement: %.1f s the run's own, %.1f s booked to no batch; want it the run's", wait, own, unbooked)
		}
	})
}
