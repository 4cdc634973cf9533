package lockwait_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// hotRows is how many of the accounts both the batch and the webshop update.
const hotRows = 5

// postings is the batch's work on the accounts: some CPU, then 500 single-row updates, each its
// own transaction, over the hot accounts in turn; took, where set, is told how long each took.
func postings(t *testing.T, c *pgx.Conn, took func(time.Duration)) {
	cpu(t, c)
	for i := range 500 {
		began := time.Now()
		lab.MustExec(t, c, `UPDATE accounts SET balance = balance - 1 WHERE id = $1`, i%hotRows+1)
		if took != nil {
			took(time.Since(began))
		}
	}
}

// TestManyShortRowLockWaitsBehindOLTP: tonight an OLTP application (webshop, two sessions of
// its own) keeps updating the accounts the batch updates: in a loop, BEGIN, one hot account's
// balance changed, 50-100 ms of its own work (pg_sleep), COMMIT, sent at once. Each of the batch's 500
// single-row updates that meets a row the webshop changed waits for its transaction
// (Lock:transactionid), tens of ms each: far shorter than the wait sampler's interval, so the
// waits are seen only now and then, but in all they add seconds to the run (a fifth to a third
// of the updates wait, some 60 ms each: 6-10 s). The cause is a lock wait, first, explaining most
// of the extra time, naming the webshop as the holder and the batch's UPDATE as what waited.
func TestManyShortRowLockWaitsBehindOLTP(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "lock_wait",
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.accounts (id int PRIMARY KEY, balance int)`)
			l.Exec(`INSERT INTO public.accounts SELECT g, 0 FROM generate_series(1, 1000) g`)
		},
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) { postings(t, c, nil) },
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			var stop atomic.Bool
			var wg sync.WaitGroup
			for range 2 {
				shop := l.Conn("webshop")
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := context.Background()
					for !stop.Load() {
						// One round trip a transaction (the simple protocol's statements in one
						// string): the row stays locked for all but the client's turn, however
						// slowly a loaded machine schedules this goroutine.
						id, pause := rand.IntN(hotRows)+1, 0.05+0.05*rand.Float64()
						tx := fmt.Sprintf(`BEGIN; UPDATE accounts SET balance = balance + 1 WHERE id = %d; SELECT pg_sleep(%.3f); COMMIT`, id, pause)
						if _, err := shop.Exec(ctx, tx); err != nil {
							t.Errorf("webshop: %s: %v", tx, err)
							return
						}
					}
				}()
			}
			defer wg.Wait()
			defer stop.Store(true) // the webshop stops with the batch's work (before wg.Wait)
			// What the batch's updates took, as the batch saw it: the waits' true number and length
			// (an update of over 10 ms waited; unwaited, they take well under a millisecond).
			var waits int
			var waited time.Duration
			postings(t, c, func(d time.Duration) {
				if d > 10*time.Millisecond {
					waits++
					waited += d
				}
			})
			t.Logf("the batch's updates: %d of 500 took over 10 ms, %.1f s in all", waits, waited.Seconds())
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			first := d.Findings[0]
			t.Logf("extra %.1f s, unexplained %.1f s; %s %s explains %.1f s (%.0f%% of the extra)",
				deref(d.ExtraSeconds), deref(d.UnexplainedSeconds), first.Pattern, first.Severity,
				deref(first.ExplainedSeconds), deref(first.ShareOfExtraPct))
			// The holders the finding chose from (its evidence): the waits the sampler saw, by holder.
			var blockers []struct {
				PID     int32   `json:"blocking_pid"`
				App     string  `json:"blocking_app"`
				State   string  `json:"blocking_state"`
				Query   string  `json:"blocking_query_preview"`
				Waits   int     `json:"waits"`
				Seconds float64 `json:"blocked_seconds"`
			}
			if err := l.Admin.QueryRow(context.Background(), `SELECT coalesce(evidence->'blockers', '[]') FROM telemetry.diagnose_run_findings($1) WHERE pattern = 'lock_wait'`, runID).Scan(&blockers); err != nil {
				t.Fatal(err)
			}
			shops := map[int32]bool{}
			for _, b := range blockers {
				t.Logf("blocker: pid %d (%s, %s %q): %d wait(s) seen, %.1f s", b.PID, b.App, b.State, b.Query, b.Waits, b.Seconds)
				if b.App == "webshop" {
					shops[b.PID] = true
				}
			}
			s := first.Summary
			// Where the sampler saw both of the webshop's sessions hold the batch up, the holder is
			// the application, not one of its sessions.
			if len(shops) > 1 && !strings.Contains(s, "sessions of one application") {
				t.Errorf("lock_wait %q: the webshop's %d sessions held the batch up, want them named as one application", s, len(shops))
			}
			for _, want := range []string{`"UPDATE accounts SET balance = balance - `, "(application webshop,",
				"changed or locked by another transaction"} {
				if !strings.Contains(s, want) {
					t.Errorf("lock_wait %q: want %q (the batch's UPDATE waited on rows the webshop changed)", s, want)
				}
			}
			if first.ShareOfExtraPct == nil || *first.ShareOfExtraPct < 50 {
				t.Errorf("lock_wait explains %v%% of the extra time, want most of it (the row lock waits are the only change)", deref(first.ShareOfExtraPct))
			}
		}})
}

func deref(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}
