package lockwait_test

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// deadlockRounds is how many transactions each of the batch's two workers runs in a run.
const deadlockRounds = 3

// postInRanges is the batch's work: two workers (the session that began the run and one more
// of the batch's), each running deadlockRounds transactions that update two ranges of the
// accounts one after the other, a short pause between them, and a pause of their own after
// each (about 2 s a run). ranges gives each worker's two ranges, in the order it takes them. A
// transaction cancelled as a deadlock's victim (SQLSTATE 40P01) is retried, as the application
// does; deadlocks counts them.
func postInRanges(t *testing.T, l *lab.Lab, c *pgx.Conn, ranges [2][2][2]int, deadlocks *atomic.Int32) {
	ctx := context.Background()
	worker := l.Conn("etl_nightly") // shares the beginning session's name: the run's
	// Gone with the run: left open, it would be an idle session of the batch in the next runs.
	defer worker.Close(ctx)
	// Both workers hold their first range before either asks for its second: where the ranges
	// cross, each round deadlocks once, whatever the machine's load. A retry does not wait.
	var holding [deadlockRounds]sync.WaitGroup
	// arrivals are each worker's arrival at each round's barrier, once: a worker that gives up
	// arrives at the rest on its way out, so that the other does not wait for ever.
	var arrivals [2][deadlockRounds]func()
	for round := range holding {
		holding[round].Add(2)
		for i := range arrivals {
			arrivals[i][round] = sync.OnceFunc(holding[round].Done)
		}
	}
	const post = `UPDATE accounts SET balance = balance + 1 WHERE id BETWEEN $1 AND $2`
	// arrive is the worker's arrival at the round's barrier; nil on a retry.
	attempt := func(conn *pgx.Conn, r [2][2]int, round int, arrive func()) error {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) // after a failed statement; a no-op after COMMIT
		if _, err := tx.Exec(ctx, post, r[0][0], r[0][1]); err != nil {
			return err
		}
		if arrive != nil {
			arrive()
			holding[round].Wait()
		}
		if _, err := tx.Exec(ctx, `SELECT pg_sleep($1)`, 0.2); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, post, r[1][0], r[1][1]); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	var wg sync.WaitGroup
	for i, conn := range []*pgx.Conn{c, worker} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				for _, arrive := range arrivals[i] {
					arrive()
				}
			}()
			for round := range deadlockRounds {
				for retry := false; ; retry = true {
					arrive := arrivals[i][round]
					if retry {
						arrive = nil
					}
					err := attempt(conn, ranges[i], round, arrive)
					var pgErr *pgconn.PgError
					if errors.As(err, &pgErr) && pgErr.Code == "40P01" {
						deadlocks.Add(1)
						continue // the application's retry
					}
					if err != nil {
						t.Errorf("worker %d, round %d: %v", i, round, err)
						return
					}
					break
				}
				if _, err := conn.Exec(ctx, `SELECT pg_sleep($1)`, 0.4); err != nil {
					t.Errorf("worker %d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestParallelWorkersDeadlockAndRetry: the batch's two workers usually update disjoint key
// ranges of the accounts. Tonight a deploy changed how the work is split: both update the same
// rows, in opposite orders (one 1-50 then 51-100, the other 51-100 then 1-50), so each round they
// deadlock: PostgreSQL finds the cycle after deadlock_timeout (1 s) and cancels one transaction
// (40P01), which the application retries once the other has committed. The truth an expert
// wants: lock_wait first, the batch's own sessions waiting for each other, that they deadlocked
// (and the work was retried), with advice to take the rows in one order or give each worker
// its own key range.
func TestParallelWorkersDeadlockAndRetry(t *testing.T) {
	var deadlocks atomic.Int32
	var deadlocksBefore int64
	lab.RunSlow(t, lab.SlowRun{Want: "lock_wait",
		Setup: func(l *lab.Lab) {
			deadlocks.Store(0) // each version's runs their own
			l.Exec(`CREATE TABLE public.accounts (id int PRIMARY KEY, balance int)`)
			l.Exec(`INSERT INTO public.accounts SELECT g, 0 FROM generate_series(1, 1000) g`)
		},
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			postInRanges(t, l, c, [2][2][2]int{{{1, 50}, {51, 100}}, {{101, 150}, {151, 200}}}, &deadlocks)
		},
		Between: func(t *testing.T, l *lab.Lab) {
			if n := deadlocks.Load(); n != 0 {
				t.Fatalf("%d deadlocks in the baseline runs, want none (disjoint ranges)", n)
			}
			if err := l.Admin.QueryRow(context.Background(), `SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`).Scan(&deadlocksBefore); err != nil {
				t.Fatal(err)
			}
		},
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			postInRanges(t, l, c, [2][2][2]int{{{1, 50}, {51, 100}}, {{51, 100}, {1, 50}}}, &deadlocks)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			ctx := context.Background()
			rows, err := l.Admin.Query(ctx, `SELECT pattern, severity, summary, coalesce(recommendation, '') FROM telemetry.diagnose_run_findings($1)`, runID)
			if err != nil {
				t.Fatal(err)
			}
			type finding struct{ Pattern, Severity, Summary, Recommendation string }
			found, err := pgx.CollectRows(rows, pgx.RowToStructByPos[finding])
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range found {
				t.Logf("%s %s\n  %s\n  fix: %s", f.Pattern, f.Severity, f.Summary, f.Recommendation)
			}
			// The server's own count, to compare with what the workers retried (a backend
			// reports its counts when idle, up to seconds later).
			n := deadlocks.Load()
			l.WaitFor("the deadlocks counted", `SELECT deadlocks - $1 >= $2 FROM pg_stat_database WHERE datname = current_database()`, deadlocksBefore, n)
			var deadlocksAfter int64
			if err := l.Admin.QueryRow(ctx, `SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()`).Scan(&deadlocksAfter); err != nil {
				t.Fatal(err)
			}
			if n < deadlockRounds || int64(n) != deadlocksAfter-deadlocksBefore {
				t.Fatalf("%d deadlocks retried in the slow run, pg_stat_database.deadlocks +%d: want the same, at least %d (one a round)",
					n, deadlocksAfter-deadlocksBefore, deadlockRounds)
			}
			if len(found) == 0 || found[0].Pattern != "lock_wait" {
				return // CheckFirstFinding said so
			}
			s, rec := found[0].Summary, found[0].Recommendation
			for _, want := range []string{`"UPDATE accounts SET balance`, "the batch's own session, pid", "wait for each other", "40P01"} {
				if !strings.Contains(s, want) {
					t.Errorf("lock_wait %q: want %q (the batch's own workers deadlocked)", s, want)
				}
			}
			// Each deadlock the lock samples saw both waits of: all of them but where the sampler
			// was late by more than deadlock_timeout (a loaded machine).
			if m := regexp.MustCompile(`Its sessions deadlocked (\d+) time\(s\)`).FindStringSubmatch(s); m == nil {
				t.Errorf("lock_wait %q: want how many times its sessions deadlocked (%d)", s, n)
			} else if k, _ := strconv.Atoi(m[1]); k < 1 || k > int(n) {
				t.Errorf("lock_wait %q: %d deadlock(s), want 1 to %d", s, k, n)
			}
			for _, want := range []string{"one order", "key range"} {
				if !strings.Contains(rec, want) {
					t.Errorf("lock_wait's advice %q: want %q (take the rows in one order, or give each worker its own rows)", rec, want)
				}
			}
		}})
}
