package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestServerLogHasNoErrors runs the exporter as a DBA would leave it running, with batch
// detection on, against a database without the telemetry schema, and with the recorder from
// its very first start (before its migrations): the server log must hold no ERROR from any
// of its sessions. A DBA reads that log; an exporter's noise there hides the batch's errors.
func TestServerLogHasNoErrors(t *testing.T) {
	bin := buildBinary(t)
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			t.Parallel()
			srv := pgtest.Start(t, major)
			for _, withRecorder := range []bool{false, true} {
				dsn := srv.NewDatabase(t)
				args := []string{"--web.listen-address=" + freeAddr(t), "--postgres.dsn=" + dsn,
					"--tier.sample-interval=200ms", "--tier.snapshot-interval=300ms",
					"--batch.match=nightly=application_name:^nightly$", "--collector.tables.track=public.t"}
				if withRecorder {
					args = append(args, "--recorder.enabled")
				}
				cmd := exec.Command(bin, args...)
				var logs bytes.Buffer
				cmd.Stdout, cmd.Stderr = &logs, &logs
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				exited := make(chan struct{})
				go func() { _ = cmd.Wait(); close(exited) }()
				c := pgtest.Connect(t, dsn, "nightly")
				pgtest.MustExec(t, c, `CREATE TABLE public.t (id int PRIMARY KEY)`)
				// A detected run, so the tracker reads and (with the recorder) writes runs.
				pgtest.MustExec(t, c, `SELECT pg_sleep(0.5)`)
				if withRecorder {
					pgtest.Eventually(t, 60*time.Second, "the recorder's first snapshots", func() bool {
						var n int
						// Errors of this session (app=nightly) are not the exporter's.
						err := c.QueryRow(context.Background(), `SELECT count(*) FROM telemetry.snapshots`).Scan(&n)
						return err == nil && n >= 3
					})
				} else {
					time.Sleep(3 * time.Second) // about fifteen reads of the runs by the tracker
				}
				select {
				case <-exited:
					t.Fatalf("the exporter exited early:\n%s", logs.String())
				default:
				}
				// Read while it runs: stopping it cancels a collection in flight, and that
				// cancel is the one ERROR a stop may leave.
				serverLog := srv.Log()
				_ = cmd.Process.Signal(syscall.SIGTERM)
				<-exited
				db := dbName(t, dsn)
				var errs []string
				for _, line := range strings.Split(serverLog, "\n") {
					if strings.Contains(line, "app=pg-batch-exporter") && strings.Contains(line, " db="+db+" ") &&
						(strings.Contains(line, "ERROR:") || strings.Contains(line, "FATAL:")) {
						errs = append(errs, line)
					}
				}
				if len(errs) > 0 {
					t.Errorf("recorder %v: the exporter left %d errors in the server log, first:\n%s\nexporter log:\n%s",
						withRecorder, len(errs), strings.Join(errs[:min(len(errs), 5)], "\n"), logs.String())
				}
			}
		})
	}
}

func dbName(t *testing.T, dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}
