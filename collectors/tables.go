package collectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
)

func init() {
	register("tables", TierSnapshot, true,
		"Sizes, tuples and vacuum counts of tracked tables (--collector.tables.track and telemetry.tracked_tables)",
		func(cfg Config) Collector {
			return &tablesCollector{track: cfg.TrackTables, logger: cfg.Logger, missing: map[TableName]bool{}}
		})
}

var (
	tableLabels         = []string{"schemaname", "relname"}
	tableSizeDesc       = newDesc("table_size_bytes", "Size of the table's main fork.", tableLabels...)
	tableTotalSizeDesc  = newDesc("table_total_size_bytes", "Size of the table with its indexes and TOAST.", tableLabels...)
	tableIndexSizeDesc  = newDesc("table_indexes_size_bytes", "Size of the table's indexes.", tableLabels...)
	tableLiveDesc       = newDesc("table_live_tuples", "Estimated live rows.", tableLabels...)
	tableDeadDesc       = newDesc("table_dead_tuples", "Estimated dead rows.", tableLabels...)
	tableInsertedDesc   = newDesc("table_rows_inserted_total", "Rows inserted.", tableLabels...)
	tableUpdatedDesc    = newDesc("table_rows_updated_total", "Rows updated.", tableLabels...)
	tableDeletedDesc    = newDesc("table_rows_deleted_total", "Rows deleted.", tableLabels...)
	tableHotUpdatedDesc = newDesc("table_rows_hot_updated_total", "Rows HOT-updated.", tableLabels...)
	tableVacuumsDesc    = newDesc("table_vacuums_total", "Vacuums of the table, by kind (manual, auto).", "schemaname", "relname", "kind")
	tableAnalyzesDesc   = newDesc("table_analyzes_total", "Analyzes of the table, by kind (manual, auto).", "schemaname", "relname", "kind")
)

// TableName is a schema-qualified table name as given on the command line.
type TableName struct{ Schema, Table string }

func (n TableName) String() string { return n.Schema + "." + n.Table }

// ParseTableName reads schema.table or table (schema public); either part may be double-quoted
// to keep dots, capitals or quotes ("My Schema"."Orders.2024").
func ParseTableName(s string) (TableName, error) {
	parts, err := splitIdentifiers(strings.TrimSpace(s))
	if err != nil {
		return TableName{}, fmt.Errorf("table name %q: %w", s, err)
	}
	switch len(parts) {
	case 1:
		return TableName{"public", parts[0]}, nil
	case 2:
		return TableName{parts[0], parts[1]}, nil
	}
	return TableName{}, fmt.Errorf("table name %q: want schema.table or table", s)
}

func splitIdentifiers(s string) ([]string, error) {
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return nil, fmt.Errorf("not valid UTF-8 text")
	}
	var parts []string
	for {
		var part string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; ; i++ {
				if i >= len(s) {
					return nil, fmt.Errorf("unterminated quoted identifier")
				}
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i++
						continue
					}
					break
				}
				b.WriteByte(s[i])
			}
			part, s = b.String(), s[i+1:]
		} else {
			end := strings.IndexByte(s, '.')
			if end < 0 {
				end = len(s)
			}
			// Unquoted identifiers fold to lower case as PostgreSQL folds them: ASCII letters only.
			part, s = strings.Map(foldASCII, s[:end]), s[end:]
			if strings.ContainsAny(part, `" `) {
				return nil, fmt.Errorf("unexpected character in %q: quote the identifier", part)
			}
		}
		if part == "" {
			return nil, fmt.Errorf("empty identifier")
		}
		parts = append(parts, part)
		if s == "" {
			return parts, nil
		}
		if s[0] != '.' {
			return nil, fmt.Errorf("expected '.' after identifier %q", part)
		}
		s = s[1:]
	}
}

func foldASCII(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}

type tablesCollector struct {
	track   []TableName
	logger  *slog.Logger
	missing map[TableName]bool // tables from the flag not found, warned about once

	mu          sync.Mutex
	collections int                   // snapshot collections so far: the clock of sizes' reads
	sizes       map[uint32]tableSizes // by relid: the sizes last read, and what they were read at
}

// tableSizes are a table's sizes as last read, with what could change them since: its files
// and counters then, and the collection that read them.
type tableSizes struct {
	files                    []int64
	counters                 tableCounters
	relation, total, indexes *int64
	readAt                   int
}

// tableCounters are the statistics that move when a table's files grow or shrink: rows
// written (an insert, update or delete extends them) and vacuums of the table or its TOAST
// table (which truncate them and create the free space and visibility map forks).
type tableCounters struct{ ins, upd, del, vacuums int64 }

// sizesRefreshedEvery bounds how long a table's sizes are reused: each collection re-reads the
// sizes of this share of the tables (those read longest ago) whatever their counters say, so
// that a change no signal shows is seen within that many collections.
const sizesRefreshedEvery = 10

// sqlTrackedFromSchema adds the tables registered with telemetry.track_table(), where the schema exists.
const sqlTrackedFromSchema = ` UNION SELECT relid FROM telemetry.tracked_tables`

// sqlWanted are the tracked tables ($1 schemas, $2 tables: names are looked up, never spliced
// into SQL), of the kinds pg_stat_all_tables shows, and the relations of extra (a UNION's
// SELECT, or "").
func sqlWanted(withTrackedTables bool, extra string) string {
	tracked := ""
	if withTrackedTables {
		tracked = sqlTrackedFromSchema
	}
	tracked += extra
	return `wanted AS MATERIALIZED (
	SELECT c.oid AS relid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	JOIN unnest($1::text[], $2::text[]) AS w(nsp, rel) ON n.nspname = w.nsp AND c.relname = w.rel
	WHERE c.relkind IN ('r', 't', 'm', 'p')` + tracked + `
)`
}

// sqlFiles are the relations whose files a wanted table's sizes add up (the table, its TOAST
// table, their indexes), and the relation locks other sessions of this database hold or
// await.
const sqlFiles = `files AS MATERIALIZED (
	SELECT w.relid, f.oid FROM wanted w JOIN pg_class c ON c.oid = w.relid
	CROSS JOIN LATERAL (SELECT c.oid UNION ALL SELECT c.reltoastrelid WHERE c.reltoastrelid <> 0
		UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid IN (c.oid, c.reltoastrelid)) AS f(oid)
), locks AS MATERIALIZED (
	SELECT relation, mode FROM pg_locks
	WHERE locktype = 'relation' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
	  AND pid IS DISTINCT FROM pg_backend_pid()
)`

// sqlTableStats are the statistics columns of pg_stat_all_tables (s) the collector reads.
const sqlTableStats = `s.n_live_tup, s.n_dead_tup, s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.n_tup_hot_upd,
	s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
	s.vacuum_count, s.autovacuum_count, s.analyze_count, s.autoanalyze_count`

// sqlOnlyWanted keeps pg_stat_all_tables (s) to the wanted tables: a condition on the view's
// grouping column reaches pg_class inside it, where a join would have it compute every
// relation's statistics first (10,000 relations at 5000 tables: a third of the read).
const sqlOnlyWanted = `s.relid = ANY (ARRAY(SELECT relid FROM wanted))`

// The size functions take AccessShareLock on the table, its indexes, its TOAST table and the
// TOAST index, and would queue behind an ACCESS EXCLUSIVE lock on any of them (REINDEX INDEX,
// VACUUM FULL, most ALTER TABLE) while holding the table's, which makes the exporter a blocker
// of the next DDL: a table's sizes are not read (its row left out) while such a lock is held or
// awaited on one of its relations, checked just before they are read (lock_timeout bounds the
// race left).
// pg_table_size plus pg_indexes_size is pg_total_relation_size, without sizing every index
// twice: each size is a stat() of each fork's files, most of what the sizes cost.
const sqlSizes = `sized AS (
	SELECT relid, bool_and(oid NOT IN (SELECT relation FROM locks WHERE mode = 'AccessExclusiveLock')) AS safe
	FROM files GROUP BY relid
)
SELECT z.relid, z.relation, z.heap + z.indexes, z.indexes
FROM sized, LATERAL (SELECT sized.relid, pg_relation_size(sized.relid) AS relation, pg_table_size(sized.relid) AS heap,
	pg_indexes_size(sized.relid) AS indexes WHERE sized.safe OFFSET 0) AS z`

// SQLTables reads the tracked tables' statistics and, for each, what says whether its sizes
// may have changed since they were last read: its files (each relation's filenode: a rewrite,
// TRUNCATE, REINDEX or a new index changes them), the vacuums of it and its TOAST table, and
// whether another session holds or awaits a lock on one of its relations that may write
// (anything beyond ACCESS SHARE and ROW SHARE: DML, VACUUM, CREATE INDEX, DDL; a long COPY's
// counters move only once it ends). It takes no lock.
func SQLTables(withTrackedTables bool) string {
	return `WITH ` + sqlWanted(withTrackedTables, "") + `, ` + sqlFiles + `, per_table AS (
	SELECT relid, array_agg(pg_relation_filenode(oid)::bigint ORDER BY oid) AS files,
		sum(pg_stat_get_vacuum_count(oid) + pg_stat_get_autovacuum_count(oid))::bigint AS vacuums,
		bool_or(oid IN (SELECT relation FROM locks WHERE mode NOT IN ('AccessShareLock', 'RowShareLock'))) AS writing
	FROM files GROUP BY relid
)
SELECT s.relid, s.schemaname::text, s.relname::text, p.files, p.vacuums, p.writing, ` + sqlTableStats + `
FROM pg_stat_all_tables s JOIN per_table p ON p.relid = s.relid
WHERE ` + sqlOnlyWanted + `
ORDER BY s.schemaname, s.relname`
}

// SQLTableSizes reads the sizes of the tables $1 (oids) that may be read now (see sqlSizes).
const SQLTableSizes = `WITH wanted AS (SELECT DISTINCT unnest($1::oid[]) AS relid), ` + sqlFiles + `, ` + sqlSizes

// SQLTablesWithSizes is the tracked tables' statistics with every one's sizes, in one
// statement: pg_cron mode's collection, which keeps nothing between collections.
func SQLTablesWithSizes(withTrackedTables bool) string {
	return `WITH ` + sqlWanted(withTrackedTables, "") + `, ` + sqlFiles + `, sizes AS (
	WITH ` + strings.Replace(sqlSizes, "\n", "\n\t", -1) + `
)
SELECT s.relid, s.schemaname::text, s.relname::text, z.relation, z.total, z.indexes, ` + sqlTableStats + `
FROM pg_stat_all_tables s LEFT JOIN sizes z(relid, relation, total, indexes) ON z.relid = s.relid
WHERE ` + sqlOnlyWanted + `
ORDER BY s.schemaname, s.relname`
}

// SQLHasTrackedTables tells whether the recorder's schema (and its tracked_tables) exists and
// may be read. A catalog lookup by oid: to_regclass('telemetry.tracked_tables') raises
// "permission denied for schema" for a role without USAGE on it.
// Only a plain table in a schema and of an owner this role trusts: another role's view there
// would run its functions as the exporter.
var SQLHasTrackedTables = `SELECT EXISTS (
	SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname = 'telemetry' AND c.relname = 'tracked_tables' AND c.relkind IN ('r', 'p')
	  AND ` + postgres.TrustedOwner("n.nspowner") + ` AND ` + postgres.TrustedOwner("c.relowner") + `
	  AND has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'))`

// Collect reads every tracked table's statistics, and sizes only where they may have changed
// since last read (issue 22: sizing 1000 tables is 27,000 stat() calls, two thirds of the
// exporter's database time): a table another session writes to or locks for DDL now, whose
// files or write and vacuum counters changed, or whose turn it is (sizesRefreshedEvery); the
// others keep the sizes last read, which nothing has changed since.
func (t *tablesCollector) Collect(ctx context.Context, tx pgx.Tx, c *Collection) error {
	var fromSchema bool
	if err := tx.QueryRow(ctx, SQLHasTrackedTables).Scan(&fromSchema); err != nil {
		return err
	}
	if len(t.track) == 0 && !fromSchema {
		return nil
	}
	schemas, names := make([]string, len(t.track)), make([]string, len(t.track))
	for i, n := range t.track {
		schemas[i], names[i] = n.Schema, n.Table
	}
	type tableRow struct {
		TableStat
		files   []int64
		vacuums int64
		writing bool
	}
	rows, err := queryAll(ctx, tx, SQLTables(fromSchema), func(s *tableRow) []any {
		return []any{&s.Relid, &s.Schemaname, &s.Relname, &s.files, &s.vacuums, &s.writing,
			&s.NLiveTup, &s.NDeadTup, &s.NTupIns, &s.NTupUpd, &s.NTupDel, &s.NTupHotUpd,
			&s.LastVacuum, &s.LastAutovacuum, &s.LastAnalyze, &s.LastAutoanalyze,
			&s.VacuumCount, &s.AutovacuumCount, &s.AnalyzeCount, &s.AutoanalyzeCount}
	}, schemas, names)
	if err != nil {
		return err
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	t.collections++
	if t.sizes == nil {
		t.sizes = map[uint32]tableSizes{}
	}
	counters := func(r tableRow) tableCounters { return tableCounters{r.NTupIns, r.NTupUpd, r.NTupDel, r.vacuums} }
	var toRead []uint32
	var unchanged []tableRow
	for _, r := range rows {
		if prev, ok := t.sizes[r.Relid]; !ok || r.writing || !slices.Equal(prev.files, r.files) || prev.counters != counters(r) {
			toRead = append(toRead, r.Relid)
		} else {
			unchanged = append(unchanged, r)
		}
	}
	slices.SortFunc(unchanged, func(a, b tableRow) int { return t.sizes[a.Relid].readAt - t.sizes[b.Relid].readAt })
	due := min(len(unchanged), (len(rows)+sizesRefreshedEvery-1)/sizesRefreshedEvery)
	reused := map[uint32]bool{}
	for i, r := range unchanged {
		if i < due {
			toRead = append(toRead, r.Relid)
		} else {
			reused[r.Relid] = true
		}
	}
	read, err := t.readSizes(ctx, tx, toRead)
	if err != nil {
		return err
	}
	kept := make(map[uint32]tableSizes, len(rows))
	tables := make([]TableStat, len(rows))
	for i, r := range rows {
		sz, wasRead := read[r.Relid]
		if wasRead {
			sz.files, sz.counters, sz.readAt = r.files, counters(r), t.collections
			kept[r.Relid] = sz
		} else if reused[r.Relid] {
			sz = t.sizes[r.Relid]
			kept[r.Relid] = sz
		} // else not read for a DDL's lock: no sizes now, read again next time
		tables[i] = r.TableStat
		tables[i].RelationSize, tables[i].TotalSize, tables[i].IndexesSize = sz.relation, sz.total, sz.indexes
	}
	t.sizes = kept
	c.Tables = tables
	t.warnMissing(tables)
	return nil
}

// readSizes reads the sizes of these tables; a table whose relations are exclusively locked is
// left out, and all of them where such a lock came between the check and the read.
func (t *tablesCollector) readSizes(ctx context.Context, tx pgx.Tx, relids []uint32) (map[uint32]tableSizes, error) {
	out := make(map[uint32]tableSizes, len(relids))
	if len(relids) == 0 {
		return out, nil
	}
	// A savepoint: a lock timeout in the sizes must not abort the tier's transaction, and
	// rolling back to it releases the locks the size functions took at once.
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer sp.Rollback(ctx)
	rows, _ := sp.Query(ctx, SQLTableSizes, relids)
	var relid uint32
	var sz tableSizes
	_, err = pgx.ForEachRow(rows, []any{&relid, &sz.relation, &sz.total, &sz.indexes}, func() error {
		out[relid] = sz
		return nil
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" /* lock_not_available */ {
		// An exclusive lock came between the check and the size functions: no sizes this
		// time, and the tables' statistics kept.
		return map[uint32]tableSizes{}, nil
	}
	return out, err
}

// warnMissing logs, once per name, a --collector.tables.track table that does not exist (yet).
func (t *tablesCollector) warnMissing(found []TableStat) {
	have := map[TableName]bool{}
	for _, s := range found {
		have[TableName{s.Schemaname, s.Relname}] = true
	}
	for _, n := range t.track {
		if !have[n] && !t.missing[n] && t.logger != nil {
			t.logger.Warn("tracked table not found", "table", n.String())
		}
		t.missing[n] = !have[n]
	}
}

func (t *tablesCollector) Emit(c *Collection, ch chan<- prometheus.Metric) {
	for _, s := range c.Tables {
		l := []string{s.Schemaname, s.Relname}
		if s.RelationSize != nil {
			gauge(ch, tableSizeDesc, float64(*s.RelationSize), l...)
			gauge(ch, tableTotalSizeDesc, float64(*s.TotalSize), l...)
			gauge(ch, tableIndexSizeDesc, float64(*s.IndexesSize), l...)
		}
		gauge(ch, tableLiveDesc, float64(s.NLiveTup), l...)
		gauge(ch, tableDeadDesc, float64(s.NDeadTup), l...)
		counter(ch, tableInsertedDesc, float64(s.NTupIns), l...)
		counter(ch, tableUpdatedDesc, float64(s.NTupUpd), l...)
		counter(ch, tableDeletedDesc, float64(s.NTupDel), l...)
		counter(ch, tableHotUpdatedDesc, float64(s.NTupHotUpd), l...)
		counter(ch, tableVacuumsDesc, float64(s.VacuumCount), s.Schemaname, s.Relname, "manual")
		counter(ch, tableVacuumsDesc, float64(s.AutovacuumCount), s.Schemaname, s.Relname, "auto")
		counter(ch, tableAnalyzesDesc, float64(s.AnalyzeCount), s.Schemaname, s.Relname, "manual")
		counter(ch, tableAnalyzesDesc, float64(s.AutoanalyzeCount), s.Schemaname, s.Relname, "auto")
	}
}
