package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestBinaryBatches runs the exporter with a detection rule and the recorder: a session of the
// batch makes a detected run (in the metrics and in telemetry.batch_runs), and a marker run of
// another batch shows as running.
func TestBinaryBatches(t *testing.T) {
	bin := buildBinary(t)
	dsn := pgtest.Start(t, 17).NewDatabase(t)
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--web.listen-address="+addr, "--recorder.enabled",
		"--tier.sample-interval=200ms", "--collector.waits.interval=100ms",
		"--batch.match=nightly=application_name:^etl_nightly", "--batch.quiet-period=300ms")
	cmd.Env = append(os.Environ(), "DATA_SOURCE_NAME="+dsn)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	scrapeUntil := func(what string, want ...string) {
		t.Helper()
		var body string
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			resp, err := http.Get("http://" + addr + "/metrics")
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			all := true
			for _, w := range want {
				all = all && strings.Contains(body, w)
			}
			if all {
				return
			}
		}
		t.Fatalf("no %s within 20s; want %q in\n%s\nlogs:\n%s", what, want, body, logs.String())
	}
	scrapeUntil("batch metrics", `pgbatch_batch_running{batch="nightly"} 0`)

	ctx := context.Background()
	connect := func(app string) *pgx.Conn {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		cfg.RuntimeParams["application_name"] = app
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(ctx) })
		return c
	}
	if _, err := connect("etl_nightly").Exec(ctx, `SELECT pg_sleep(0.8)`); err != nil {
		t.Fatal(err)
	}
	scrapeUntil("detected run", `pgbatch_batch_runs_total{batch="nightly"} 1`, `pgbatch_batch_last_duration_seconds{batch="nightly"}`,
		`pgbatch_batch_wait_event_seconds_total{batch="nightly",wait_event="PgSleep",wait_event_type="Timeout"}`)
	marker := connect("psql")
	// The markers exist once the exporter has installed the schema (seconds on a loaded machine).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var installed bool
		if err := marker.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_proc WHERE proname = 'batch_begin' AND pronamespace = to_regnamespace('telemetry'))`).Scan(&installed); err != nil {
			t.Fatal(err)
		}
		if installed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the exporter did not install the schema within 30s")
		}
	}
	if _, err := marker.Exec(ctx, `SELECT telemetry.batch_begin('weekly')`); err != nil {
		t.Fatal(err)
	}
	scrapeUntil("marker run", `pgbatch_batch_running{batch="weekly"} 1`)
	// The run may have begun before the schema was migrated: its boundaries are retried.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var source, status string
		err := marker.QueryRow(ctx, `SELECT source, status FROM telemetry.batch_runs WHERE batch = 'nightly'`).Scan(&source, &status)
		if err == nil && source == "detected" && status == "ended" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("detected run recorded as %s %s (%v), want detected ended\nlogs:\n%s", source, status, err, logs.String())
		}
	}
}

// TestBinaryShortRunJudged: at the default intervals (30s samples, 1m snapshots), a marker run
// of 10s is sampled at the wait sampler's pace and has its boundary snapshots, so diagnose
// judges it instead of reporting insufficient data.
func TestBinaryShortRunJudged(t *testing.T) {
	bin := buildBinary(t)
	dsn := pgtest.Start(t, 17).NewDatabase(t)
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--web.listen-address="+addr, "--recorder.enabled")
	cmd.Env = append(os.Environ(), "DATA_SOURCE_NAME="+dsn)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	ctx := context.Background()
	job := pgtest.Connect(t, dsn, "short_job")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if _, err := job.Exec(ctx, `SELECT telemetry.batch_begin('short')`); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no telemetry schema: %v\n%s", err, logs.String())
		}
	}
	for range 5 {
		pgtest.MustExec(t, job, `SELECT pg_sleep(2)`)
	}
	pgtest.MustExec(t, job, `SELECT telemetry.batch_end('short')`)
	// The end's snapshot and the last samples are written (the end asks for both; a loaded
	// machine takes seconds to serve them).
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		var written bool
		if err := job.QueryRow(ctx, `SELECT EXISTS (SELECT FROM telemetry.snapshots s JOIN telemetry.batch_runs r ON s.captured_at >= r.ended_at WHERE r.batch = 'short')
			AND EXISTS (SELECT FROM telemetry.samples s JOIN telemetry.batch_runs r ON s.captured_at >= r.ended_at WHERE r.batch = 'short')`).Scan(&written); err != nil {
			t.Fatal(err)
		}
		if written {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot and sample after the run's end within a minute\n%s", logs.String())
		}
	}
	out, err := exec.Command(bin, "diagnose", "--batch=short", "--run=last", "--postgres.dsn="+dsn).CombinedOutput()
	if err != nil {
		t.Fatalf("diagnose: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "insufficient_data") || strings.Contains(string(out), "Only ") {
		t.Errorf("a 10s run at default intervals not judged:\n%s\nexporter logs:\n%s", out, logs.String())
	}
}
