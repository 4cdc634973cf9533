package recorder

import (
	"context"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestLateStartSnapshotIsTheRuns (issue 19, exact windows): the snapshot taken for
// batch_begin's request is the run's start read however late a loaded recorder takes it.
// Before, a run started on the latest snapshot within a tenth of its duration of its begin
// (boundary_snapshot_grace_seconds): one taken a second into a two-second run left the run on
// the snapshot before it, a neighbouring run's.
func TestLateStartSnapshotIsTheRuns(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		c := e.conn()
		e.record(collectors.TierSnapshot) // the snapshot before the run
		go e.rec.listenLoop(ctx)          // requests are taken; the snapshot is this test's to take
		eventually(t, c, `SELECT telemetry._recorder_listening()`)

		var runID int64
		if err := c.QueryRow(ctx, `SELECT telemetry.batch_begin('late')`).Scan(&runID); err != nil {
			t.Fatal(err)
		}
		eventually(t, c, `SELECT NOT EXISTS (SELECT FROM telemetry.snapshot_requests)`)
		time.Sleep(time.Second) // a loaded machine's late snapshot
		late := e.record(collectors.TierSnapshot)
		time.Sleep(time.Second)
		pgtest.MustExec(t, c, `SELECT telemetry.batch_end('late')`)
		eventually(t, c, `SELECT NOT EXISTS (SELECT FROM telemetry.snapshot_requests)`)
		e.record(collectors.TierSnapshot)

		var tied, listed, window time.Time
		if err := c.QueryRow(ctx, `SELECT r.start_snapshot_at, v.start_snapshot_at, w.snapshot_start
			FROM telemetry.batch_runs r, telemetry.recent_batch_runs v, telemetry._run_window(r.run_id) w
			WHERE r.run_id = $1 AND v.run_id = r.run_id`, runID).Scan(&tied, &listed, &window); err != nil {
			t.Fatal(err)
		}
		for what, got := range map[string]time.Time{"batch_runs.start_snapshot_at": tied, "recent_batch_runs.start_snapshot_at": listed, "_run_window's snapshot_start": window} {
			if !got.Equal(late.Truncate(time.Microsecond)) {
				t.Errorf("%s %s, want the snapshot taken for its request, %s", what, got.Format(time.RFC3339Nano), late.Format(time.RFC3339Nano))
			}
		}
	})
}
