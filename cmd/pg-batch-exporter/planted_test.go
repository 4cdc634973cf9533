package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// plantedFunctions are overloads a role that may create in public can plant: each matches our
// SQL's arguments exactly, so under the default search_path ("$user", public) it beats
// pg_catalog's polymorphic or coercing original and runs as whoever called it.
var plantedFunctions = []struct{ signature, returns string }{
	{"unnest(integer[])", "SETOF integer"},
	{"unnest(text[])", "SETOF text"},
	{"pg_relation_size(oid)", "bigint"},
	{"pg_total_relation_size(oid)", "bigint"},
	{"pg_indexes_size(oid)", "bigint"},
	{"to_jsonb(pg_catalog.pg_stat_progress_vacuum)", "jsonb"},
	{"to_jsonb(pg_catalog.pg_stat_progress_analyze)", "jsonb"},
	{"to_jsonb(pg_catalog.pg_stat_progress_copy)", "jsonb"},
	{"to_jsonb(pg_catalog.pg_stat_progress_create_index)", "jsonb"},
	{"to_jsonb(pg_catalog.pg_stat_progress_cluster)", "jsonb"},
}

// TestPlantedFunctionsNeverRun: a role that may create in public plants overloads of the
// functions our SQL calls; the exporter (every collector, while a lock wait and a COPY make
// the locks and progress collectors call theirs), the recorder, the batch tracker, the report
// page and the diagnose and exec commands run as a superuser and never call one.
func TestPlantedFunctionsNeverRun(t *testing.T) {
	bin := buildBinary(t)
	for _, v := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", v), func(t *testing.T) {
			t.Parallel()
			dsn := pgtest.Start(t, v).NewDatabase(t)
			admin := pgtest.Connect(t, dsn, "setup")
			// Roles are the server's, shared by the tests' databases: one of its own.
			var planter string
			if err := admin.QueryRow(context.Background(), `SELECT 'planter_' || current_database()`).Scan(&planter); err != nil {
				t.Fatal(err)
			}
			pgtest.MustExec(t, admin, `CREATE ROLE `+planter)
			t.Cleanup(func() { pgtest.MustExec(t, admin, `DROP OWNED BY `+planter+`; DROP ROLE `+planter) })
			pgtest.MustExec(t, admin, `GRANT CREATE ON SCHEMA public TO `+planter)
			pgtest.MustExec(t, admin, `CREATE TABLE public.t (id int PRIMARY KEY, payload text)`)
			pgtest.MustExec(t, admin, `SET ROLE `+planter)
			pgtest.MustExec(t, admin, `CREATE TABLE public.planted_calls (fn text)`)
			pgtest.MustExec(t, admin, `GRANT INSERT ON public.planted_calls TO PUBLIC`)
			for _, f := range plantedFunctions {
				ret := "RETURN NULL"
				if strings.HasPrefix(f.returns, "SETOF") {
					ret = "RETURN"
				}
				// In a read-only transaction the INSERT fails, so the call shows as a failed collector.
				pgtest.MustExec(t, admin, fmt.Sprintf(`CREATE FUNCTION public.%s RETURNS %s LANGUAGE plpgsql AS $$
					BEGIN INSERT INTO public.planted_calls VALUES (%s); %s; END $$`,
					f.signature, f.returns, quoteLiteral(f.signature), ret))
			}
			pgtest.MustExec(t, admin, `RESET ROLE`)

			addr := freeAddr(t)
			cmd := exec.Command(bin, "--web.listen-address="+addr, "--recorder.enabled",
				"--tier.sample-interval=200ms", "--tier.snapshot-interval=300ms", "--collector.waits.interval=100ms",
				"--collector.tables.track=public.t", "--batch.match=nightly=application_name:^etl_nightly", "--batch.quiet-period=300ms")
			env := append(os.Environ(), "DATA_SOURCE_NAME="+dsn)
			cmd.Env = env
			var logs bytes.Buffer
			cmd.Stdout, cmd.Stderr = &logs, &logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
			scrape := func(path string) string {
				resp, err := http.Get("http://" + addr + path)
				if err != nil {
					return ""
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return string(b)
			}
			waitFor := func(what string, ok func() bool) {
				t.Helper()
				for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(100 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("no %s within 30s; logs:\n%s", what, logs.String())
					}
				}
			}
			waitFor("migrated schema", func() bool {
				var ok bool
				return admin.QueryRow(context.Background(), `SELECT to_regclass('telemetry.tracked_tables') IS NOT NULL`).Scan(&ok) == nil && ok
			})

			// A lock wait and a COPY in progress, each for more than a sample interval.
			holder, waiter := pgtest.Connect(t, dsn, "holder"), pgtest.Connect(t, dsn, "etl_nightly")
			pgtest.MustExec(t, holder, `BEGIN`)
			pgtest.MustExec(t, holder, `LOCK TABLE public.t`)
			done := make(chan error, 2)
			go func() { _, err := waiter.Exec(context.Background(), `SELECT count(*) FROM public.t`); done <- err }()
			go func() {
				_, err := pgtest.Connect(t, dsn, "copier").Exec(context.Background(), `COPY public.t FROM PROGRAM 'sleep 1.5'`)
				done <- err
			}()
			waitFor("recorded lock wait", func() bool {
				var n int
				return admin.QueryRow(context.Background(), `SELECT count(*) FROM telemetry.lock_samples`).Scan(&n) == nil && n > 0
			})
			pgtest.MustExec(t, holder, `COMMIT`)
			for range 2 {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			waitFor("recorded copy progress", func() bool {
				var n int
				return admin.QueryRow(context.Background(), `SELECT count(*) FROM telemetry.progress_samples WHERE progress_type = 'copy'`).Scan(&n) == nil && n > 0
			})
			waitFor("the detected batch run", func() bool {
				var n int
				return admin.QueryRow(context.Background(), `SELECT count(*) FROM telemetry.batch_runs WHERE batch = 'nightly' AND status = 'ended'`).Scan(&n) == nil && n > 0
			})
			if body := scrape("/report"); !strings.Contains(body, "nightly") {
				t.Errorf("/report lacks the nightly run:\n%s", body)
			}
			for _, args := range [][]string{{"exec", "--batch=weekly", "--", "true"}, {"diagnose", "--batch=nightly", "--run=last"}} {
				c := exec.Command(bin, args...)
				c.Env = env
				if out, err := c.CombinedOutput(); err != nil {
					t.Errorf("%v: %v\n%s", args, err, out)
				}
			}

			metrics := scrape("/metrics")
			for _, m := range regexp.MustCompile(`(?m)^pgbatch_collector_success\{.*\} 0$`).FindAllString(metrics, -1) {
				t.Errorf("%s", m)
			}
			var calls []string
			rows, _ := admin.Query(context.Background(), `SELECT fn FROM public.planted_calls`)
			for rows.Next() {
				var fn string
				_ = rows.Scan(&fn)
				calls = append(calls, fn)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if len(calls) > 0 || strings.Contains(logs.String(), "planted_calls") {
				t.Errorf("planted functions ran: %v\nlogs:\n%s", calls, logs.String())
			}
		})
	}
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
