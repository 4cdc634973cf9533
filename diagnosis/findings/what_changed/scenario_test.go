package whatchanged_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// slowed checks that the first finding, the change, has the statement under it. The text is
// the first one the server kept for the statement: another test's may differ in how it names
// the table (work or public.work, the same statement to PostgreSQL 18).
func slowed(statement string) func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
	return func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
		t.Helper()
		if len(d.Findings) == 0 || len(d.Findings[0].Children) == 0 || d.Findings[0].Children[0].Query == nil ||
			!strings.Contains(*d.Findings[0].Children[0].Query, statement) {
			t.Errorf("run %d: the change's first statement is not %q: %+v", runID, statement, d.Findings)
		}
	}
}

// TestIndexDropped: the index the batch's lookups used was dropped between runs.
func TestIndexDropped(t *testing.T) {
	lookups := func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		lab.CPU(t, c, time.Second)
		// Once the index is gone, each is a sequential scan of 200,000 rows (some 10 ms idle):
		// 500 of them are 5 s more, well above what a starved test client adds between its
		// statements on a loaded machine (1.3 s seen in CI).
		for i := range 500 {
			lab.MustExec(t, c, `SELECT payload FROM work WHERE id = $1`, 1+i*397)
		}
	}
	lab.RunSlow(t, lab.SlowRun{Want: "index_dropped",
		Setup: func(l *lab.Lab) {
			l.Exec(`INSERT INTO public.work SELECT g, md5(g::text) FROM generate_series(1, 200000) g`)
			l.Exec(`CREATE INDEX work_id ON public.work (id)`)
			l.Exec(`ANALYZE public.work`)
		},
		Usual:   lookups,
		Between: func(t *testing.T, l *lab.Lab) { l.Exec(`DROP INDEX public.work_id`) },
		Check:   slowed("SELECT payload FROM work WHERE id")})
}

// auditFunction creates public.<table>_audit, and the trigger function of the same name that
// writes each row it fires for there as JSON.
func auditFunction(l *lab.Lab, table string) {
	l.Exec(fmt.Sprintf(`CREATE TABLE public.%[1]s_audit (at timestamptz, op text, data jsonb)`, table))
	l.Exec(fmt.Sprintf(`CREATE FUNCTION public.%[1]s_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
		INSERT INTO public.%[1]s_audit VALUES (clock_timestamp(), TG_OP, to_jsonb(NEW) || jsonb_build_object('by', current_user));
		RETURN NULL; END $$`, table))
}

// TestTriggerAdded: an audit trigger was added to the table the batch loads (emptied first,
// as a staging table is): each row it inserts now also writes a row of JSON to an audit
// table. A million rows, some 6 s more on an idle machine (6 µs a row), over three times what
// a starved test client adds in CI (1.3 s).
func TestTriggerAdded(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "trigger_created",
		Setup: func(l *lab.Lab) { auditFunction(l, "work") },
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			lab.MustExec(t, c, `TRUNCATE work`)
			lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 1000000) g`)
		},
		Between: func(t *testing.T, l *lab.Lab) {
			l.Exec(`CREATE TRIGGER work_audit AFTER INSERT OR UPDATE ON public.work FOR EACH ROW EXECUTE FUNCTION public.work_audit()`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			slowed("work SELECT g, md5(g::text)")(t, l, runID, d)
			l.WaitFor("the trigger named with its definition", `SELECT EXISTS (SELECT FROM telemetry.run_changes($1)
				WHERE kind = 'trigger_created' AND object = 'work_audit on public.work' AND new LIKE 'CREATE TRIGGER work_audit AFTER INSERT OR UPDATE ON public.work%')`, runID)
		}})
}

// TestTriggerAddedOnPartitionedTable: the same audit trigger, created on the partitioned table
// the batch loads: its partitions get copies of it, and the change is the one trigger, once.
func TestTriggerAddedOnPartitionedTable(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "trigger_created",
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.events (id int, day date, payload text) PARTITION BY RANGE (day)`)
			l.Exec(`CREATE TABLE public.events_1 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2026-01-02')`)
			l.Exec(`CREATE TABLE public.events_2 PARTITION OF public.events FOR VALUES FROM ('2026-01-02') TO ('2026-01-03')`)
			auditFunction(l, "events")
		},
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			lab.MustExec(t, c, `TRUNCATE events`)
			lab.MustExec(t, c, `INSERT INTO events SELECT g, date '2026-01-01' + g % 2, md5(g::text) FROM generate_series(1, 1000000) g`)
		},
		Between: func(t *testing.T, l *lab.Lab) {
			l.Exec(`CREATE TRIGGER events_audit AFTER INSERT ON public.events FOR EACH ROW EXECUTE FUNCTION public.events_audit()`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			slowed("events SELECT g")(t, l, runID, d)
			l.WaitFor("the trigger named once, as the partitioned table's", `SELECT array_agg(object) = '{events_audit on public.events}'
				FROM telemetry.run_changes($1) WHERE kind LIKE 'trigger%'`, runID)
		}})
}

// TestForeignKeyAdded: a foreign key was added to a table referencing the one the batch purges,
// without an index on its referencing column: each row the batch deletes is looked for in the
// 200,000 rows of the referencing table by a scan. 700 rows, some 5 s more on an idle machine.
func TestForeignKeyAdded(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "foreign_key_added",
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.parent (id int PRIMARY KEY)`)
			l.Exec(`INSERT INTO public.parent SELECT generate_series(1, 20000)`)
			l.Exec(`CREATE TABLE public.child (id int, parent_id int)`)
			l.Exec(`INSERT INTO public.child SELECT g, 1 + g % 19300 FROM generate_series(1, 200000) g`)
			l.Exec(`ANALYZE public.parent, public.child`)
		},
		// The purge and the reload in one transaction with the batch's other work: the wait
		// sampler sees the batch hold the table's lock in its normal runs too, and so learns
		// the table whose state the runs' boundaries keep.
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.MustExec(t, c, `BEGIN`)
			lab.MustExec(t, c, `DELETE FROM parent WHERE id > 19300`)
			lab.CPU(t, c, time.Second)
			lab.MustExec(t, c, `INSERT INTO parent SELECT generate_series(19301, 20000)`)
			lab.MustExec(t, c, `COMMIT`)
		},
		Between: func(t *testing.T, l *lab.Lab) {
			l.Exec(`ALTER TABLE public.child ADD CONSTRAINT child_parent FOREIGN KEY (parent_id) REFERENCES public.parent (id)`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			slowed("parent WHERE id >")(t, l, runID, d)
			l.WaitFor("the key named, on the referenced side", `SELECT EXISTS (SELECT FROM telemetry.run_changes($1)
				WHERE kind = 'foreign_key_added' AND object = 'child_parent on public.child' AND detail LIKE 'each row the batch deletes from public.parent%')`, runID)
		}})
}

// TestStaleStatistics: a bulk update between runs, on a table autovacuum leaves alone
// (autovacuum_enabled = false, as PrepareWork makes it) and nobody analyzes: the planner still
// believes no row is 'pending' and reads the 150,000 that are through the index, row by row.
func TestStaleStatistics(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "statistics_stale",
		Setup: func(l *lab.Lab) {
			l.Exec(`INSERT INTO public.work SELECT g, 'done' FROM generate_series(1, 200000) g`)
			l.Exec(`CREATE INDEX work_payload ON public.work (payload)`)
			// The insert's counts reach the shared statistics when its session flushes them: the
			// ANALYZE comes after, or the baseline runs would start with every row modified.
			l.WaitFor("the insert counted", `SELECT n_mod_since_analyze >= 200000 FROM pg_stat_all_tables WHERE relid = 'public.work'::regclass`)
			l.Exec(`ANALYZE public.work`)
			l.WaitFor("the analyze counted", `SELECT n_mod_since_analyze = 0 FROM pg_stat_all_tables WHERE relid = 'public.work'::regclass`)
		},
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			// 300 lookups: at some 18 ms each through the index once stale (150,000 rows, not
			// none), a run 5 s slower on an idle machine, well above what a starved test client
			// adds between its statements (1.3 s seen in CI, where 100 lookups made 1.0 s).
			for range 300 {
				lab.MustExec(t, c, `SELECT count(*) FROM work WHERE payload = 'pending'`)
			}
		},
		Between: func(t *testing.T, l *lab.Lab) {
			l.Exec(`UPDATE public.work SET payload = 'pending' WHERE id <= 150000`)
			// The statistics the next run's start reads: the updating session's, once flushed.
			l.WaitFor("the update counted", `SELECT n_mod_since_analyze >= 150000 FROM pg_stat_all_tables WHERE relid = 'public.work'::regclass`)
		},
		Check: slowed("SELECT count(*) FROM work WHERE payload")})
}

// TestRoleWorkMem: work_mem lowered for the batch's role in its database (ALTER ROLE ... IN
// DATABASE ... SET): its NOT IN subquery no longer fits a hash table, and is scanned again for
// every row instead.
func TestRoleWorkMem(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "role_setting_changed",
		Setup: func(l *lab.Lab) {
			l.Exec(`INSERT INTO public.work SELECT g, md5(g::text) FROM generate_series(1, 10000) g`)
			l.Exec(`CREATE TABLE public.other AS SELECT 100000 + g AS k FROM generate_series(1, 10000) g`)
			l.Exec(`ANALYZE public.work, public.other`)
		},
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			lab.MustExec(t, c, `SELECT count(*) FROM work WHERE id NOT IN (SELECT k FROM other)`)
		},
		Between: func(t *testing.T, l *lab.Lab) {
			l.Exec(`DO $$ BEGIN EXECUTE format('ALTER ROLE %I IN DATABASE %I SET work_mem = ''64kB''', current_user, current_database()); END $$`)
		},
		Check: slowed("SELECT count(*) FROM work WHERE id NOT IN")})
}

// TestRestart: the server restarted between runs (a server of the test's own), and a statement
// is slower after it. A restart leaves the OS cache warm, so reads do not reliably slow a test:
// a longer sleep in the same statement (its length read from a table) stands for the cold
// shared buffers: 10 calls 0.45 s longer, 4.5 s more, over three times what a starved test
// client adds in CI (1.3 s).
func TestRestart(t *testing.T) {
	var srv *pgtest.Server // RunSlow runs the versions one after the other
	lab.RunSlow(t, lab.SlowRun{Want: "server_restarted",
		Server: func(t *testing.T, major int) *pgtest.Server {
			srv = pgtest.StartWith(t, major, pgtest.Options{Private: true})
			return srv
		},
		Setup: func(l *lab.Lab) { l.Exec(`CREATE TABLE public.sleep_for AS SELECT 0.05::float8 AS seconds`) },
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, time.Second)
			for range 10 {
				lab.MustExec(t, c, `SELECT pg_sleep((SELECT seconds FROM sleep_for))`)
			}
		},
		Between: func(t *testing.T, l *lab.Lab) {
			srv.Restart(t)
			l.Admin.Reset() // its connections died with the server
			// The recorder listens again and has read the new start, so that the markers'
			// snapshots are its own.
			l.WaitFor("the recorder listening", `SELECT telemetry._recorder_listening()`)
			l.Exec(`SELECT telemetry.request_snapshot()`)
			l.WaitFor("the new start recorded", `SELECT EXISTS (SELECT FROM telemetry.server_settings s
				WHERE (s.settings ->> 'start_time')::timestamptz = pg_postmaster_start_time())`)
			l.Exec(`UPDATE public.sleep_for SET seconds = 0.5`)
		},
		Check: slowed("SELECT pg_sleep")})
}

// TestUnrelatedChanges: between runs, a logging setting changed for the batch's database and
// an index was created on a table the batch does not touch: nothing above info, and the
// setting listed by run_changes as one that cannot slow the batch.
func TestUnrelatedChanges(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "",
		Setup: func(l *lab.Lab) { l.Exec(`CREATE TABLE public.elsewhere (id int)`) },
		Usual: func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
			lab.CPU(t, c, 2*time.Second)
			lab.MustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 5000) g`)
			lab.MustExec(t, c, `SELECT pg_sleep($1)`, 0.5)
		},
		Between: func(t *testing.T, l *lab.Lab) {
			l.Exec(`DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET log_min_duration_statement = ''10s''', current_database()); END $$`)
			l.Exec(`CREATE INDEX elsewhere_id ON public.elsewhere (id)`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			l.WaitFor("the setting listed, not blamed", `SELECT EXISTS (SELECT FROM telemetry.run_changes($1)
				WHERE kind = 'role_setting_changed' AND NOT affects AND severity = 'info')
				AND NOT EXISTS (SELECT FROM telemetry.run_changes($1) WHERE object LIKE 'elsewhere_id%')`, runID)
		}})
}
