package collectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
}

// sqlTrackedFromSchema adds the tables registered with telemetry.track_table(), where the schema exists.
const sqlTrackedFromSchema = ` UNION SELECT relid FROM telemetry.tracked_tables`

// SQLTables reads tracked tables by name ($1 schemas, $2 tables): names are looked up, never
// spliced into SQL. Reading the statistics takes no lock. The size functions take
// AccessShareLock on the table, its indexes, its TOAST table and the TOAST index, and would
// queue behind an ACCESS EXCLUSIVE lock on any of them (REINDEX INDEX, VACUUM FULL, most
// ALTER TABLE) while holding the table's, which makes the exporter a blocker of the next DDL:
// a table's sizes are skipped while such a lock is held or queued on one of its relations.
// withSizes false reads no size at all (the fallback when the check lost a race).
func SQLTables(withTrackedTables, withSizes bool) string {
	tracked := ""
	if withTrackedTables {
		tracked = sqlTrackedFromSchema
	}
	sizes := "NULL::bigint, NULL::bigint, NULL::bigint"
	if withSizes {
		sizes = `CASE WHEN size_safe THEN pg_relation_size(s.relid) END,
	CASE WHEN size_safe THEN pg_total_relation_size(s.relid) END,
	CASE WHEN size_safe THEN pg_indexes_size(s.relid) END`
	}
	return `WITH wanted AS (
	SELECT c.oid AS relid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	JOIN unnest($1::text[], $2::text[]) AS w(nsp, rel) ON n.nspname = w.nsp AND c.relname = w.rel` + tracked + `
), exclusive AS (
	SELECT relation FROM pg_locks
	WHERE locktype = 'relation' AND mode = 'AccessExclusiveLock'
	  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
), busy AS MATERIALIZED (
	SELECT c.oid AS relid FROM pg_class c JOIN wanted w ON w.relid = c.oid
	WHERE EXISTS (
		SELECT FROM (SELECT c.oid UNION ALL SELECT c.reltoastrelid
			UNION ALL SELECT indexrelid FROM pg_index WHERE indrelid IN (c.oid, c.reltoastrelid)) AS opened(oid)
		JOIN exclusive e ON e.relation = opened.oid)
)
SELECT s.relid, s.schemaname::text, s.relname::text, ` + sizes + `,
	s.n_live_tup, s.n_dead_tup, s.n_tup_ins, s.n_tup_upd, s.n_tup_del, s.n_tup_hot_upd,
	s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
	s.vacuum_count, s.autovacuum_count, s.analyze_count, s.autoanalyze_count
FROM pg_stat_all_tables s JOIN wanted USING (relid)
CROSS JOIN LATERAL (SELECT s.relid NOT IN (SELECT relid FROM busy) AS size_safe) AS safety
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
	read := func(withSizes bool) ([]TableStat, error) {
		// A savepoint: a lock timeout in the sizes must not abort the tier's transaction, and
		// rolling back to it releases the locks the size functions took at once.
		sp, err := tx.Begin(ctx)
		if err != nil {
			return nil, err
		}
		defer sp.Rollback(ctx)
		return queryAll(ctx, sp, SQLTables(fromSchema, withSizes), func(s *TableStat) []any {
			return []any{&s.Relid, &s.Schemaname, &s.Relname, &s.RelationSize, &s.TotalSize, &s.IndexesSize,
				&s.NLiveTup, &s.NDeadTup, &s.NTupIns, &s.NTupUpd, &s.NTupDel, &s.NTupHotUpd,
				&s.LastVacuum, &s.LastAutovacuum, &s.LastAnalyze, &s.LastAutoanalyze,
				&s.VacuumCount, &s.AutovacuumCount, &s.AnalyzeCount, &s.AutoanalyzeCount}
		}, schemas, names)
	}
	tables, err := read(true)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" /* lock_not_available */ {
		// An exclusive lock came between the check and the size functions: keep every
		// table's statistics, without sizes this time.
		tables, err = read(false)
	}
	if err != nil {
		return err
	}
	c.Tables = tables
	t.warnMissing(tables)
	return nil
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
