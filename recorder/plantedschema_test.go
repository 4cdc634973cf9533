package recorder

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/batch"
	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/diagnosis"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestPlantedTelemetrySchemaRefused: a role that may create in the database (an application's
// owner, typically) prepares a telemetry schema before the exporter first looks: views named
// like the recorder's tables over its own function, and a schema_migrations table with a
// trigger. A superuser exporter, tracker, diagnose and recorder must run none of it: they
// trust telemetry objects only of their own role, a role that can act as it, or a superuser.
func TestPlantedTelemetrySchemaRefused(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		dsn := srv.NewDatabase(t)
		attacker := "planter_" + strings.TrimPrefix(mustParseURL(t, dsn).Path, "/")
		srv.Exec(t, dsn, fmt.Sprintf(`CREATE ROLE %[1]s LOGIN; GRANT CREATE ON DATABASE %[2]s TO %[1]s;
			SET ROLE %[1]s;
			CREATE SCHEMA telemetry;
			-- Raises, so that any call, even in a read-only transaction, shows.
			CREATE FUNCTION telemetry.planted() RETURNS oid LANGUAGE plpgsql AS
				$$ BEGIN RAISE EXCEPTION 'planted code ran as %%', current_user; END $$;
			CREATE VIEW telemetry.tracked_tables AS SELECT telemetry.planted() AS relid, ''::text AS schemaname, ''::text AS relname;
			CREATE VIEW telemetry.batch_runs AS SELECT 1::bigint AS run_id, ''::text AS batch, now() AS started_at,
				now() AS ended_at, 'ended'::text AS status, telemetry.planted()::text AS source, 1 AS backend_pid, now() AS backend_start;
			CREATE TABLE telemetry.schema_migrations (name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
			CREATE FUNCTION telemetry.planted_trigger() RETURNS trigger LANGUAGE plpgsql AS
				$$ BEGIN PERFORM telemetry.planted(); RETURN NEW; END $$;
			CREATE TRIGGER planted BEFORE INSERT ON telemetry.schema_migrations FOR EACH ROW EXECUTE FUNCTION telemetry.planted_trigger();
			RESET ROLE`, attacker, strings.TrimPrefix(mustParseURL(t, dsn).Path, "/")))
		t.Cleanup(func() {
			srv.Exec(t, dsn, fmt.Sprintf(`DROP SCHEMA telemetry CASCADE; REVOKE ALL ON DATABASE %[2]s FROM %[1]s; DROP ROLE %[1]s`,
				attacker, strings.TrimPrefix(mustParseURL(t, dsn).Path, "/")))
		})
		ctx := context.Background()

		runner := collectors.NewRunner(collectors.RunnerOptions{Pool: newPool(t, dsn, true, ""), Selection: collectors.AllEnabled(),
			SampleEvery: time.Hour, SnapshotEvery: time.Hour, WaitSampleEvery: time.Hour})
		c, err := runner.Collect(ctx, collectors.TierSnapshot)
		if err != nil {
			t.Fatalf("snapshot tier: %v", err)
		}
		for _, r := range c.Results {
			if r.Err != nil {
				t.Errorf("collector %s: %v", r.Collector, r.Err)
			}
		}
		tracker := batch.NewTracker(batch.Options{RunsDB: newPool(t, dsn, true, ""), QuietPeriod: time.Second, RefreshEvery: time.Hour})
		if err := tracker.Refresh(ctx); err != nil {
			t.Errorf("tracker: %v", err)
		}
		err = schema.Migrate(ctx, newPool(t, dsn, false, ""))
		if err == nil || !strings.Contains(err.Error(), attacker) || strings.Contains(err.Error(), "planted code ran") {
			t.Errorf("Migrate into a schema %s prepared: %v, want a refusal naming the role", attacker, err)
		}
		// pg_cron mode's install.sql, run by a superuser, refuses the same way.
		if out, err := pgtest.PsqlOutput(dsn, "-f", "sql/install.sql"); err == nil || !strings.Contains(out, "belongs to role "+attacker) ||
			strings.Contains(out, "planted code ran") {
			t.Errorf("install.sql into a schema %s prepared: %v\n%s\nwant a refusal naming the role", attacker, err, out)
		}
		err = diagnosis.CheckSchema(ctx, newPool(t, dsn, true, ""))
		if err == nil || !strings.Contains(err.Error(), attacker) {
			t.Errorf("diagnose: %v, want a refusal naming %s", err, attacker)
		}
	})
}
