package morework_test

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// growthRows is the first baseline run's input; each later run has growthFactor times the rows
// of the one before (a business that grows every night): tonight's is 1.48 times the baseline
// median's, under statement_more_work_ratio (1.5).
const (
	growthRows   = 1_800_000
	growthFactor = 1.14
)

// stagedStatements are the batch's usual nightly work on its input of n rows (after the staging
// table is emptied): the input loaded, a transformation over it, an aggregate over it. Each is
// named by the start of its text in pg_stat_statements.
var stagedStatements = []string{
	`INSERT INTO work SELECT g, md5(g::text) FROM generate_series(`,
	`UPDATE work SET payload = upper(payload)`,
	`SELECT left(payload, `,
}

// stagedLoad runs the batch's nightly work on its input of n rows; it returns each of
// stagedStatements' time per input row, as the client saw it.
func stagedLoad(t *testing.T, c *pgx.Conn, n int) (perRow map[string]float64) {
	t.Helper()
	lab.MustExec(t, c, `TRUNCATE work`)
	perRow = map[string]float64{}
	for i, sql := range []string{
		`INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, $1::int) g`,
		`UPDATE work SET payload = upper(payload) WHERE id % 2 = 0`,
		`SELECT left(payload, 1), count(*), max(payload) FROM work GROUP BY 1`,
	} {
		start := time.Now()
		lab.MustExec(t, c, sql, slices.Repeat([]any{n}, strings.Count(sql, "$1"))...)
		perRow[stagedStatements[i]] = time.Since(start).Seconds() / float64(n)
	}
	return perRow
}

// reporting is another application's light, steady load on its own table (public.sales), in its
// own session c (the same session every run): small aggregates with pauses between, from now until
// stop; the same in every run. Stopped between statements, not cancelled: pgx closes a session
// whose statement's context is cancelled.
func reporting(t *testing.T, c *pgx.Conn) (stop func()) {
	t.Helper()
	var stopped atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stopped.Load(); i++ {
			_, err := c.Exec(context.Background(), `SELECT region, sum(amount) FROM sales WHERE day = $1 GROUP BY region`, i%30)
			if err == nil {
				_, err = c.Exec(context.Background(), `SELECT pg_sleep(0.2)`)
			}
			if err != nil {
				t.Errorf("reporting: %v", err)
				return
			}
		}
	}()
	return func() { stopped.Store(true); wg.Wait() }
}

// TestInputGrewSteadily: the batch's input grows 14% a night (five baseline runs and tonight's,
// each with 1.14 times the rows of the one before: tonight's is 1.48 times the baseline
// median's), another application (reporting) runs its light, steady load during every run
// alike, and tonight a DBA vacuums an unrelated table by hand during the run. Each statement
// takes about its usual time per row: the run is some 45% longer (3 s on an idle machine)
// because it had more to do. No statement is a regression, at any severity; more_work explains
// the run's extra time. (On a loaded 2-core machine the baseline runs took 5.5 to 11.6 s:
// tonight's may not be slow then, and its causes are info.) Before, growth under
// statement_more_work_ratio fell through to statement_regression ("slower at the same work",
// critical at 1.19 times the rows and the same time per row, a helper found).
//
// The premise, each statement at about its usual time per row, is the machine's to keep: on
// CI's loaded 2-core machine another package's server once took the CPU while tonight's
// aggregate ran, 3.2 times its baseline time per row, and statement_regression named it,
// rightly. A statement the client timed that much slower than its baseline's time for tonight's
// rows (statement_slower_ratio, less a tenth for the client's and the server's clocks measuring
// different spans) may be named statement_regression; any other may not. Its baseline's time is
// the diagnosis's: the baseline runs' median time scaled by tonight's rows over their median
// rows (the median of their times per row, the yardstick first used here, differed from it by
// 18% once on CI, PostgreSQL 17, where the baseline's later runs were slowed by the load: 1.30
// against the diagnosis's 1.54).
func TestInputGrewSteadily(t *testing.T) {
	var run int
	var baselinePerRow []map[string]float64
	var baselineRows []float64
	var tonightPerRow map[string]float64
	rows := func() int {
		n := int(growthRows * math.Pow(growthFactor, float64(run)))
		run++
		return n
	}
	var report, dba *pgx.Conn
	lab.RunSlow(t, lab.SlowRun{CheckAlone: true, BaselineRuns: 5,
		Setup: func(l *lab.Lab) {
			run, baselinePerRow, baselineRows = 0, nil, nil
			l.Exec(`CREATE TABLE public.sales (day int, region text, amount numeric)`)
			l.Exec(`INSERT INTO public.sales SELECT g % 30, 'r' || (g % 12), g % 1000 FROM generate_series(1, 60000) g`)
			l.Exec(`CREATE INDEX sales_day ON public.sales (day)`)
			l.Exec(`ANALYZE public.sales`)
			// An unrelated table with many dead rows, left for a manual VACUUM.
			l.Exec(`CREATE TABLE public.audit_log (id int, entry text) WITH (autovacuum_enabled = false)`)
			l.Exec(`INSERT INTO public.audit_log SELECT g, md5(g::text) FROM generate_series(1, 2000000) g`)
			l.Exec(`DELETE FROM public.audit_log WHERE id % 3 <> 0`)
			report = l.Conn("reporting")
			dba = l.Conn("psql")
		},
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			defer reporting(t, report)()
			n, start := rows(), time.Now()
			baselinePerRow = append(baselinePerRow, stagedLoad(t, c, n))
			baselineRows = append(baselineRows, float64(n))
			t.Logf("baseline run %d: %d rows in %s", run, n, time.Since(start).Round(time.Millisecond))
		},
		Slow: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			defer reporting(t, report)()
			n, start := rows(), time.Now()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(300 * time.Millisecond)
				vstart := time.Now()
				if _, err := dba.Exec(context.Background(), `VACUUM public.audit_log`); err != nil {
					t.Errorf("VACUUM public.audit_log: %v", err)
				}
				t.Logf("VACUUM public.audit_log took %s", time.Since(vstart).Round(time.Millisecond))
			}()
			tonightPerRow = stagedLoad(t, c, n)
			wg.Wait()
			t.Logf("judged run: %d rows in %s", n, time.Since(start).Round(time.Millisecond))
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			var durations string
			if err := l.Admin.QueryRow(context.Background(), `SELECT string_agg(format('%s %s s', run_id, round(extract(epoch FROM ended_at - started_at)::numeric, 2)), ', ' ORDER BY run_id)
				FROM telemetry.batch_runs WHERE batch = 'nightly'`).Scan(&durations); err != nil {
				t.Fatal(err)
			}
			t.Logf("runs: %s", durations)
			var slowerRatio float64
			if err := l.Admin.QueryRow(context.Background(), `SELECT telemetry._threshold('statement_slower_ratio')::float8`).Scan(&slowerRatio); err != nil {
				t.Fatal(err)
			}
			// slowerPerRow: how many times its baseline's time for tonight's rows the statement took
			// tonight: the baseline runs' median time over their median rows.
			slowerPerRow := func(statement string) float64 {
				var seconds []float64
				for i, b := range baselinePerRow {
					seconds = append(seconds, b[statement]*baselineRows[i])
				}
				rows := slices.Clone(baselineRows)
				slices.Sort(seconds)
				slices.Sort(rows)
				return tonightPerRow[statement] / (seconds[len(seconds)/2] / rows[len(rows)/2])
			}
			for _, f := range d.Findings {
				t.Logf("%s %s: %s", f.Pattern, f.Severity, f.Summary)
				if f.Pattern != "statement_regression" {
					continue
				}
				if len(f.Children) == 0 {
					t.Errorf("run %d: statement_regression (%s) without its statements: %s", runID, f.Severity, f.Summary)
				}
				for _, child := range f.Children {
					i := slices.IndexFunc(stagedStatements, func(s string) bool { return child.Query != nil && strings.HasPrefix(*child.Query, s) })
					if i < 0 {
						t.Errorf("run %d: statement_regression (%s) names %d, not the batch's: %s", runID, f.Severity, child.QueryID, f.Summary)
						continue
					}
					if ratio := slowerPerRow(stagedStatements[i]); ratio < slowerRatio/1.1 {
						t.Errorf("run %d: statement_regression (%s) for %q, which took %.2f times its baseline's time for tonight's rows: %s",
							runID, f.Severity, stagedStatements[i], ratio, f.Summary)
					} else {
						t.Logf("%q took %.2f times its baseline's time for tonight's rows (the machine's load): its statement_regression is due", stagedStatements[i], ratio)
					}
				}
			}
			// Where the run took longer than its baseline median, the growth explains it.
			explained := false
			for _, f := range d.Findings {
				explained = explained || f.Pattern == "more_work" && strings.Contains(f.Summary, "work")
			}
			if d.ExtraSeconds != nil && *d.ExtraSeconds > 0.5 && !explained {
				t.Errorf("run %d: %.1f s more than the baseline median and no more_work of the batch's statements on work", runID, *d.ExtraSeconds)
			}
		}})
}
