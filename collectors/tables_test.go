package collectors_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestParseTableName(t *testing.T) {
	for in, want := range map[string]collectors.TableName{
		"orders":                    {Schema: "public", Table: "orders"},
		"Sales.Orders":              {Schema: "sales", Table: "orders"},
		`"My Schema"."Orders.2024"`: {Schema: "My Schema", Table: "Orders.2024"},
		`etl."quote""d"`:            {Schema: "etl", Table: `quote"d`},
		"  public.orders ":          {Schema: "public", Table: "orders"},
	} {
		got, err := collectors.ParseTableName(in)
		if err != nil || got != want {
			t.Errorf("ParseTableName(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "a.b.c", `"open`, "a..b", ".orders", "orders.", "my table", `a"b`} {
		if got, err := collectors.ParseTableName(bad); err == nil {
			t.Errorf("ParseTableName(%q) = %+v, want an error", bad, got)
		}
	}
}

// TestTablesWithUnusableTelemetrySchema: a pg_monitor role in a database whose telemetry
// schema it may not use still collects the tables named on the command line.
func TestTablesWithUnusableTelemetrySchema(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		admin := pgtest.Connect(t, dsn, "")
		role := "monitor_" + strings.TrimPrefix(databaseName(t, admin), "t_")
		pgtest.MustExec(t, admin, fmt.Sprintf(`CREATE ROLE %s LOGIN IN ROLE pg_monitor`, role))
		t.Cleanup(func() { srv.Exec(t, "postgres", fmt.Sprintf(`DROP OWNED BY %s; DROP ROLE %s`, role, role)) })
		pgtest.MustExec(t, admin, `CREATE SCHEMA telemetry`)
		pgtest.MustExec(t, admin, `CREATE TABLE telemetry.tracked_tables (relid oid)`)
		pgtest.MustExec(t, admin, `CREATE TABLE public.orders (id int)`)

		r := newRunner(t, strings.Replace(dsn, "postgres@", role+"@", 1), "public.orders")
		c := collect(t, r, collectors.TierSnapshot)
		if len(c.Tables) != 1 || c.Tables[0].Relname != "orders" || c.Tables[0].RelationSize == nil {
			t.Errorf("tables = %+v, want orders with its sizes", c.Tables)
		}
	})
}

// TestIndexLockDoesNotStallExporter: with an ACCESS EXCLUSIVE lock on one tracked table's
// index (REINDEX INDEX) or TOAST index in an open transaction, a collection neither waits
// nor becomes a blocker of a DDL issued meanwhile, and the other tracked table keeps its row
// and its sizes.
func TestIndexLockDoesNotStallExporter(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		admin := pgtest.Connect(t, dsn, "")
		pgtest.MustExec(t, admin, `CREATE TABLE public.busy (id int PRIMARY KEY, note text)`)
		pgtest.MustExec(t, admin, `CREATE TABLE public.calm (id int PRIMARY KEY)`)
		var toastIndex string
		if err := admin.QueryRow(context.Background(), `SELECT i.indexrelid::regclass::text FROM pg_class c
			JOIN pg_index i ON i.indrelid = c.reltoastrelid WHERE c.oid = 'public.busy'::regclass`).Scan(&toastIndex); err != nil {
			t.Fatal(err)
		}
		r := newRunner(t, dsn, "public.busy", "public.calm")
		for _, index := range []string{"public.busy_pkey", toastIndex} {
			holder := pgtest.Connect(t, dsn, "holder")
			pgtest.MustExec(t, holder, `BEGIN`)
			pgtest.MustExec(t, holder, `REINDEX INDEX `+index)

			// A DDL issued while the collections run, and who blocks it.
			ddl := pgtest.Connect(t, dsn, "ddl")
			var ddlPID int32
			if err := ddl.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&ddlPID); err != nil {
				t.Fatal(err)
			}
			ddlDone := make(chan error, 1)
			go func() {
				time.Sleep(200 * time.Millisecond)
				_, err := ddl.Exec(context.Background(), `ALTER TABLE public.busy ADD COLUMN extra int`)
				ddlDone <- err
			}()
			stop := make(chan struct{})
			blockers := make(chan []string, 1)
			go func() {
				var seen []string
				defer func() { blockers <- seen }()
				for {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					rows, _ := admin.Query(context.Background(), `SELECT a.application_name FROM unnest(pg_blocking_pids($1)) b(pid)
						JOIN pg_stat_activity a ON a.pid = b.pid WHERE a.application_name LIKE 'pg-batch-exporter%'`, ddlPID)
					names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
					seen = append(seen, names...)
				}
			}()
			for range 3 {
				time.Sleep(150 * time.Millisecond)
				start := time.Now()
				c := collect(t, r, collectors.TierSnapshot)
				if took := time.Since(start); took > testOptions.LockTimeout {
					t.Errorf("%s locked: snapshot took %s; lock_timeout is %s", index, took, testOptions.LockTimeout)
				}
				got := map[string]collectors.TableStat{}
				for _, s := range c.Tables {
					got[s.Relname] = s
				}
				if busy, ok := got["busy"]; !ok || busy.RelationSize != nil {
					t.Errorf("%s locked: busy = %+v, want its row without sizes", index, busy)
				}
				if calm, ok := got["calm"]; !ok || calm.RelationSize == nil {
					t.Errorf("%s locked: calm = %+v, want its row with sizes", index, calm)
				}
			}
			close(stop)
			if seen := <-blockers; len(seen) > 0 {
				t.Errorf("%s locked: the exporter blocked the DDL (%v)", index, seen)
			}
			pgtest.MustExec(t, holder, `COMMIT`)
			if err := <-ddlDone; err != nil {
				t.Fatal(err)
			}
			pgtest.MustExec(t, admin, `ALTER TABLE public.busy DROP COLUMN extra`)
		}
		c := collect(t, r, collectors.TierSnapshot)
		for _, s := range c.Tables {
			if s.RelationSize == nil {
				t.Errorf("%s has no sizes once unlocked", s.Relname)
			}
		}
	})
}

func databaseName(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	var name string
	if err := c.QueryRow(context.Background(), `SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestTableSizesReusedOnlyWhileUnchanged: the collector reads a table's sizes again only where
// they may have changed since it last read them, and what it reports equals what the size
// functions say after each kind of change (rows written in a transaction still open, as by a
// long COPY; committed; a new index; TRUNCATE; VACUUM FULL; REINDEX; rows deleted and vacuumed
// away). A collection where nothing changed sizes a tenth of the tables (their turn), not all.
func TestTableSizesReusedOnlyWhileUnchanged(t *testing.T) {
	forEachVersion(t, func(t *testing.T, srv *pgtest.Server, dsn string) {
		ctx := context.Background()
		admin := pgtest.Connect(t, dsn, "")
		pgtest.MustExec(t, admin, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
		names := pgtest.CreateTables(t, admin, 20)
		// No autovacuum: a size it changes between a collection and the check would fail it.
		for _, name := range names {
			pgtest.MustExec(t, admin, `ALTER TABLE `+name+` SET (autovacuum_enabled = off, toast.autovacuum_enabled = off)`)
		}
		pgtest.MustExec(t, admin, `SELECT pg_stat_force_next_flush()`) // the rows' counters, before the first read
		r := newRunner(t, dsn, names...)
		writer := pgtest.Connect(t, dsn, "writer")
		check := func(step string) {
			t.Helper()
			c := collect(t, r, collectors.TierSnapshot)
			if len(c.Tables) != len(names) {
				t.Fatalf("%s: %d tables collected, want %d", step, len(c.Tables), len(names))
			}
			for _, s := range c.Tables {
				var relation, total, indexes int64
				if err := admin.QueryRow(ctx, `SELECT pg_relation_size($1::oid), pg_total_relation_size($1::oid), pg_indexes_size($1::oid)`,
					s.Relid).Scan(&relation, &total, &indexes); err != nil {
					t.Fatal(err)
				}
				if s.RelationSize == nil || *s.RelationSize != relation || *s.TotalSize != total || *s.IndexesSize != indexes {
					t.Errorf("%s: %s sizes %v %v %v, want %d %d %d", step, s.Relname, deref(s.RelationSize), deref(s.TotalSize),
						deref(s.IndexesSize), relation, total, indexes)
				}
			}
		}
		check("first collection")

		pgtest.MustExec(t, admin, `SELECT pg_stat_statements_reset()`)
		check("nothing changed")
		var sized int64
		if err := admin.QueryRow(ctx, `SELECT coalesce(sum(rows), 0) FROM pg_stat_statements WHERE query LIKE 'WITH wanted AS (SELECT DISTINCT unnest(%'`).Scan(&sized); err != nil {
			t.Fatal(err)
		}
		if sized != 2 {
			t.Errorf("nothing changed: %d tables sized, want 2 (a tenth of 20)", sized)
		}

		// Rows of random text, compressed to more than a TOAST tuple: the TOAST table grows too.
		const toasted = `SELECT g, (SELECT string_agg(md5(random()::text || g || h), '') FROM generate_series(1, 200) h) FROM generate_series(%d, %d) g`
		for _, step := range []struct {
			name string
			sql  []string
		}{
			{"rows written, not committed", []string{`BEGIN`, fmt.Sprintf(`INSERT INTO public.t00001 `+toasted, 11, 400)}},
			{"committed", []string{`COMMIT`, `SELECT pg_stat_force_next_flush()`}},
			{"more rows in a transaction", []string{`BEGIN`, fmt.Sprintf(`INSERT INTO public.t00001 `+toasted, 401, 600)}},
			{"rolled back", []string{`ROLLBACK`, `SELECT pg_stat_force_next_flush()`}},
			{"a new index", []string{`CREATE INDEX ON public.t00002 (v)`}},
			{"truncated", []string{`TRUNCATE public.t00003`}},
			{"rewritten", []string{`VACUUM FULL public.t00001`}},
			{"reindexed", []string{`REINDEX TABLE public.t00005`}},
			{"rows deleted and vacuumed away", []string{`DELETE FROM public.t00004`, `SELECT pg_stat_force_next_flush()`, `VACUUM public.t00004`}},
		} {
			for _, sql := range step.sql {
				pgtest.MustExec(t, writer, sql)
			}
			check(step.name)
		}
	})
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}
