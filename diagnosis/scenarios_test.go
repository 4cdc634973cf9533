package diagnosis

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Each scenario is a batch with one cause injected; the diagnosis of its run must name that
// cause first (or, for the clean run, find nothing above info).
type scenario struct {
	name  string
	want  string // the first finding's pattern; "" for none above info
	setup func(l *lab)
	work  func(t *testing.T, l *lab, c *pgx.Conn)
}

var scenarios = []scenario{
	{name: "clean", want: "",
		work: func(t *testing.T, l *lab, c *pgx.Conn) {
			cpu(t, c, time.Second)
			mustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
			cpu(t, c, time.Second)
		}},
	{name: "lock", want: "lock_contention",
		// Another session holds the batch's table for a third of the run.
		work: func(t *testing.T, l *lab, c *pgx.Conn) {
			cpu(t, c, time.Second)
			other := l.conn("reporting")
			mustExec(t, other, `BEGIN`)
			mustExec(t, other, `LOCK TABLE work IN SHARE MODE`)
			release := time.AfterFunc(1200*time.Millisecond, func() { other.Exec(context.Background(), `COMMIT`) })
			defer release.Stop()
			mustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
			cpu(t, c, time.Second)
		}},
	{name: "checkpoint", want: "checkpoint_interference",
		// Someone forces checkpoints while the batch writes.
		work: func(t *testing.T, l *lab, c *pgx.Conn) {
			dba := l.conn("dba")
			for range 3 {
				mustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
				mustExec(t, dba, `CHECKPOINT`)
				cpu(t, c, 500*time.Millisecond)
			}
		}},
	{name: "temp", want: "temp_file_spills",
		// A sort that does not fit in work_mem.
		work: func(t *testing.T, l *lab, c *pgx.Conn) {
			cpu(t, c, 500*time.Millisecond)
			mustExec(t, c, `SET work_mem = '1MB'`)
			mustExec(t, c, `SELECT count(*) FROM (SELECT md5(g::text) FROM generate_series(1, 1500000) g ORDER BY 1) s`)
			mustExec(t, c, `RESET work_mem`)
			cpu(t, c, 500*time.Millisecond)
		}},
	{name: "autovacuum", want: "autovacuum_interference",
		// Autovacuum works on the batch's (tracked) table all through the run, slowed to a crawl.
		setup: func(l *lab) {
			l.exec(`ALTER TABLE public.work SET (autovacuum_enabled = true, autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1)`)
			l.exec(`INSERT INTO public.work SELECT g, md5(g::text) FROM generate_series(1, 50000) g`)
			l.exec(`DELETE FROM public.work`)
			l.waitFor("autovacuum on work", `SELECT EXISTS (SELECT FROM pg_stat_progress_vacuum WHERE relid = 'public.work'::regclass)`)
		},
		work: func(t *testing.T, l *lab, c *pgx.Conn) {
			cpu(t, c, time.Second)
			mustExec(t, c, `INSERT INTO work SELECT g, md5(g::text) FROM generate_series(1, 20000) g`)
			cpu(t, c, time.Second)
		}},
}

// prepare creates the batch's table, tracked, with autovacuum off: only the autovacuum
// scenario lets it run.
func prepare(l *lab) {
	l.exec(`CREATE TABLE public.work (id int, payload text) WITH (autovacuum_enabled = false)`)
	l.exec(`SELECT telemetry.track_table('work')`)
}

func TestScenarios(t *testing.T) {
	for _, major := range []int{15, 17} {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			for _, s := range scenarios {
				t.Run(s.name, func(t *testing.T) {
					l := newLab(t, major)
					prepare(l)
					if s.setup != nil {
						s.setup(l)
					}
					runID := l.run("nightly", func(c *pgx.Conn) { s.work(t, l, c) })
					rep, err := ForRun(context.Background(), l.admin, runID)
					if err != nil {
						t.Fatal(err)
					}
					var text strings.Builder
					if err := rep.Text(&text); err != nil {
						t.Fatal(err)
					}
					t.Logf("report:\n%s", text.String())
					first := rep.Findings[0]
					if s.want == "" {
						for _, f := range rep.Findings {
							if f.Severity != "info" {
								t.Errorf("clean run: %s is %s, want nothing above info", f.Pattern, f.Severity)
							}
						}
						return
					}
					if first.Pattern != s.want || first.Severity == "info" {
						t.Errorf("first finding is %s (%s), want %s above info", first.Pattern, first.Severity, s.want)
					}
				})
			}
		})
	}
}

// In pg_cron mode (SQL collection, no wait sampler) the lock is named first all the same.
func TestScenarioSQLMode(t *testing.T) {
	l := newSQLModeLab(t, 15)
	prepare(l)
	var lock scenario
	for _, s := range scenarios {
		if s.name == "lock" {
			lock = s
		}
	}
	runID := l.run("nightly", func(c *pgx.Conn) { lock.work(t, l, c) })
	rep, err := ForRun(context.Background(), l.admin, runID)
	if err != nil {
		t.Fatal(err)
	}
	if f := rep.Findings[0]; f.Pattern != "lock_contention" || f.Severity == "info" {
		t.Errorf("first finding is %s (%s), want lock_contention above info", f.Pattern, f.Severity)
	}
}
