package parallelworkers_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// scans are the batch's parallel scans: the planner asks for workers at any size. Each row
// waits a millisecond in a function (a lookup in another service, say): work that waits, not
// computes, so that workers divide it even where the machine's cores are busy (a scan that only
// computes gains nothing from workers on a loaded two-core machine). Three workers beside the
// leader (the most public.wide's pages ask for): a scan of its 1000 rows, 2 s alone (a
// millisecond's sleep takes about two), takes some 0.6 s with them, so a run whose workers are
// not launched is over 4 s longer, more than three times what a starved test client adds in CI
// (1.3 s), in less time than with two workers.
func scans(t *testing.T, c *pgx.Conn) {
	for _, set := range []string{`SET parallel_setup_cost = 0`, `SET parallel_tuple_cost = 0`, `SET min_parallel_table_scan_size = 0`,
		`SET max_parallel_workers_per_gather = 3`} {
		lab.MustExec(t, c, set)
	}
	for range 3 {
		lab.MustExec(t, c, `SELECT count(*) FROM public.wide WHERE public.remote_check(id)`)
	}
}

// TestWorkersNotLaunched (issue 20): in the slow run the server has no parallel worker for the
// batch (max_parallel_workers = 0 in its session): its scans planned workers and ran alone.
// Seen in its plans (auto_explain) and, on 18, in pg_stat_statements 1.12.
func TestWorkersNotLaunched(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "parallel_workers_not_launched", Server: lab.JSONLogServer, Options: lab.PlanCapture,
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.wide (id int, v text)`)
			l.Exec(`INSERT INTO public.wide SELECT g, md5(g::text) FROM generate_series(1, 1000) g`)
			l.Exec(`ANALYZE public.wide`)
			l.Exec(`CREATE FUNCTION public.remote_check(int) RETURNS boolean LANGUAGE plpgsql PARALLEL SAFE COST 100000
				AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN true; END $$`)
		},
		Usual: func(t *testing.T, _ *lab.Lab, c *pgx.Conn) { scans(t, c) },
		Slow: func(t *testing.T, _ *lab.Lab, c *pgx.Conn) {
			lab.MustExec(t, c, `SET max_parallel_workers = 0`)
			scans(t, c)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, _ *lab.RunDiagnosis) {
			var version int
			var short bool
			if err := l.Admin.QueryRow(context.Background(), `SELECT current_setting('server_version_num')::int,
				EXISTS (SELECT FROM telemetry._run_parallel_workers($1) WHERE launched < to_launch)`, runID).Scan(&version, &short); err != nil {
				t.Fatal(err)
			}
			if version >= 180000 && !short {
				t.Errorf("pg_stat_statements 1.12 does not show the workers not launched")
			}
		}})
}
