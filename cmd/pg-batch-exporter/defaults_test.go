package main

import (
	"io"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/batch"
	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
	"github.com/pg-batch-exporter/pg-batch-exporter/recorder"
)

// TestZeroOptionsAreTheDefaults: each Options struct the binary fills from its flags means, when
// zero, what the binary does at its default flags: a library used with a zero Options (tests,
// scenarios) behaves as the exporter does by default (issue 19).
func TestZeroOptionsAreTheDefaults(t *testing.T) {
	cl := newCommandLine(io.Discard, io.Discard)
	if _, err := cl.app.Parse([]string{"serve", "--recorder.enabled"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := cl.serve.validate()
	if err != nil {
		t.Fatal(err)
	}

	runner, zeroRunner := cl.serve.runnerOptions(cfg).WithDefaults(), collectors.RunnerOptions{}.WithDefaults()
	if runner.SampleEvery != zeroRunner.SampleEvery || runner.SnapshotEvery != zeroRunner.SnapshotEvery ||
		runner.WaitSampleEvery != zeroRunner.WaitSampleEvery || runner.RunWaitSampleEvery != zeroRunner.RunWaitSampleEvery ||
		runner.Config.Statements != zeroRunner.Config.Statements {
		t.Errorf("runner at the default flags %+v, a zero RunnerOptions %+v", runner, zeroRunner)
	}
	for _, name := range []string{"statements", "waits", "locks", "tables", "wal"} {
		if runner.Selection.Enabled(name) != zeroRunner.Selection.Enabled(name) {
			t.Errorf("collector %s: enabled %v at the default flags, %v in a zero RunnerOptions", name,
				runner.Selection.Enabled(name), zeroRunner.Selection.Enabled(name))
		}
	}

	retention, err := cl.serve.recorder.parseRetention()
	if err != nil {
		t.Fatal(err)
	}
	rec, zeroRec := cl.serve.recorder.options(retention).WithDefaults(), recorder.Options{}.WithDefaults()
	if rec.Retention != zeroRec.Retention || rec.BufferRows != zeroRec.BufferRows || rec.RetryEvery != zeroRec.RetryEvery ||
		rec.RequestMinInterval != zeroRec.RequestMinInterval || rec.StatementsEvery != zeroRec.StatementsEvery {
		t.Errorf("recorder at the default flags %+v, a zero Options %+v", rec, zeroRec)
	}

	tracker, zeroTracker := cl.serve.trackerOptions().WithDefaults(), batch.Options{}.WithDefaults()
	if tracker.QuietPeriod != zeroTracker.QuietPeriod || tracker.RefreshEvery != zeroTracker.RefreshEvery {
		t.Errorf("tracker at the default flags %+v, a zero Options %+v", tracker, zeroTracker)
	}

	conn := cl.conn.options(true)
	if conn.StatementTimeout != postgres.DefaultStatementTimeout || conn.LockTimeout != postgres.DefaultLockTimeout {
		t.Errorf("timeouts at the default flags %s and %s, a zero postgres.Options's %s and %s", conn.StatementTimeout,
			conn.LockTimeout, postgres.DefaultStatementTimeout, postgres.DefaultLockTimeout)
	}

	// A flag's 0 interval is none, not the default.
	if _, err := cl.app.Parse([]string{"serve", "--recorder.enabled", "--recorder.statements-interval=0", "--recorder.request-min-interval=0"}); err != nil {
		t.Fatal(err)
	}
	if o := cl.serve.recorder.options(time.Hour).WithDefaults(); o.StatementsEvery != recorder.NoInterval || o.RequestMinInterval != recorder.NoInterval {
		t.Errorf("--recorder.statements-interval=0 and --recorder.request-min-interval=0 gave %s and %s, want none", o.StatementsEvery, o.RequestMinInterval)
	}
}
