package diagnosis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// A run in progress that hangs on a lock another session holds is diagnosed up to now: it
// is found as the batch's current run, said to be still running, the lock is the cause of its
// extra time so far, its holder named, and its measures are set against its baseline runs' whole and same elapsed part.
// Without a run in progress, --run current says so.
func TestRunInProgress(t *testing.T) {
	for _, major := range lab.Majors {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			l := lab.New(t, major)
			l.PrepareWork()
			ctx := context.Background()
			c := l.Conn("etl_nightly")
			for range 3 {
				lab.MustExec(t, c, `SELECT telemetry.batch_begin('nightly')`)
				lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 1000) g`)
				// longer than the sampler's second: a run it never saw is not in the account
				lab.MustExec(t, c, `SELECT pg_sleep(1.5)`)
				lab.MustExec(t, c, `SELECT telemetry.batch_end('nightly')`)
			}
			if _, err := CurrentRun(ctx, l.Admin, "nightly"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no run in progress") {
				t.Errorf("CurrentRun between runs: %v, want that there is no run in progress", err)
			}

			holder := l.Conn("reporting")
			lab.MustExec(t, holder, `BEGIN`)
			lab.MustExec(t, holder, `LOCK TABLE work IN ACCESS EXCLUSIVE MODE`)
			lab.MustExec(t, c, `SELECT telemetry.batch_begin('nightly')`)
			hung := make(chan error, 1)
			go func() {
				_, err := c.Exec(ctx, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 1000) g`)
				hung <- err
			}()
			defer func() {
				lab.MustExec(t, holder, `COMMIT`)
				if err := <-hung; err != nil {
					t.Error(err)
				}
			}()
			// 4 s of the hung run, its own sessions' samples written that far (the sample tier
			// carries them, a second apart while a run goes on; seconds late on a loaded machine).
			l.WaitFor("the run's own samples 4 s into it", `SELECT EXISTS (SELECT FROM telemetry.batch_wait_samples w
				JOIN telemetry.batch_runs r ON w.batch = r.batch AND w.own AND w.captured_at >= r.started_at + interval '4 seconds'
				WHERE r.batch = 'nightly' AND r.status = 'running')`)

			id, err := CurrentRun(ctx, l.Admin, "nightly")
			if err != nil {
				t.Fatal(err)
			}
			rep, err := ForRun(ctx, l.Admin, id)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Running || rep.Run.EndedAt != nil {
				t.Errorf("run %d: running %v, ended %v; want it still running", id, rep.Running, rep.Run.EndedAt)
			}
			if rep.Usual == nil || rep.Usual.BaselineRuns != 3 || rep.Usual.P90Seconds < 1.4 || rep.Usual.P90Seconds > 5 {
				t.Errorf("usual duration %+v, want 3 runs of about 1.5 s", rep.Usual)
			}
			if len(rep.Findings) == 0 || rep.Findings[0].Pattern != "lock_wait" || !strings.Contains(rep.Findings[0].Summary, "reporting") {
				t.Errorf("first finding %+v, want lock_wait naming the holder (reporting)", rep.Findings)
			}
			soFar := map[string]SoFarMeasure{}
			for _, m := range rep.SoFar {
				soFar[m.Measure] = m
			}
			if d := soFar["duration"]; d.Value == nil || *d.Value < 3.5 || d.MedianWhole == nil || *d.MedianWhole > 2.5 || d.BaselineRuns != 3 {
				t.Errorf("duration so far %+v, want about 4 s against 3 runs of about 1.5 s", d)
			}
			if w := soFar["lock_wait_seconds"]; w.Value == nil || *w.Value < 2.5 || w.MedianElapsed == nil || *w.MedianElapsed != 0 {
				t.Errorf("lock waits so far %+v, want about 4 s against none in the same elapsed part of the baseline", w)
			}
			var text bytes.Buffer
			if err := rep.Text(&text); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"STILL RUNNING", "This run has not ended", "Its 3 previous normal run(s) took",
				"So far against the median of 3 previous normal run(s)", "same elapsed part"} {
				if !strings.Contains(text.String(), want) {
					t.Errorf("the text report lacks %q:\n%s", want, text.String())
				}
			}
		})
	}
}
