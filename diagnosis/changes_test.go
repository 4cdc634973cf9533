package diagnosis

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// changeScenario is a batch run normally, then something changed between runs (issue 20): the
// next run's diagnosis names the change first, above info, with the statement it slowed as
// its child; or, where want is "", nothing above info.
type changeScenario struct {
	want      string // the change's kind (run_changes), the first finding
	statement string // a fragment of the slowed statement's text
	setup     func(t *testing.T, l *lab.Lab)
	work      func(t *testing.T, l *lab.Lab, c *pgx.Conn)
	change    func(t *testing.T, l *lab.Lab)
	// private: the lab gets a server of its own (the change restarts it).
	private bool
	// restart is called with the lab's private server as the change.
	restart func(t *testing.T, srv *pgtest.Server, l *lab.Lab)
}

// baselineRuns are the normal runs before the change.
const baselineRuns = 2

func runChangeScenario(t *testing.T, s changeScenario) {
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			var srv *pgtest.Server
			if s.private {
				srv = pgtest.StartWith(t, major, pgtest.Options{Private: true})
			} else {
				srv = pgtest.Start(t, major)
			}
			l := lab.NewOn(t, srv)
			l.Exec(`CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public`)
			l.PrepareWork()
			if s.setup != nil {
				s.setup(t, l)
			}
			for range baselineRuns {
				l.Run("nightly", func(c *pgx.Conn) { s.work(t, l, c) })
			}
			if s.change != nil {
				s.change(t, l)
			}
			if s.restart != nil {
				s.restart(t, srv, l)
			}
			runID := l.Run("nightly", func(c *pgx.Conn) { s.work(t, l, c) })
			l.CheckFirstFinding(runID, s.want)
			if s.want == "" {
				return
			}
			var statements []byte
			if err := l.Admin.QueryRow(context.Background(), `SELECT statements FROM telemetry.run_changes($1) WHERE kind = $2 LIMIT 1`,
				runID, s.want).Scan(&statements); err != nil {
				t.Fatalf("run_changes of run %d has no %s: %v", runID, s.want, err)
			}
			var slowed []struct{ Query string }
			if err := json.Unmarshal(statements, &slowed); err != nil {
				t.Fatal(err)
			}
			if len(slowed) == 0 || !strings.Contains(slowed[0].Query, s.statement) {
				t.Errorf("%s: slowed statements %s, want %q first", s.want, statements, s.statement)
			}
		})
	}
}

// lookups runs n point lookups on work's id: an index scan each, with its index.
func lookups(t *testing.T, c *pgx.Conn, n int) {
	t.Helper()
	for i := range n {
		lab.MustExec(t, c, `SELECT payload FROM work WHERE id = $1`, 1+i*997)
	}
}

// TestIndexDroppedScenario: the index the batch's lookups used is dropped between runs.
func TestIndexDroppedScenario(t *testing.T) {
	runChangeScenario(t, changeScenario{want: "index_dropped", statement: "SELECT payload FROM work WHERE id",
		setup: func(t *testing.T, l *lab.Lab) {
			l.Exec(`INSERT INTO public.work SELECT g, md5(g::text) FROM generate_series(1, 200000) g`)
			l.Exec(`CREATE INDEX work_id ON public.work (id)`)
			l.Exec(`ANALYZE public.work`)
		},
		work: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			lookups(t, c, 100)
		},
		change: func(t *testing.T, l *lab.Lab) { l.Exec(`DROP INDEX public.work_id`) }})
}

// TestStaleStatisticsScenario: a bulk update between runs, on a table autovacuum leaves alone
// (autovacuum_enabled = false, as PrepareWork makes it) and nobody analyzes: the planner still
// believes no row is 'pending' and reads the 150,000 that are through the index, row by row.
func TestStaleStatisticsScenario(t *testing.T) {
	runChangeScenario(t, changeScenario{want: "statistics_stale", statement: "SELECT count(*) FROM work",
		setup: func(t *testing.T, l *lab.Lab) {
			l.Exec(`INSERT INTO public.work SELECT g, 'done' FROM generate_series(1, 200000) g`)
			l.Exec(`CREATE INDEX work_payload ON public.work (payload)`)
			l.Exec(`ANALYZE public.work`)
		},
		work: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			for range 10 {
				lab.MustExec(t, c, `SELECT count(*) FROM work WHERE payload = 'pending'`)
			}
		},
		change: func(t *testing.T, l *lab.Lab) {
			l.Exec(`UPDATE public.work SET payload = 'pending' WHERE id <= 150000`)
			// The statistics the next run's start reads: the updating session's, once flushed.
			l.WaitFor("the update counted", `SELECT n_mod_since_analyze >= 150000 FROM pg_stat_all_tables WHERE relid = 'public.work'::regclass`)
		}})
}

// TestRoleWorkMemScenario: work_mem lowered for the batch's role in its database (ALTER ROLE
// ... IN DATABASE ... SET): its NOT IN subquery no longer fits a hash table, and is scanned
// again for every row instead.
func TestRoleWorkMemScenario(t *testing.T) {
	runChangeScenario(t, changeScenario{want: "role_setting_changed", statement: "SELECT count(*) FROM work WHERE id NOT IN",
		setup: func(t *testing.T, l *lab.Lab) {
			l.Exec(`INSERT INTO public.work SELECT g, md5(g::text) FROM generate_series(1, 2000) g`)
			l.Exec(`CREATE TABLE public.other AS SELECT 100000 + g AS k FROM generate_series(1, 5000) g`)
			l.Exec(`ANALYZE public.work, public.other`)
		},
		work: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, 3*time.Second) // a run long enough to start on its own snapshot on a loaded machine
			lab.MustExec(t, c, `SELECT count(*) FROM work WHERE id NOT IN (SELECT k FROM other)`)
		},
		change: func(t *testing.T, l *lab.Lab) {
			l.Exec(`DO $$ BEGIN EXECUTE format('ALTER ROLE %I IN DATABASE %I SET work_mem = ''64kB''', current_user, current_database()); END $$`)
		}})
}

// TestRestartScenario: the server restarted between runs, and a statement is slower after it.
// A restart leaves the OS cache warm, so reads do not reliably slow a test: a longer sleep in
// the same statement (its length read from a table the batch does not lock) stands for the
// cold shared buffers.
func TestRestartScenario(t *testing.T) {
	runChangeScenario(t, changeScenario{want: "server_restarted", statement: "SELECT pg_sleep", private: true,
		setup: func(t *testing.T, l *lab.Lab) {
			l.Exec(`CREATE TABLE public.sleep_for AS SELECT 0.05::float8 AS seconds`)
		},
		work: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			for range 5 {
				lab.MustExec(t, c, `SELECT pg_sleep((SELECT seconds FROM sleep_for))`)
			}
		},
		restart: func(t *testing.T, srv *pgtest.Server, l *lab.Lab) {
			srv.Restart(t)
			l.Admin.Reset() // its connections died with the server
			// The recorder listens again and has read the new start, so that the markers'
			// snapshots are its own.
			l.WaitFor("the recorder listening", `SELECT telemetry._recorder_listening()`)
			l.Exec(`SELECT telemetry.request_snapshot()`)
			l.WaitFor("the new start recorded", `SELECT EXISTS (SELECT FROM telemetry.server_settings s
				WHERE (s.settings ->> 'start_time')::timestamptz = pg_postmaster_start_time())`)
			l.Exec(`UPDATE public.sleep_for SET seconds = 0.4`)
		}})
}

// TestUnrelatedChangesScenario: between runs, a logging setting changed for the batch's
// database and an index created on a table the batch does not touch: named at info, never
// blamed.
func TestUnrelatedChangesScenario(t *testing.T) {
	runChangeScenario(t, changeScenario{
		setup: func(t *testing.T, l *lab.Lab) {
			l.Exec(`CREATE TABLE public.elsewhere (id int)`)
		},
		work: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 5000) g`)
		},
		change: func(t *testing.T, l *lab.Lab) {
			l.Exec(`DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET log_min_duration_statement = ''10s''', current_database()); END $$`)
			l.Exec(`CREATE INDEX elsewhere_id ON public.elsewhere (id)`)
		}})
}
