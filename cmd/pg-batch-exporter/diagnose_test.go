package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestBatchAndDiagnoseBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"diagnose", "--from=yesterday"}, `--from: "yesterday" is not a time`},
		{[]string{"diagnose", "--from=2024-12-16 15:00", "--to=2024-12-16 14:00"}, "is not after --from"},
		{[]string{"diagnose", "--from=2024-12-16T14:00:00Z", "--to=noon"}, `--to: "noon" is not a time`},
		{[]string{"diagnose"}, "needs either --from (a window) or --batch (a run)"},
		{[]string{"diagnose", "--from=2024-12-16 14:00", "--batch=nightly"}, "needs either --from"},
		{[]string{"diagnose", "--batch=nightly", "--run=first"}, `--run "first": want current, last, last-N or a run_id`},
		// Issue 17, finding 8: a value that begins with '-' is the flag's value, not a flag.
		{[]string{"diagnose", "--batch=nightly", "--run", "-1"}, "--run -1: run ids are positive; the run before the last is last-1"},
		{[]string{"diagnose", "--batch", "-nightly", "--run", "-1"}, "--run -1: run ids are positive"},
		{[]string{"diagnose", "--batch", "--nightly"}, "expected argument for flag '--batch'"}, // a long flag stays a flag
		{[]string{"diagnose", "--batch=night\xffly"}, `--batch: the batch name "night\xffly" is not valid UTF-8 text`},
		{[]string{"diagnose", "--batch=night\tly"}, `--batch: the batch name "night\tly" has a control character`},
		{[]string{"exec", "--batch=night\tly", "--", "true"}, `--batch: the batch name "night\tly" has a control character`},
		{[]string{"diagnose", "--batch=nightly", "--format=xml"}, "enum value must be one of text,json"},
		{[]string{"exec", "--batch=nightly"}, "required argument 'command' not provided"},
		{[]string{"--batch.match=nightly"}, "--batch.match: batch rule \"nightly\""},
		{[]string{"--batch.match=nightly=usename:^etl"}, `cannot match on "usename"`},
		{[]string{"--config.file=/nonexistent/pg-batch-exporter.yml"}, "--config.file: open /nonexistent"},
	} {
		code, _, errOut := runCLI(c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q, want 2 and one line with %q", c.args, code, errOut, c.want)
		}
	}
}

func TestDiagnoseAndExecCommands(t *testing.T) {
	dsn := pgtest.Start(t, 17).NewDatabase(t)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := schema.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DATA_SOURCE_NAME", dsn)

	if code, _, errOut := runCLI("exec", "--batch=nightly", "--", "sh", "-c", `test "$PGAPPNAME" = nightly && exit 4`); code != 4 {
		t.Errorf("exec exited %d (stderr %q), want the command's 4", code, errOut)
	}
	code, out, errOut := runCLI("diagnose", "--batch=nightly", "--run=last")
	if code != 0 || !strings.Contains(out, "Batch nightly, run 1 (exec, failed)") || !strings.Contains(out, "insufficient_data") {
		t.Errorf("diagnose --batch: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// A run out of range, stored by hand (issue 17, finding 2): skipped, with a warning; asked
	// for, an error that says why.
	var bad int64
	if err := pool.QueryRow(ctx, `INSERT INTO telemetry.batch_runs (batch, started_at, ended_at, status, source)
			VALUES ('nightly', 'infinity', 'infinity', 'succeeded', 'marker') RETURNING run_id`).Scan(&bad); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI("diagnose", "--batch=nightly")
	if code != 0 || !strings.Contains(out, "Batch nightly, run 1 (exec, failed)") || !strings.Contains(errOut, "times out of range are skipped") {
		t.Errorf("diagnose --batch with a run out of range: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = runCLI("diagnose", "--batch=nightly", "--run="+strconv.FormatInt(bad, 10))
	if code != 1 || !strings.Contains(errOut, "has a begin or end out of range, so it cannot be diagnosed") {
		t.Errorf("diagnose of the run out of range: exit %d, stderr %q", code, errOut)
	}
	// --run current between runs names the last run's end: not the one out of range ('infinity'
	// cannot be scanned as a time).
	code, _, errOut = runCLI("diagnose", "--batch=nightly", "--run=current")
	if code != 2 || !strings.Contains(errOut, `batch "nightly" has no run in progress: its last run ended at`) {
		t.Errorf("diagnose --run current with a run out of range: exit %d, stderr %q", code, errOut)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM telemetry.batch_runs WHERE run_id = $1`, bad); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI("diagnose", "--from=2024-12-16 14:00", "--to=2024-12-16T16:00:00+01:00", "--format=json")
	var rep struct {
		Findings []struct{ Pattern, Severity string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Findings) == 0 || rep.Findings[0].Pattern != "insufficient_data" {
		t.Errorf("diagnose --format json: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"diagnose", "--batch=weekly"}, `unknown batch "weekly"`},
		{[]string{"diagnose", "--batch=nightly", "--run=last-5"}, `batch "nightly" has only 1 run,`},
		{[]string{"diagnose", "--batch=nightly", "--run=99"}, "no batch run with run_id 99"},
		{[]string{"diagnose", "--from=1999-12-30 00:00", "--to=1999-12-31 00:00"}, "must be a finite time from 2000-01-01 to a day from now"},
	} {
		if code, _, errOut := runCLI(c.args...); code != 2 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want 2 and one line saying %q", c.args, code, errOut, c.want)
		}
	}
}

// TestDiagnoseWithoutSchema: against a database without the telemetry schema, diagnose says
// so and how to install it, instead of PostgreSQL's error.
func TestDiagnoseWithoutSchema(t *testing.T) {
	t.Setenv("DATA_SOURCE_NAME", pgtest.Start(t, pgtest.Versions()[0]).NewDatabase(t))
	for _, args := range [][]string{{"diagnose", "--batch=nightly"}, {"diagnose", "--from=2024-12-16 14:00"}} {
		code, _, errOut := runCLI(args...)
		if code != 2 || !strings.Contains(errOut, "the telemetry schema is not installed in this database") ||
			!strings.Contains(errOut, "--recorder.enabled") || !strings.Contains(errOut, "install.sql") || strings.Contains(errOut, "SQLSTATE") {
			t.Errorf("%v: exit %d, stderr %q, want 2 and the two ways to install the schema", args, code, errOut)
		}
	}
}
