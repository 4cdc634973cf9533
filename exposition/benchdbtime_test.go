package exposition_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/proctest"
)

// benchDatabaseTime measures what the exporter costs the server it monitors, as issue 22
// compared it with other exporters: the exporter binary at its defaults, connected as a role
// of its own (pg_monitor), tracking 1000 of 5000 tables by flag, with 100 client sessions in
// pg_sleep, scraped every 15 s. Over the first minute after start and three in the steady
// state: the database time of its role's statements
// (pg_stat_statements' total_exec_time plus total_plan_time; the server does not track
// planning by default), the tracked-tables read among them, and the CPU of the backends
// serving it (/proc/<pid>/stat: parsing, planning and the protocol too). Short (make test):
// 100 tables, 20 tracked, 10 sessions, over two 5 s windows, scaled to a minute.
func benchDatabaseTime(t *testing.T, full bool) benchSection {
	tables, tracked, sessions, window, steadyWindow := 100, 20, 10, 5*time.Second, 5*time.Second
	srv := pgtest.Start(t, latestMajor())
	if full {
		tables, tracked, sessions, window, steadyWindow = 5000, 1000, 100, time.Minute, 3*time.Minute
		srv = pgtest.StartWith(t, latestMajor(), pgtest.Options{Private: true, Settings: map[string]string{"max_connections": "300"}})
	}
	ctx := context.Background()
	dsn := srv.NewDatabase(t)
	ctl := pgtest.Connect(t, dsn, "bench control")
	pgtest.MustExec(t, ctl, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
	names := pgtest.CreateTables(t, ctl, tables)
	var db string
	if err := ctl.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	role := "exporter_" + strings.TrimPrefix(db, "t_")
	pgtest.MustExec(t, ctl, fmt.Sprintf(`CREATE ROLE %s LOGIN IN ROLE pg_monitor`, role))
	t.Cleanup(func() { srv.Exec(t, "postgres", fmt.Sprintf(`DROP OWNED BY %s; DROP ROLE %s`, role, role)) })
	sleepingSessions(t, dsn, sessions, sessions)

	args := []string{"--postgres.dsn=" + strings.Replace(dsn, "//"+srv.User+"@", "//"+role+"@", 1)}
	for _, name := range names[:tracked] {
		args = append(args, "--collector.tables.track="+name)
	}
	p := startExporterBinary(t, args...)
	pgtest.Eventually(t, 2*time.Minute, "the exporter binary's first snapshot-tier collection", func() bool {
		_, body := scrape(t, p.url)
		return strings.Contains(body, `pgbatch_collector_success{collector="tables"} 1`)
	})
	backends := func() map[uint32]time.Duration {
		return proctest.BackendsCPU(t, ctl, `SELECT pid FROM pg_stat_activity WHERE usename = $1`, role)
	}
	// measure is the row of a window of the given length from notBefore (or now, if later):
	// the role's statements reset at its start, scraped every 15 s meanwhile.
	measure := func(label string, notBefore time.Time, window time.Duration) []string {
		time.Sleep(time.Until(notBefore))
		pgtest.MustExec(t, ctl, `SELECT pg_stat_statements_reset(userid => $1::regrole::oid)`, role)
		cpu0, start := backends(), time.Now()
		for at := start; at.Before(start.Add(window)); at = at.Add(15 * time.Second) {
			time.Sleep(time.Until(at))
			scrape(t, p.url)
		}
		time.Sleep(time.Until(start.Add(window)))
		cpu1 := backends()
		elapsed := time.Since(start)
		perMinute := func(ms float64) string { return fmt.Sprintf("%.0f ms", ms*time.Minute.Seconds()/elapsed.Seconds()) }
		// The tracked-tables read: its statistics (once per snapshot-tier collection) and the
		// sizes read where they may have changed.
		var calls, collections, sized int64
		var dbTime, tablesTime float64
		if err := ctl.QueryRow(ctx, `SELECT sum(calls)::bigint, sum(total_exec_time + total_plan_time),
				coalesce(sum(calls) FILTER (WHERE query LIKE 'WITH wanted AS MATERIALIZED%'), 0)::bigint,
				coalesce(sum(total_exec_time + total_plan_time) FILTER (WHERE query LIKE 'WITH wanted AS%'), 0),
				coalesce(sum(rows) FILTER (WHERE query LIKE 'WITH wanted AS (SELECT DISTINCT unnest(%'), 0)::bigint
			FROM pg_stat_statements WHERE userid = $1::regrole::oid`, role).Scan(&calls, &dbTime, &collections, &tablesTime, &sized); err != nil {
			t.Fatal(err)
		}
		var cpu time.Duration
		for pid, end := range cpu1 {
			cpu += end - cpu0[pid] // a backend that connected meanwhile counts from 0
		}
		tablesRead := "-"
		if collections > 0 {
			tablesRead = fmt.Sprintf("%.1f ms (%d collections, %d tables sized)", tablesTime/float64(collections), collections, sized)
		}
		backendCPU := "not measured (docker backend: the pids are the container's)"
		if srv.DataDir != "" {
			backendCPU = perMinute(float64(cpu.Microseconds()) / 1000)
		}
		return []string{label, fmt.Sprint(tables), fmt.Sprint(tracked), fmt.Sprint(sessions), fmt.Sprint(calls),
			perMinute(dbTime), tablesRead, backendCPU}
	}
	// The first minute, from a little after the first snapshot-tier collection: the window
	// holds the next one, on backends that may not have served one yet (a new backend maps
	// the shared buffers it reads and fills its catalog caches: the read costs twice its
	// steady cost there). Then the steady state: three minutes from a little after the third,
	// when both of the pool's connections (--postgres.max-connections 2) have served the
	// collections; three collections, as one varies by half from minute to minute.
	firstStart := time.Now().Add(2 * time.Second)
	steadyStart := firstStart.Add(2 * time.Minute)
	if !full {
		steadyStart = firstStart.Add(window)
	}
	rows := [][]string{measure("first after start", firstStart, window),
		measure("steady state (the fourth to the sixth snapshot-tier collection)", steadyStart, steadyWindow)}
	return benchSection{
		title: fmt.Sprintf("The exporter's database time: PostgreSQL %d, the exporter binary at its defaults as a pg_monitor role, "+
			"%d tables of which %d tracked, %d client sessions in pg_sleep, scraped every 15 s; per minute; target under 100 ms (steady state)",
			latestMajor(), tables, tracked, sessions),
		header: []string{"minutes", "tables", "tracked", "sessions", "statements", "database time per minute (pg_stat_statements)",
			"tracked-tables read per snapshot-tier collection", "its backends' CPU per minute"},
		rows: rows,
	}
}
