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
// checkpoint comes but the one the scenario asks for (max_wal_size and checkpoint_timeout out
// of reach): one during a usual run would make it as slow as tonight's.
func server(t *testing.T, major int) *pgtest.Server {
	return pgtest.StartWith(t, major, pgtest.Options{Private: true, Settings: map[string]string{
		"fsync": "on", "wal_sync_method": "open_datasync", "wal_buffers": "64kB", "full_page_writes": "on",
		"max_wal_size": "10GB", "checkpoint_timeout": "1d"}})
}

// updates changes a counter on every row of the batch's table, in place (a HOT update logs
// little); checkpointed, another session starts a CHECKPOINT just before, which runs beside
// the update (its redo point is set as it starts: every page's first change after it is a
// full-page image).
func updates(checkpointed bool) func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
	return func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		lab.CPU(t, c, 300*time.Millisecond)
		if checkpointed {
			done := make(chan error, 1)
			go func() { _, err := l.Admin.Exec(context.Background(), `CHECKPOINT`); done <- err }()
			time.Sleep(100 * time.Millisecond) // the request on its way: a later one still images the pages changed after it
			defer func() {
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()
		}
		lab.MustExec(t, c, `UPDATE counters SET n = n + 1`)
	}
}

// TestCheckpointBeforeTheUpdate: tonight a checkpoint comes just before the batch's update,
// so each page's first change after it is a full-page image: many times the WAL of the usual
// run, written through small buffers to a synchronous WAL. wal_pressure is the cause, first,
// with the WAL waits and the run's WAL and checkpoints against the baseline's.
func TestCheckpointBeforeTheUpdate(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "wal_pressure", Server: server,
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.counters (id int, n int, payload text) WITH (fillfactor = 50, autovacuum_enabled = false)`)
			l.Exec(`INSERT INTO public.counters SELECT g, 0, repeat(md5(g::text), 6) FROM generate_series(1, 600000) g`)
		},
		Usual: updates(false), Slow: updates(true),
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, "WAL") || !strings.Contains(s, "checkpoint(s)") {
				t.Errorf("wal_pressure %q: want the WAL waits and the run's WAL and checkpoints", s)
			}
		}})
}
