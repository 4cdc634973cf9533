package commitwait_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// commits is the batch's work: small transactions, committed as synchronous_commit says. The
// server names a synchronous standby that does not exist, its sessions committing locally
// (the recorder's too); a commit that waits for the standby waits until it is cancelled
// (statement_timeout does not reach a commit's wait): the transaction stays committed locally,
// with a warning.
func commits(mode string) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		lab.CPU(t, c, time.Second)
		lab.MustExec(t, c, `SELECT set_config('synchronous_commit', $1, false)`, mode)
		for i := range 4 {
			lab.MustExec(t, c, `BEGIN`)
			lab.MustExec(t, c, `INSERT INTO work VALUES ($1, 'row')`, i)
			cancel := time.AfterFunc(1200*time.Millisecond, func() {
				_, _ = l.Admin.Exec(context.Background(), `SELECT pg_cancel_backend($1)`, c.PgConn().PID())
			})
			lab.MustExec(t, c, `COMMIT`)
			cancel.Stop()
		}
		lab.MustExec(t, c, `RESET synchronous_commit`)
	}
}

// TestSyncStandbyMissing: the batch's commits, local in the usual runs, wait for a synchronous
// standby that is gone: waiting at commit (SyncRep) is the cause, first.
func TestSyncStandbyMissing(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "commit_wait",
		Server: func(t *testing.T, major int) *pgtest.Server {
			return pgtest.StartWith(t, major, pgtest.Options{Settings: map[string]string{"synchronous_standby_names": "missing_standby", "synchronous_commit": "local"}})
		},
		Usual: commits("local"), Slow: commits("on"),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, "SyncRep") || !strings.Contains(s, "showed no standby") {
				t.Errorf("commit_wait %q: want SyncRep named, and no standby connected", s)
			}
		}})
}

// withSyncStandby starts a server of a test's own whose synchronous standby is replica_a (its
// sessions commit locally unless they ask otherwise), the standby in *standby.
func withSyncStandby(standby **pgtest.Server) func(t *testing.T, major int) *pgtest.Server {
	return func(t *testing.T, major int) *pgtest.Server {
		primary := pgtest.StartWith(t, major, pgtest.Options{Private: true,
			Settings: map[string]string{"synchronous_standby_names": "replica_a", "synchronous_commit": "local"}})
		*standby = primary.StartStandby(t, "replica_a")
		return primary
	}
}

// TestSyncStandbyReplayPaused: a real synchronous standby, healthy in the usual runs, whose
// replay is held (pg_wal_replay_pause(), as a long query on a standby with
// max_standby_streaming_delay = -1 holds it) for 1.2 s at each of the slow run's commits,
// which wait for it to apply them (synchronous_commit = remote_apply): waiting at commit
// (SyncRep) is the cause, first, and the finding names the standby that fell behind, which
// the missing standby's never does.
func TestSyncStandbyReplayPaused(t *testing.T) {
	var standby *pgtest.Server
	commits := func(paused bool) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			s := pgtest.Connect(t, standby.DSN("postgres"), "")
			lab.CPU(t, c, time.Second)
			lab.MustExec(t, c, `SET synchronous_commit = remote_apply`)
			for i := range 4 {
				lab.MustExec(t, c, `BEGIN`)
				lab.MustExec(t, c, `INSERT INTO work VALUES ($1, 'row')`, i)
				if paused {
					lab.MustExec(t, s, `SELECT pg_wal_replay_pause()`)
					resumed := make(chan error)
					go func() {
						time.Sleep(1200 * time.Millisecond)
						_, err := s.Exec(context.Background(), `SELECT pg_wal_replay_resume()`)
						resumed <- err
					}()
					lab.MustExec(t, c, `COMMIT`)
					if err := <-resumed; err != nil {
						t.Fatal(err)
					}
				} else {
					lab.MustExec(t, c, `COMMIT`)
				}
			}
			lab.MustExec(t, c, `RESET synchronous_commit`)
		}
	}
	lab.RunSlow(t, lab.SlowRun{Want: "commit_wait",
		Server: withSyncStandby(&standby),
		Usual:  commits(false), Slow: commits(true),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, "SyncRep") || !strings.Contains(s, "replica_a (sync) stayed connected") {
				t.Errorf("commit_wait %q: want SyncRep, and the standby that fell behind (replica_a) named as connected", s)
			}
			for _, f := range d.Findings {
				if f.Pattern == "replication_lag" && strings.Contains(f.Summary, "0 B and 0.0 s") {
					t.Errorf("replication_lag %q: a standby that kept up at every snapshot is nothing to say", f.Summary)
				}
			}
		}})
}

// TestSyncStandbyDown: the synchronous standby, there for the usual runs, is stopped as the
// slow run begins; each of its commits waits until cancelled. The finding says the standby
// went away during the run: seen at its start, gone by its end.
func TestSyncStandbyDown(t *testing.T) {
	var standby *pgtest.Server
	lab.RunSlow(t, lab.SlowRun{Want: "commit_wait",
		Server: withSyncStandby(&standby),
		Usual:  commits("on"),
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			standby.Stop(t)
			commits("on")(t, l, c)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, "SyncRep") || !strings.Contains(s, "replica_a, seen earlier in the run, was gone by its end") {
				t.Errorf("commit_wait %q: want SyncRep, and replica_a gone during the run", s)
			}
		}})
}

// TestSyncStandbyHealthy: a clean run. The batch works two seconds, then commits with
// synchronous_commit = remote_apply to a healthy streaming standby, in its usual runs and in
// this one: nothing above info (a standby that confirms in milliseconds is no cause). Its
// runs are long enough for the wait sampler to read them at the batch's pace.
func TestSyncStandbyHealthy(t *testing.T) {
	var standby *pgtest.Server
	work := func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		lab.CPU(t, c, 2*time.Second)
		commits("remote_apply")(t, l, c)
	}
	lab.RunSlow(t, lab.SlowRun{Want: "", Server: withSyncStandby(&standby), Usual: work})
}
