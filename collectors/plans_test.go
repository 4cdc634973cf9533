package collectors_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgserver"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// runPlanned has the role, with auto_explain set up as docs/plans.md says, run a join that
// auto_explain logs, under application_name app.
func runPlanned(t *testing.T, dsn, role, app string) {
	t.Helper()
	dsn = strings.Replace(dsn, "postgres@", role+"@", 1)
	c := pgtest.Connect(t, dsn, app)
	defer c.Close(context.Background())
	pgtest.MustExec(t, c, `SET work_mem = '8MB'`)
	pgtest.MustExec(t, c, `SELECT count(*) FROM plan_a a JOIN plan_b b USING (id) WHERE a.id < 500`)
}

// setUpPlans makes the tables and a batch role whose sessions load auto_explain.
func setUpPlans(t *testing.T, s *pgtest.Server, dsn, role string) {
	t.Helper()
	s.Exec(t, dsn, fmt.Sprintf(`CREATE TABLE plan_a (id int PRIMARY KEY, v text);
		CREATE TABLE plan_b (id int PRIMARY KEY, w text);
		INSERT INTO plan_a SELECT g, 'x' FROM generate_series(1, 5000) g;
		INSERT INTO plan_b SELECT g, 'y' FROM generate_series(1, 5000) g;
		ANALYZE plan_a, plan_b;
		DO $$ BEGIN CREATE ROLE %[1]s LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
		GRANT SELECT ON plan_a, plan_b TO %[1]s;
		%[2]s`, role, pgtest.AutoExplainSQL(role)))
}

// collectPlans collects snapshots until one has plans of app's sessions.
func collectPlans(t *testing.T, r *collectors.Runner, app string) []collectors.PlanExecution {
	t.Helper()
	var got []collectors.PlanExecution
	pgtest.Eventually(t, 20*time.Second, "the plan in the log", func() bool {
		for _, p := range collect(t, r, collectors.TierSnapshot).Plans {
			if p.ApplicationName == app {
				got = append(got, p)
			}
		}
		return len(got) > 0
	})
	return got
}

func checkPlan(t *testing.T, p collectors.PlanExecution) {
	t.Helper()
	var relations []string
	for _, n := range p.Shape.Nodes {
		if n.Relation != "" {
			relations = append(relations, n.Relation)
		}
	}
	if p.PID == 0 || p.Shape.Hash == 0 || len(p.Rows) != len(p.Shape.Nodes) ||
		strings.Join(relations, ",") != "plan_a,plan_b" && strings.Join(relations, ",") != "plan_b,plan_a" ||
		p.Rows[0].Actual == nil || *p.Rows[0].Actual != 1 || !strings.Contains(p.QueryText, "plan_a a JOIN plan_b") ||
		time.Since(p.LoggedAt) > time.Minute || time.Since(p.LoggedAt) < 0 {
		t.Errorf("plan %+v", p)
	}
}

// TestPlansFromJSONLogThroughSQL reads auto_explain's plans of a role's sessions from a jsonlog
// log through pg_read_binary_file, only those logged after the exporter started.
func TestPlansFromJSONLogThroughSQL(t *testing.T) {
	for _, v := range pgtest.Versions() {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			t.Parallel()
			s := pgtest.StartWith(t, v, pgtest.JSONLog)
			dsn := s.NewDatabase(t)
			db := strings.TrimPrefix(strings.Split(dsn, "?")[0][strings.LastIndex(strings.Split(dsn, "?")[0], "/"):], "/")
			role := "plans_" + db
			setUpPlans(t, s, dsn, role)
			runPlanned(t, dsn, role, "before_"+db) // logged before: not read
			r := collectors.NewRunner(collectors.RunnerOptions{Pool: testPool(t, dsn), Selection: collectors.AllEnabled(),
				Config: collectors.Config{Plans: collectors.PlansConfig{Source: collectors.PlansSQL}}})
			collect(t, r, collectors.TierSnapshot)
			runPlanned(t, dsn, role, "nightly_"+db)
			got := collectPlans(t, r, "nightly_"+db)
			checkPlan(t, got[0])
			if got[0].Database != db || got[0].User != role || got[0].QueryID == nil {
				t.Errorf("jsonlog plan's database %q, user %q, query_id %v", got[0].Database, got[0].User, got[0].QueryID)
			}
			if got[0].Settings["work_mem"] != "8MB" {
				t.Errorf("settings with the plan (auto_explain.log_settings): %v", got[0].Settings)
			}
		})
	}
}

// TestPlansFromStderrFile reads the plans from a stderr log file on this host, its sessions
// told by log_line_prefix; a prefix without %p or %a is refused, saying what it lacks.
func TestPlansFromStderrFile(t *testing.T) {
	if pgserver.UseDocker() {
		t.Skip("the server's log file is in its container, not on this host")
	}
	for _, v := range pgtest.Versions() {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			t.Parallel()
			s := pgtest.Start(t, v)
			dsn := s.NewDatabase(t)
			db := strings.TrimPrefix(strings.Split(dsn, "?")[0][strings.LastIndex(strings.Split(dsn, "?")[0], "/"):], "/")
			role := "plans_" + db
			setUpPlans(t, s, dsn, role)
			pool := testPool(t, dsn)
			var dataDir string
			if err := pool.QueryRow(context.Background(), `SELECT current_setting('data_directory')`).Scan(&dataDir); err != nil {
				t.Fatal(err)
			}
			r := collectors.NewRunner(collectors.RunnerOptions{Pool: pool, Selection: collectors.AllEnabled(),
				Config: collectors.Config{Plans: collectors.PlansConfig{Source: collectors.PlansFile, LogPath: filepath.Join(dataDir, "server.log")}}})
			collect(t, r, collectors.TierSnapshot)
			runPlanned(t, dsn, role, "nightly "+db)
			checkPlan(t, collectPlans(t, r, "nightly "+db)[0])
		})
	}
	if _, err := collectors.NewStderrPrefix("%m [%p] "); err == nil || !strings.Contains(err.Error(), "%a (its application_name)") {
		t.Errorf("a prefix without %%a: %v", err)
	}
}
