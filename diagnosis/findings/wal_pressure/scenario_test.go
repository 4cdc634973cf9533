package walpressure_test

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

// server is one whose WAL is written as a slow WAL disk writes it: synchronously (fsync on,
// open_datasync), from small WAL buffers that a large change fills again and again. No
// checkpoint comes but the scenario's (max_wal_size and checkpoint_timeout out of reach): one
// during a usual run would make it as slow as tonight's. The batch's table stays in shared
// buffers: only the WAL and the checkpoints write.
func server(t *testing.T, major int) *pgtest.Server {
	return pgtest.StartWith(t, major, pgtest.Options{Private: true, Settings: map[string]string{
		"fsync": "on", "wal_sync_method": "open_datasync", "wal_buffers": "64kB", "full_page_writes": "on",
		"max_wal_size": "10GB", "checkpoint_timeout": "1d", "shared_buffers": "256MB"}})
}

// counterPages is the batch's table's pages: each holds a counter the batch updates and a
// block of static data it never changes. An update of a counter logs a few dozen bytes; a
// page's first change after a checkpoint, a full-page image of its 8kB.
const counterPages = 12000

// updatesPerRun is how many times a run changes every row, a little apart: tonight a
// checkpoint comes before each.
const updatesPerRun = 6

// checkpointer is another session's job asking for a checkpoint each time it is told to: a
// request made while a checkpoint still runs waits for it, and one told meanwhile is dropped.
type checkpointer struct {
	requests chan struct{}
	done     chan error
}

func startCheckpointer(l *lab.Lab) *checkpointer {
	c := &checkpointer{requests: make(chan struct{}, 1), done: make(chan error, 1)}
	go func() {
		var err error
		for range c.requests {
			if _, e := l.Admin.Exec(context.Background(), `CHECKPOINT`); e != nil && err == nil {
				err = e
			}
		}
		c.done <- err
	}()
	return c
}

func (c *checkpointer) request() {
	select {
	case c.requests <- struct{}{}:
	default: // one is waiting already
	}
}

// stop waits for the checkpoints asked for.
func (c *checkpointer) stop() error {
	close(c.requests)
	return <-c.done
}

// updates changes a counter on every row of the batch's table, in place (a HOT update logs a
// few dozen bytes), updatesPerRun times; with a checkpointer (tonight), a checkpoint is asked
// for before each: its redo point is set as it starts, so every page's first change after it
// is a full-page image.
func updates(checkpoints func() *checkpointer) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		lab.CPU(t, c, 300*time.Millisecond)
		for range updatesPerRun {
			if checkpoints != nil {
				checkpoints().request()
			}
			time.Sleep(100 * time.Millisecond) // the request on its way
			lab.MustExec(t, c, `UPDATE counters SET n = n + 1 WHERE payload IS NULL`)
		}
	}
}

// TestCheckpointsBeforeTheUpdates: tonight another job's checkpoint comes before each of the
// batch's updates, so each page's first change after it is a full-page image: some 80 times
// the WAL of the usual run, written through small buffers to a synchronous WAL. wal_pressure is
// the cause, first, with the WAL waits, the run's WAL and checkpoints against the baseline's
// and the update's WAL per call; the update's CPU is wal_pressure's too.
func TestCheckpointsBeforeTheUpdates(t *testing.T) {
	var job *checkpointer // the version under test's, from its slow run on
	lab.RunSlow(t, lab.SlowRun{Want: "wal_pressure", Server: server,
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.counters (id int, n int, payload text) WITH (autovacuum_enabled = false)`)
			l.Exec(`ALTER TABLE public.counters ALTER payload SET STORAGE PLAIN`) // in the row, neither compressed nor out of line
			// a counter (payload NULL), then 7kB of static data: a page holds one of each, and a
			// second counter in what is left
			l.Exec(`INSERT INTO public.counters SELECT g, 0, CASE WHEN k = 1 THEN repeat(md5(g::text), 220) END
				FROM generate_series(1, $1) g, generate_series(0, 1) k ORDER BY g, k`, counterPages)
		},
		Usual:   updates(nil),
		Between: func(_ *testing.T, l *lab.Lab) { job = startCheckpointer(l) },
		Slow:    updates(func() *checkpointer { return job }),
		After: func(*lab.Lab, int64) {
			if err := job.stop(); err != nil {
				t.Error(err)
			}
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, "checkpoint(s)") || !strings.Contains(s, "of WAL per call instead of") {
				t.Errorf("wal_pressure %q: want the run's WAL and checkpoints, and the update's WAL per call", s)
			}
			// The update's CPU (its full-page images) is the WAL's too, not a slower plan's.
			var causes []string
			if err := l.Admin.QueryRow(context.Background(), `SELECT coalesce(array_agg(DISTINCT r->>'cause'), '{}')
				FROM jsonb_array_elements(telemetry._run_causes($1, (SELECT jsonb_agg(to_jsonb(s)) FROM telemetry._run_statements($1) s))->'rows') r
				WHERE r->>'bucket' = 'CPU' AND r->>'query' LIKE 'UPDATE counters%'`, runID).Scan(&causes); err != nil {
				t.Fatal(err)
			}
			// (The sampler may see the update only ever waiting on the WAL: then it has no CPU.)
			if len(causes) > 1 || len(causes) == 1 && causes[0] != "wal_pressure" {
				t.Errorf("the update's CPU is %v's, want wal_pressure's", causes)
			}
		}})
}
