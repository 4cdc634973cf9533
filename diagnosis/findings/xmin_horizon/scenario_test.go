package xminhorizon_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// counterUpdates is the batch's work: 60,000 updates of 10 counters, each committed (a
// procedure: the client's round trips stay out of it). Usually each update's page is pruned
// of the versions before it as it goes; with the cleanup horizon held, every version stays,
// and each update's index lookup walks all of its counter's versions so far.
func counterUpdates(t *testing.T, _ *lab.Lab, c *pgx.Conn) {
	lab.MustExec(t, c, `CALL public.bump_counters(60000)`)
}

// counters creates the batch's table, analyzed once, with autovacuum off as the lab's own
// (PrepareWork): an autoanalyze between two runs, or none, made its 60,000 updates on 10 rows
// stale statistics since the baseline in one run and not the others, what_changed's before
// the horizon's.
func counters(l *lab.Lab) {
	l.Exec(`CREATE TABLE public.counters (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0) WITH (autovacuum_enabled = false)`)
	l.Exec(`INSERT INTO public.counters (id) SELECT generate_series(1, 10)`)
	l.Exec(`CREATE PROCEDURE public.bump_counters(p_updates int) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..p_updates LOOP
        UPDATE public.counters SET n = n + 1 WHERE id = i % 10 + 1;
        COMMIT;
    END LOOP;
END $$`)
	l.Exec(`VACUUM ANALYZE public.counters`)
}

// holdSnapshot opens a REPEATABLE READ transaction on c that reads table, left open until the
// test ends: it holds the horizon from before the run to after it. (The run's samples, a
// second apart, see it from the first on.)
func holdSnapshot(t *testing.T, c *pgx.Conn, table string) {
	lab.MustExec(t, c, `BEGIN ISOLATION LEVEL REPEATABLE READ`)
	lab.MustExec(t, c, `SELECT count(*) FROM `+table)
}

// heldPct is the share of the run the horizon was held, as the diagnosis measured it.
func heldPct(t *testing.T, l *lab.Lab, runID int64) float64 {
	var held float64
	if err := l.Admin.QueryRow(context.Background(), `SELECT held_pct FROM telemetry._runs_xmin_horizon($1) WHERE this_run`, runID).Scan(&held); err != nil {
		t.Fatal(err)
	}
	return held
}

// TestLongTransactionHoldsHorizon: tonight a reporting session sits idle in a REPEATABLE READ
// transaction it opened before the run, until after it: no row version the batch replaces can be removed, and
// the same updates take longer, reading more blocks each. The held horizon is the cause, first,
// with the session that held it; not a changed plan.
func TestLongTransactionHoldsHorizon(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "xmin_horizon",
		Setup:   counters,
		Usual:   counterUpdates,
		Between: func(t *testing.T, l *lab.Lab) { holdSnapshot(t, l.Conn("reporting"), "public.counters") },
		Slow:    counterUpdates,
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, "reporting") || !strings.Contains(s, "idle in transaction") {
				t.Errorf("xmin_horizon %q: want the reporting session, idle in transaction, named", s)
			}
		}})
}

// TestForgottenPreparedTransaction: a transaction prepared before the run (two-phase commit
// whose coordinator never finished it) holds the horizon as long as it stays prepared: the
// cause, first, naming it and how to finish it.
func TestForgottenPreparedTransaction(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "xmin_horizon",
		Server: func(t *testing.T, major int) *pgtest.Server {
			return pgtest.StartWith(t, major, pgtest.Options{Settings: map[string]string{"max_prepared_transactions": "5"}})
		},
		Setup: counters,
		Usual: counterUpdates,
		Between: func(t *testing.T, l *lab.Lab) {
			l.Exec(`BEGIN; INSERT INTO public.work VALUES (1, 'in doubt'); PREPARE TRANSACTION 'xmin_horizon_test'`)
		},
		Slow:  counterUpdates,
		After: func(l *lab.Lab, _ int64) { l.Exec(`ROLLBACK PREPARED 'xmin_horizon_test'`) },
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, `prepared transaction "xmin_horizon_test"`) {
				t.Errorf("xmin_horizon %q: want the prepared transaction named", s)
			}
		}})
}

// TestDroppedIndexNotBlamedOnHeldHorizon: the index of the lookups' table (tracked) was dropped
// tonight, and a report holds the horizon through the run, as in
// TestLongTransactionHoldsHorizon: the lookups read more blocks per call, but the change since
// the baseline runs is the cause, first.
func TestDroppedIndexNotBlamedOnHeldHorizon(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "index_dropped",
		Setup: func(l *lab.Lab) {
			lab.LookupTable(l)
			l.Exec(`SELECT telemetry.track_table('lookup')`)
		},
		Usual: lab.Lookups,
		Between: func(t *testing.T, l *lab.Lab) {
			l.Exec(`DROP INDEX public.lookup_k`)
			holdSnapshot(t, l.Conn("reporting"), "public.lookup")
		},
		Slow: lab.Lookups,
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if held := heldPct(t, l, runID); held < 50 {
				t.Errorf("the horizon held for %.1f%% of the run, want it judged held (50%%)", held)
			}
			for _, f := range d.Findings {
				if f.Pattern == "xmin_horizon" {
					t.Errorf("xmin_horizon named (%s): the dropped index is the cause", f.Summary)
				}
			}
		}})
}

// TestHolderInAnotherDatabase: a REPEATABLE READ transaction of another database stays open
// through the run: pruning and vacuum of this database's tables do not wait for it, and the
// updates take their usual time. The run is slower for a pause of its own (a new statement,
// first): the horizon is not judged held, nor named.
func TestHolderInAnotherDatabase(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "new_statement",
		Setup: counters,
		Usual: counterUpdates,
		Between: func(t *testing.T, l *lab.Lab) {
			cfg := l.Admin.Config().ConnConfig.Copy()
			cfg.Database = "postgres"
			cfg.RuntimeParams["application_name"] = "reporting"
			other, err := pgx.ConnectConfig(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { other.Close(context.Background()) })
			holdSnapshot(t, other, "pg_class")
		},
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			counterUpdates(t, l, c)
			lab.MustExec(t, c, `SELECT pg_sleep(3)`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			// (This database's own brief holders, an autovacuum's ANALYZE, may count a little.)
			var held float64
			var holder *string
			if err := l.Admin.QueryRow(context.Background(), `SELECT held_pct, holder->>'name' FROM telemetry._runs_xmin_horizon($1) WHERE this_run`,
				runID).Scan(&held, &holder); err != nil {
				t.Fatal(err)
			}
			if held >= 50 || holder != nil && *holder == "reporting" {
				t.Errorf("the horizon held for %.1f%% of the run by %v, want another database's transaction not counted", held, holder)
			}
			for _, f := range d.Findings {
				if f.Pattern == "xmin_horizon" {
					t.Errorf("xmin_horizon named (%s): the holder is another database's", f.Summary)
				}
			}
		},
	})
}
