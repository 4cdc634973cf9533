package recorder

import (
	"context"
	"strings"
	"testing"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/pgtest"
)

// TestAnalysisRefusesBadInput: a window whose end is before its start, or whose ends are not
// finite, an unknown server name and an overlong batch name are each a clear error, never
// a row with a negative elapsed time, empty times, or no rows at all.
func TestAnalysisRefusesBadInput(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		e := newEnv(t, srv)
		e.record(collectors.TierSnapshot)
		e.record(collectors.TierSample)
		c := e.conn()
		var server string
		if err := c.QueryRow(context.Background(), `SELECT server FROM telemetry.servers`).Scan(&server); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ sql, want string }{
			{`SELECT * FROM telemetry.compare(now(), now() - interval '1 hour')`, "is before the start"},
			{`SELECT * FROM telemetry.table_compare('t', now(), now() - interval '1 hour')`, "is before the start"},
			{`SELECT * FROM telemetry.wait_summary(now(), now() - interval '1 hour')`, "is before the start"},
			{`SELECT * FROM telemetry.statement_compare(now(), now() - interval '1 hour')`, "is before the start"},
			{`SELECT * FROM telemetry.lock_episodes(now(), now() - interval '1 hour')`, "is before the start"},
			{`SELECT * FROM telemetry.diagnose(now(), now() - interval '1 hour')`, "is before the start"},
			{`SELECT * FROM telemetry.diagnose('-infinity', 'infinity')`, "must be finite times"},
			{`SELECT * FROM telemetry.compare('-infinity', now())`, "must be finite times"},
			{`SELECT * FROM telemetry.compare(NULL, now())`, "needs a start and an end"},
			{`SELECT * FROM telemetry.compare(now() - interval '1 hour', now(), 'no-such-server')`, "no server named 'no-such-server' is recorded (recorded: " + server + ")"},
			{`SELECT * FROM telemetry.diagnose(now() - interval '1 hour', now(), 'no-such-server')`, "no server named 'no-such-server'"},
			{`SELECT * FROM telemetry.client_wait_summary(now() - interval '1 hour', now(), 'no-such-server')`, "no server named 'no-such-server'"},
			{`SELECT * FROM telemetry.statement_compare(now() - interval '1 hour', now(), 'no-such-server')`, "no server named 'no-such-server'"},
			{`SELECT telemetry.batch_begin(repeat('x', 201))`, "batch name of 201 bytes: at most 200"},
			{`SELECT telemetry.batch_begin(repeat('é', 101))`, "batch name of 202 bytes: at most 200"},
		} {
			_, err := c.Exec(context.Background(), tc.sql)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want an error saying %q", tc.sql, err, tc.want)
			}
		}
		// What is right still answers.
		for _, sql := range []string{
			`SELECT * FROM telemetry.compare(now() - interval '1 hour', now() + interval '1 hour', '` + server + `')`,
			`SELECT * FROM telemetry.compare(now(), now())`,
			`SELECT telemetry.batch_begin(repeat('x', 200))`,
		} {
			pgtest.MustExec(t, c, sql)
		}
	})
}
