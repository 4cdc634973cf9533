package collectors

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("changes", TierSnapshot, true,
		"What changed since a batch's normal runs, for the recorder (no metrics): settings, and at a batch's boundaries "+
			"the indexes, statistics and sizes of the tables batches touch",
		func(cfg Config) Collector {
			return &changesCollector{track: cfg.TrackTables, touched: cfg.TouchedRelations}
		})
}

// BatchRelation is a relation a batch's own session held a lock on at a wait sampler reading,
// with the statement it ran then (0: unknown) and its role.
type BatchRelation struct {
	Batch      string
	Relid      uint32
	Schemaname string
	Relname    string
	QueryID    int64
	Usename    string
}

// RelationState is a relation's state at a requested snapshot: what tells a run's tables
// from its baseline's (an index dropped, statistics left stale, a rewrite, growth).
type RelationState struct {
	Relid             uint32
	Schemaname        string
	Relname           string
	Relfilenode       *uint32
	Reltuples         *float64
	NLiveTup          *int64
	NModSinceAnalyze  *int64
	LastAnalyze       *time.Time
	LastAutoanalyze   *time.Time
	LastVacuum        *time.Time
	LastAutovacuum    *time.Time
	TotalSize         *int64 // nil while another session holds an ACCESS EXCLUSIVE lock on it
	AutovacuumEnabled bool   // the table's autovacuum_enabled storage parameter
	// Indexes and Triggers are nil where their definitions could not be read (the table held
	// or awaited ACCESS EXCLUSIVE).
	Indexes     *string // JSON: [{name, definition, valid, ready}], by name
	Triggers    *string // JSON: [{name, table, definition, enabled}] of its user triggers, by name
	ForeignKeys string  // JSON: [{name, table, references, definition}]: its foreign keys and those referencing it
}

// SQLTouchedRelations are the tables, partitioned tables and materialized views of this
// database that the sessions $1 (pids) hold a lock on: one read of pg_locks, taken by the wait
// sampler while a batch runs. Temporary tables and the exporter's own schema are left out.
const SQLTouchedRelations = `SELECT DISTINCT l.pid, c.oid, n.nspname::text, c.relname::text
FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.locktype = 'relation' AND l.granted AND l.pid = ANY ($1::int[])
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND c.relkind IN ('r', 'p', 'm') AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'telemetry')`

// SQLRelationStates reads the state of the tracked tables ($1 schemas, $2 names, and
// telemetry.tracked_tables where withTrackedTables) and of the relations $3 (oids): their
// indexes, relfilenode, rows, statistics times, size (see sqlSizes for when a size is left
// out), triggers and foreign keys. It takes no lock but the sizes' ACCESS SHARE: an index's
// and a trigger's definitions are deparsed with their table opened, so those of a table whose
// sizes are not read are not either (NULL: unknown).
// Triggers are the user's (not the internal ones of foreign keys and deferred constraints),
// named with the table they are defined on: a partition's copy of its parent's trigger is
// the parent's. enabled: it fires in ordinary sessions (ENABLE or ENABLE ALWAYS; not
// DISABLE, nor ENABLE REPLICA). Foreign keys are those of the table and those referencing
// it, as their root key (a partition's copy of its parent's key, or of a key referencing a
// partitioned table, is the parent's): its name, table, the table it references, definition.
func SQLRelationStates(withTrackedTables bool) string {
	return `WITH ` + sqlWanted(withTrackedTables, ` UNION SELECT unnest($3::oid[])`) + `, ` + sqlFiles + `, sizes AS (
	WITH ` + sqlSizes + `
), foreign_keys AS MATERIALIZED (
	SELECT x.relid, r.conname, format('%s.%s', tn.nspname, tc.relname) AS table_name,
		format('%s.%s', fn.nspname, fc.relname) AS references_name, pg_get_constraintdef(r.oid) AS definition
	FROM (SELECT k.oid, k.conrelid AS relid FROM pg_constraint k WHERE k.contype = 'f' AND k.conrelid IN (SELECT relid FROM wanted)
	      UNION
	      SELECT k.oid, k.confrelid FROM pg_constraint k WHERE k.contype = 'f' AND k.confrelid IN (SELECT relid FROM wanted)) x
	JOIN pg_constraint k ON k.oid = x.oid
	JOIN pg_constraint r ON r.oid = CASE WHEN k.conparentid <> 0 THEN k.conparentid ELSE k.oid END
	JOIN pg_class tc ON tc.oid = r.conrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
	JOIN pg_class fc ON fc.oid = r.confrelid JOIN pg_namespace fn ON fn.oid = fc.relnamespace
)
SELECT c.oid, n.nspname::text, c.relname::text, nullif(c.relfilenode, 0), c.reltuples::float8,
	s.n_live_tup, s.n_mod_since_analyze, s.last_analyze, s.last_autoanalyze, s.last_vacuum, s.last_autovacuum, z.total,
	coalesce((SELECT o.option_value::boolean FROM pg_options_to_table(c.reloptions) o WHERE o.option_name = 'autovacuum_enabled'), true),
	CASE WHEN z.relid IS NOT NULL THEN
	coalesce((SELECT jsonb_agg(jsonb_build_object('name', ic.relname, 'definition', pg_get_indexdef(i.indexrelid),
	                                              'valid', i.indisvalid, 'ready', i.indisready) ORDER BY ic.relname)
	          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid), '[]')::text END,
	CASE WHEN z.relid IS NOT NULL THEN
	coalesce((SELECT jsonb_agg(jsonb_build_object('name', t.tgname, 'table', CASE WHEN p.oid IS NULL THEN format('%s.%s', n.nspname, c.relname) ELSE format('%s.%s', pn.nspname, pc.relname) END,
	                                              'definition', pg_get_triggerdef(t.oid), 'enabled', t.tgenabled IN ('O', 'A')) ORDER BY t.tgname)
	          FROM pg_trigger t LEFT JOIN pg_trigger p ON p.oid = t.tgparentid
	          LEFT JOIN pg_class pc ON pc.oid = p.tgrelid LEFT JOIN pg_namespace pn ON pn.oid = pc.relnamespace
	          WHERE t.tgrelid = c.oid AND NOT t.tgisinternal), '[]')::text END,
	coalesce((SELECT jsonb_agg(DISTINCT jsonb_build_object('name', f.conname, 'table', f.table_name, 'references', f.references_name,
	                                                       'definition', f.definition))
	          FROM foreign_keys f WHERE f.relid = c.oid), '[]')::text
FROM wanted w JOIN pg_class c ON c.oid = w.relid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN (SELECT * FROM pg_stat_all_tables s WHERE ` + sqlOnlyWanted + `) s ON s.relid = c.oid
LEFT JOIN sizes z(relid, relation, total, indexes) ON z.relid = c.oid
WHERE c.relkind IN ('r', 'p', 'm')
ORDER BY n.nspname, c.relname`
}

// SQLServerSettings is the server's settings as one JSON document (telemetry.server_settings
// keeps it when it changes): the settings its configuration changed from their defaults (not
// those of this session's client or role), pending restarts, the per-database and per-role
// settings of this database (pg_db_role_setting), the configuration's load time, the server's
// start time and version, and the extensions' versions.
const SQLServerSettings = `SELECT ` + sqlSettingsDocument + `::text`

// sqlSettingsDocument is SQLServerSettings' document, as jsonb.
const sqlSettingsDocument = `jsonb_build_object(
	'settings', coalesce((SELECT jsonb_object_agg(name, jsonb_build_object('setting', setting, 'unit', unit, 'source', source,
	                                                                      'category', category, 'pending_restart', pending_restart))
	                      FROM pg_settings
	                      WHERE source NOT IN ('default', 'override', 'client', 'session', 'database', 'user', 'database user', 'interactive')
	                         OR pending_restart), '{}'),
	'role_settings', coalesce((SELECT jsonb_agg(jsonb_build_object('role', r.rolname, 'database', d.datname, 'settings', to_jsonb(s.setconfig))
	                                            ORDER BY r.rolname NULLS FIRST, d.datname NULLS FIRST)
	                           FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase
	                           WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))), '[]'),
	'conf_load_time', pg_conf_load_time(),
	'start_time', pg_postmaster_start_time(),
	'version', current_setting('server_version'),
	'extensions', coalesce((SELECT jsonb_object_agg(extname, extversion) FROM pg_extension), '{}'))`

// sqlCatalogs are what the database's own objects were at a batch's boundary, read at
// requested snapshots only (one read of pg_proc and pg_index for all of them, too much for
// every minute on a database of thousands) into the settings document there
// (telemetry._note_settings carries them over to the documents between them):
//   - functions: an md5 of each function and procedure of this database's own (not the
//     system's, ours, or an extension's), of what CREATE OR REPLACE can change (its body, SQL-
//     standard ones' too, and attributes; its text would make each stored copy large), so that
//     a function the batch calls, or a trigger of its tables runs, redeployed is told;
//   - indexes: the names of every index of its own tables (not temporary ones), by table, so
//     that a table the batch touched whose state was first read in a run (in its baseline runs,
//     its statements too brief for the wait sampler to see them hold its locks; not tracked)
//     still has its indexes to compare with the baseline's: a dropped index, told by name.
const sqlCatalogs = `jsonb_build_object(
	'functions', coalesce((SELECT jsonb_object_agg(p.oid::regprocedure::text,
	                                               md5(concat_ws(chr(31), p.prolang, p.prosrc, pg_get_function_sqlbody(p.oid), p.probin,
	                                                             p.proconfig::text, p.provolatile, p.proparallel, p.prosecdef,
	                                                             p.proleakproof, p.proisstrict, p.procost, p.prorows)))
	                       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	                       WHERE p.prokind IN ('f', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'telemetry')
	                         AND n.nspname NOT LIKE 'pg\_%'
	                         AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')), '{}'),
	'indexes', (SELECT coalesce(jsonb_object_agg(format('%s.%s', n.nspname, c.relname), x.names), '{}')
	            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	            CROSS JOIN LATERAL (SELECT jsonb_agg(ic.relname::text ORDER BY ic.relname) AS names
	                                FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid) x
	            WHERE c.relkind IN ('r', 'p', 'm') AND c.relpersistence <> 't' AND x.names IS NOT NULL
	              AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'telemetry') AND n.nspname NOT LIKE 'pg\_%'))`

// SQLServerSettingsWithCatalogs is SQLServerSettings with the catalogs, at a requested snapshot.
const SQLServerSettingsWithCatalogs = `SELECT (` + sqlSettingsDocument + ` || ` + sqlCatalogs + `)::text`

type changesCollector struct {
	track   []TableName
	touched func() []uint32 // the relations batches touched so far (the wait sampler's), nil without it
}

func (ch *changesCollector) Collect(ctx context.Context, tx pgx.Tx, c *Collection) error {
	query := SQLServerSettings
	if c.Requested {
		query = SQLServerSettingsWithCatalogs
	}
	var settings string
	if err := tx.QueryRow(ctx, query).Scan(&settings); err != nil {
		return err
	}
	c.Settings = &settings
	if !c.Requested {
		return nil
	}
	var fromSchema bool
	if err := tx.QueryRow(ctx, SQLHasTrackedTables).Scan(&fromSchema); err != nil {
		return err
	}
	schemas, names := make([]string, len(ch.track)), make([]string, len(ch.track))
	for i, n := range ch.track {
		schemas[i], names[i] = n.Schema, n.Table
	}
	relids := []uint32{}
	if ch.touched != nil {
		relids = ch.touched()
	}
	states, err := queryAll(ctx, tx, SQLRelationStates(fromSchema), func(s *RelationState) []any {
		return []any{&s.Relid, &s.Schemaname, &s.Relname, &s.Relfilenode, &s.Reltuples, &s.NLiveTup, &s.NModSinceAnalyze,
			&s.LastAnalyze, &s.LastAutoanalyze, &s.LastVacuum, &s.LastAutovacuum, &s.TotalSize, &s.AutovacuumEnabled, &s.Indexes,
			&s.Triggers, &s.ForeignKeys}
	}, schemas, names, relids)
	c.RelationStates = states
	return err
}

// Emit emits nothing: what changed is the recorder's, for the run diagnosis.
func (*changesCollector) Emit(*Collection, chan<- prometheus.Metric) {}
