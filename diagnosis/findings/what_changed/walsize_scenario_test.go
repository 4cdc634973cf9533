package whatchanged_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// walServer is a server whose WAL is written as a slow WAL disk writes it, as wal_pressure's
// scenario's: synchronously (fsync on, open_datasync), from small WAL buffers that a large
// change fills again and again; the batch's table stays in shared buffers. max_wal_size is
// 4GB, out of the runs' reach, and checkpoint_timeout a day: no checkpoint comes during the
// baseline runs. A server of the test's own: its configuration is changed (ALTER SYSTEM).
func walServer(t *testing.T, major int) *pgtest.Server {
	return pgtest.StartWith(t, major, pgtest.Options{Private: true, Settings: map[string]string{
		"fsync": "on", "wal_sync_method": "open_datasync", "wal_buffers": "64kB", "full_page_writes": "on",
		"max_wal_size": "4GB", "checkpoint_timeout": "1d", "shared_buffers": "256MB"}})
}

// TestMaxWalSizeLowered: between the runs someone lowered max_wal_size from 4GB to its least,
// 32MB (ALTER SYSTEM, pg_reload_conf()). The batch loads its input into a staging table (some
// 24MB of WAL), then updates a counter on every page of a 12,000-page table in shared buffers
// six times (a few dozen bytes of WAL each, some 6 MB a run): 30MB a run, far more once a
// page's first change after a checkpoint is a full-page image.
// Tonight every 16MB segment of WAL (max_wal_size / (1 + checkpoint_completion_target), at
// least one) requests a checkpoint (checkpoints_req), each page's first change after one is a
// full-page image of its 8kB, and the run writes hundreds of MB of WAL through 64kB buffers to
// a synchronous WAL, and competes with the checkpoints' writes.
// The cause is the WAL and the checkpoints (wal_pressure, first); what changed is
// max_wal_size, which run_changes must name with its values and must not call a change that
// cannot slow the batch, and which a finding must name: that is why the checkpoints came.
func TestMaxWalSizeLowered(t *testing.T) {
	const counterPages = 12000
	updates := func(t *testing.T, l *lab.Lab, c *pgx.Conn) {
		lab.CPU(t, c, 500*time.Millisecond)
		// The batch's input, loaded into its staging table: some 24MB of WAL, more than a 16MB
		// segment, so tonight a segment's end is reached and a checkpoint requested before the
		// updates whatever the WAL's position (a request is made only as a segment is finished).
		lab.MustExec(t, c, `TRUNCATE input`)
		lab.MustExec(t, c, `INSERT INTO input SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 80000) g`)
		for range 6 {
			lab.MustExec(t, c, `UPDATE counters SET n = n + 1 WHERE payload IS NULL`)
		}
	}
	lab.RunSlow(t, lab.SlowRun{Want: "wal_pressure", Server: walServer,
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.input (id int, data text) WITH (autovacuum_enabled = false)`)
			l.Exec(`CREATE TABLE public.counters (id int, n int, payload text) WITH (autovacuum_enabled = false)`)
			l.Exec(`ALTER TABLE public.counters ALTER payload SET STORAGE PLAIN`) // in the row, neither compressed nor out of line
			// a counter (payload NULL), then 7kB of static data: a page holds one of each, and a
			// second counter in what is left
			l.Exec(`INSERT INTO public.counters SELECT g, 0, CASE WHEN k = 1 THEN repeat(md5(g::text), 220) END
				FROM generate_series(1, $1) g, generate_series(0, 1) k ORDER BY g, k`, counterPages)
		},
		Usual: updates,
		Between: func(t *testing.T, l *lab.Lab) {
			l.Exec(`ALTER SYSTEM SET max_wal_size = '32MB'`)
			l.Exec(`SELECT pg_reload_conf()`)
			// A reload is asynchronous: the setting in effect before the run begins (a local
			// server's settings are postgresql.conf's, which ALTER SYSTEM's win over).
			l.WaitFor("max_wal_size lowered", `SELECT current_setting('max_wal_size') = '32MB'`)
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			ctx := context.Background()
			// The scenario did what it says: checkpoints were requested during the run.
			var requested, timed int64
			var walBytes string
			if err := l.Admin.QueryRow(ctx, `SELECT coalesce(c.ckpt_requested_delta, -1), coalesce(c.ckpt_timed_delta, -1), coalesce(c.wal_bytes_delta::text, 'unknown')
				FROM telemetry.recent_batch_runs r, telemetry.compare(r.start_snapshot_at, r.end_snapshot_at) c WHERE r.run_id = $1`, runID).Scan(&requested, &timed, &walBytes); err != nil {
				t.Fatal(err)
			}
			var durations string
			if err := l.Admin.QueryRow(ctx, `SELECT string_agg(format('run %s %s s', run_id, round(extract(epoch FROM ended_at - started_at), 1)), ', ' ORDER BY run_id)
				FROM telemetry.batch_runs WHERE batch = 'nightly'`).Scan(&durations); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s; run %d: %d requested and %d timed checkpoint(s), %s bytes of WAL, extra %.1f s", durations, runID, requested, timed, walBytes, *d.ExtraSeconds)
			if requested < 2 {
				t.Errorf("run %d: %d requested checkpoint(s) during the run, want 2 or more (max_wal_size reached)", runID, requested)
			}

			type finding struct {
				Pattern, Severity, Summary string
				Evidence                   json.RawMessage
			}
			rows, err := l.Admin.Query(ctx, `SELECT pattern, severity, summary, evidence FROM telemetry.diagnose_run_findings($1)`, runID)
			if err != nil {
				t.Fatal(err)
			}
			found, err := pgx.CollectRows(rows, pgx.RowToStructByPos[finding])
			if err != nil {
				t.Fatal(err)
			}
			// The checkpoints are wal_pressure's evidence, against none in the baseline.
			if len(found) > 0 && found[0].Pattern == "wal_pressure" {
				var ev struct {
					Checkpoints         *float64 `json:"checkpoints"`
					BaselineCheckpoints *float64 `json:"baseline_checkpoints"`
				}
				if err := json.Unmarshal(found[0].Evidence, &ev); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(found[0].Summary, "checkpoint(s)") || ev.Checkpoints == nil || *ev.Checkpoints < 2 ||
					ev.BaselineCheckpoints == nil || *ev.BaselineCheckpoints != 0 {
					t.Errorf("run %d: wal_pressure does not tell the run's checkpoints against none in the baseline: %q, evidence %s",
						runID, found[0].Summary, found[0].Evidence)
				}
			}

			// What changed: max_wal_size, named with its values by run_changes.
			var kind, from, to, detail, severity string
			var affects bool
			err = l.Admin.QueryRow(ctx, `SELECT kind, coalesce(old, 'none'), coalesce(new, 'none'), coalesce(detail, ''), affects, severity
				FROM telemetry.run_changes($1) WHERE object = 'max_wal_size'`, runID).Scan(&kind, &from, &to, &detail, &affects, &severity)
			if err == pgx.ErrNoRows {
				t.Errorf("run %d: run_changes does not list the max_wal_size change", runID)
				return
			} else if err != nil {
				t.Fatal(err)
			}
			t.Logf("run_changes: %s max_wal_size %s -> %s (%s), affects %t, %s", kind, from, to, detail, affects, severity)
			if kind != "setting_changed" || from != "4096MB" || to != "32MB" {
				t.Errorf("run %d: max_wal_size's change is %s %s -> %s, want setting_changed 4096MB -> 32MB", runID, kind, from, to)
			}
			// It is why the checkpoints came: not a change that cannot slow the batch.
			if !affects {
				t.Errorf("run %d: run_changes lists max_wal_size (%s -> %s) as a change that cannot slow the batch (affects false, %s), "+
					"though it brought the run's %d requested checkpoint(s) and their full-page images", runID, from, to, severity, requested)
			}
			// And the diagnosis says so: a finding names it, beside the checkpoints it brought.
			named := false
			for _, f := range found {
				if f.Severity != "info" && (strings.Contains(f.Summary, "max_wal_size") || strings.Contains(string(f.Evidence), "max_wal_size")) {
					named = true
				}
			}
			if !named {
				t.Errorf("run %d: no finding above info names the max_wal_size change (%s -> %s) behind the checkpoints", runID, from, to)
			}
		}})
}
