package schema

import (
	"fmt"
	"strings"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
)

// The pg_cron mode's SQL collection functions run the collectors' own statements: each
// collection query lives in one place, the collectors package, and sql/collect.sql is
// generated from it (TestGeneratedSQLInSync fails when it is stale; go generate ./... or
// make generate rewrites it). Statements that differ by server version become version branches.

// collectFunc is one telemetry._collect_* function: a collector's statement and its result.
type collectFunc struct {
	name    string
	params  string
	returns string
	sql     func(collectors.Server) string // "" where the server version has no such data
}

func constant(sql string) func(collectors.Server) string {
	return func(collectors.Server) string { return sql }
}

// since is a statement on what exists from that major on (pg_stat_io: 16; what
// buffers_backend was, from it: 17).
func since(major int, sql string) func(collectors.Server) string {
	return func(s collectors.Server) string {
		if s.Major() < major {
			return ""
		}
		return sql
	}
}

var collectFuncs = []collectFunc{
	{name: "_collect_wal", sql: collectors.SQLWAL,
		returns: "wal_records bigint, wal_fpi bigint, wal_bytes bigint, wal_buffers_full bigint, wal_write_time double precision, wal_sync_time double precision, stats_reset timestamptz"},
	{name: "_collect_checkpointer", sql: collectors.SQLCheckpointer,
		returns: "timed bigint, requested bigint, write_time double precision, sync_time double precision, buffers_written bigint, stats_reset timestamptz"},
	{name: "_collect_control_checkpoint", sql: constant(collectors.SQLControlCheckpoint),
		returns: "checkpoint_lsn text, checkpoint_time timestamptz"},
	{name: "_collect_bgwriter", sql: collectors.SQLBGWriter,
		returns: "buffers_clean bigint, maxwritten_clean bigint, buffers_alloc bigint, buffers_backend bigint, buffers_backend_fsync bigint, stats_reset timestamptz"},
	{name: "_collect_io", sql: since(16, collectors.SQLIO), returns: "backend_type text, object text, context text, reads bigint, read_time double precision, writes bigint, " +
		"write_time double precision, writebacks bigint, writeback_time double precision, extends bigint, " +
		"extend_time double precision, hits bigint, evictions bigint, reuses bigint, fsyncs bigint, fsync_time double precision"},
	{name: "_collect_client_backend_writes", sql: since(17, collectors.SQLClientBackendWrites), returns: "writes bigint"},
	{name: "_collect_io_reset", sql: since(16, collectors.SQLIOReset), returns: "stats_reset timestamptz"},
	{name: "_collect_databases", sql: constant(collectors.SQLDatabase),
		returns: "datname name, xact_commit bigint, xact_rollback bigint, blks_read bigint, blks_hit bigint, temp_files bigint, temp_bytes bigint, deadlocks bigint, stats_reset timestamptz"},
	{name: "_collect_replication_slots", sql: constant(collectors.SQLReplicationSlots),
		returns: "slot_name text, slot_type text, active boolean, retained_wal_bytes bigint"},
	{name: "_collect_autovacuum_workers", sql: constant(collectors.SQLAutovacuumWorkers),
		returns: "workers integer"},
	{name: "_collect_tables", params: "p_schemas text[], p_names text[]", sql: constant(collectors.SQLTablesWithSizes(true)),
		returns: "relid oid, schemaname text, relname text, relation_size bigint, total_size bigint, indexes_size bigint, " +
			"n_live_tup bigint, n_dead_tup bigint, n_tup_ins bigint, n_tup_upd bigint, n_tup_del bigint, n_tup_hot_upd bigint, " +
			"last_vacuum timestamptz, last_autovacuum timestamptz, last_analyze timestamptz, last_autoanalyze timestamptz, " +
			"vacuum_count bigint, autovacuum_count bigint, analyze_count bigint, autoanalyze_count bigint"},
	{name: "_collect_relation_states", params: "p_schemas text[], p_names text[], p_relids oid[]", sql: constant(collectors.SQLRelationStates(true)),
		returns: "relid oid, schemaname text, relname text, relfilenode oid, reltuples double precision, n_live_tup bigint, " +
			"n_mod_since_analyze bigint, last_analyze timestamptz, last_autoanalyze timestamptz, last_vacuum timestamptz, " +
			"last_autovacuum timestamptz, total_size bigint, autovacuum_enabled boolean, indexes text, triggers text, foreign_keys text"},
	{name: "_collect_settings", sql: constant(collectors.SQLServerSettings), returns: "settings text"},
	{name: "_collect_session_groups", sql: constant(collectors.SQLSessionGroups),
		returns: "backend_type text, wait_event_type text, wait_event text, state text, count integer"},
	{name: "_collect_active_sessions", sql: constant(collectors.SQLActiveSessions),
		returns: "pid integer, datname text, usename text, application_name text, backend_type text, state text, " +
			"wait_event_type text, wait_event text, query_start timestamptz, state_change timestamptz, query_preview text"},
	{name: "_collect_session_waits", params: "p_query_text_bytes integer, p_names text[], p_roles text[], p_pids integer[], p_all_idle boolean",
		sql: constant(collectors.SQLSessionWaits),
		returns: "pid integer, application_name text, usename text, datname text, state text, wait_event_type text, wait_event text, " +
			"query_id bigint, query_start timestamptz, backend_start timestamptz, query_text text"},
	{name: "_collect_lock_waits", sql: constant(collectors.SQLLockWaits),
		returns: "blocked_pid integer, blocked_user text, blocked_app text, blocked_query_preview text, waited_seconds double precision, " +
			"blocking_pid integer, blocking_user text, blocking_app text, blocking_query_preview text, blocking_state text, lock_type text, " +
			"locked_relation text, locked_object text, datname text, waitstart timestamptz, blocked_backend_start timestamptz"},
	{name: "_collect_xmin_holders", sql: constant(collectors.SQLXminHolders),
		returns: "rank integer, kind text, pid integer, datname text, usename text, name text, state text, held_since timestamptz, " +
			"horizon_xid bigint, xmin_age bigint, query_preview text"},
	{name: "_collect_progress", sql: constant(collectors.SQLProgress),
		returns: "progress_type text, pid integer, datname text, relid oid, relname text, phase text, blocks_total bigint, " +
			"blocks_done bigint, tuples_total bigint, tuples_done bigint, bytes_total bigint, bytes_done bigint, details jsonb"},
	{name: "_collect_replication", sql: constant(collectors.SQLReplication),
		returns: "pid integer, client_addr text, application_name text, state text, sync_state text, sent_lsn text, " +
			"write_lsn text, flush_lsn text, replay_lsn text, write_lag_bytes bigint, flush_lag_bytes bigint, " +
			"replay_lag_bytes bigint, write_lag_seconds double precision, flush_lag_seconds double precision, replay_lag_seconds double precision"},
}

// supportedMajors are the server versions the collectors know.
var supportedMajors = []int{15, 16, 17, 18}

// CollectSQL is the text of sql/collect.sql.
func CollectSQL() string {
	var b strings.Builder
	b.WriteString("-- Generated from the collectors' statements by schema.CollectSQL: do not edit.\n")
	b.WriteString("-- Each function runs one collection query, with a branch per server version where it differs.\n")
	for _, f := range collectFuncs {
		// Dropped first: a result that follows a changed statement cannot be replaced. Only
		// plpgsql calls them, which records no dependency.
		fmt.Fprintf(&b, "\nDROP FUNCTION IF EXISTS telemetry.%s(%s);", f.name, f.params)
		fmt.Fprintf(&b, "\nCREATE OR REPLACE FUNCTION telemetry.%s(%s)\nRETURNS TABLE (%s)\n", f.name, f.params, f.returns)
		b.WriteString("LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$\n#variable_conflict use_column\nBEGIN\n")
		branches := versionBranches(f.sql)
		for i, br := range branches {
			keyword := "ELSIF"
			if i == 0 {
				keyword = "IF"
			}
			if len(branches) > 1 && i < len(branches)-1 {
				fmt.Fprintf(&b, "    %s current_setting('server_version_num')::int >= %d THEN\n", keyword, br.from*10000)
			} else if len(branches) > 1 {
				b.WriteString("    ELSE\n")
			}
			if br.sql != "" {
				fmt.Fprintf(&b, "    RETURN QUERY %s;\n", br.sql)
			}
		}
		if len(branches) > 1 {
			b.WriteString("    END IF;\n")
		}
		b.WriteString("END\n$collect$;\n")
	}
	writeStatementFuncs(&b)
	writeRecordFuncs(&b, collectors.RecordedTables)
	return b.String()
}

// recordFuncs are pg_cron mode's writers of the declared tables (collectors.RecordedTables),
// a function per tier that snapshot() or sample() calls with its parent row's id.
var recordFuncs = []struct {
	name      string
	tier      collectors.Tier
	parentKey string
}{
	{"_record_snapshots", collectors.TierSnapshot, "snapshot_id"},
	{"_record_samples", collectors.TierSample, "sample_id"},
}

// writeRecordFuncs writes the INSERT of each declared table that pg_cron mode fills (a From),
// as the recorder writes the table's rows: the same columns, each from its declared SQL.
func writeRecordFuncs(b *strings.Builder, tables []collectors.RecordedTable) {
	b.WriteString("\n-- The tables declared in collectors/recorded.go, as the recorder writes them from its collections.\n")
	for _, f := range recordFuncs {
		fmt.Fprintf(b, "\nCREATE OR REPLACE FUNCTION telemetry.%s(p_id integer, p_server text, p_at timestamptz)\n", f.name)
		b.WriteString("RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $record$\nBEGIN\n")
		for _, t := range tables {
			if t.Tier != f.tier || t.From == "" {
				continue
			}
			columns := []string{f.parentKey}
			values := []string{"p_id"}
			for _, c := range t.Columns {
				columns = append(columns, c.Name)
				if c.SQL == "" {
					values = append(values, "c."+c.Name)
				} else {
					values = append(values, c.SQL)
				}
			}
			columns = append(columns, "server", "captured_at")
			values = append(values, "p_server", "p_at")
			fmt.Fprintf(b, "%s)\n%s\n    FROM %s c;\n", wrapList("    INSERT INTO telemetry."+t.Name+" (", columns),
				wrapList("    SELECT ", values), t.From)
		}
		b.WriteString("END\n$record$;\n")
		fmt.Fprintf(b, "REVOKE EXECUTE ON FUNCTION telemetry.%s(integer, text, timestamptz) FROM PUBLIC;\n", f.name)
	}
}

// wrapList is prefix and the items joined with ", ", a new line (indented by 8) before an item
// that would take the line past 100 characters.
func wrapList(prefix string, items []string) string {
	const indent = "        "
	var b strings.Builder
	b.WriteString(prefix)
	line := len(prefix)
	for i, item := range items {
		if i > 0 {
			b.WriteString(",")
			line++
			if line+len(item)+1 > 100 {
				b.WriteString("\n" + indent)
				line = len(indent)
			} else {
				b.WriteString(" ")
				line++
			}
		}
		b.WriteString(item)
		line += len(item)
	}
	return b.String()
}

// statementExtVersions are the pg_stat_statements versions whose columns differ (15 and 16
// ship 1.10, 17 1.11, 18 1.12), newest first; 1.9 reads as 1.10 does.
var statementExtVersions = [][2]int{{1, 12}, {1, 11}, {1, 10}}

// statementFuncs read pg_stat_statements where the extension lives in this database, at its
// installed version: the collector's statements, run through EXECUTE on its schema.
var statementFuncs = []struct {
	name, params, returns, using string
	sql                          func(schema, version string) string
}{
	{name: "_collect_statements", sql: collectors.SQLStatements,
		returns: "userid oid, dbid oid, username text, datname text, toplevel boolean, queryid bigint, plans bigint, " +
			"total_plan_time double precision, calls bigint, total_exec_time double precision, rows bigint, " +
			"shared_blks_hit bigint, shared_blks_read bigint, shared_blks_dirtied bigint, shared_blks_written bigint, " +
			"local_blks_hit bigint, local_blks_read bigint, local_blks_dirtied bigint, local_blks_written bigint, " +
			"temp_blks_read bigint, temp_blks_written bigint, blk_read_time double precision, blk_write_time double precision, " +
			"local_blk_read_time double precision, local_blk_write_time double precision, wal_records bigint, wal_fpi bigint, " +
			"wal_bytes bigint, wal_buffers_full bigint, parallel_workers_to_launch bigint, parallel_workers_launched bigint, " +
			"stats_since timestamptz, minmax_stats_since timestamptz"},
	{name: "_collect_statements_info", sql: func(schema, _ string) string { return collectors.SQLStatementsInfo(schema) },
		returns: "dealloc bigint, stats_reset timestamptz"},
	{name: "_collect_statement_texts", params: "p_queryids bigint[], p_length integer", using: " USING p_queryids, p_length",
		sql:     func(schema, _ string) string { return collectors.SQLStatementTexts(schema) },
		returns: "queryid bigint, query text"},
}

// extensionSchema is format()'s placeholder for the extension's schema, which
// SQLStatementsExtension returns quoted.
const extensionSchema = "%1$s"

func writeStatementFuncs(b *strings.Builder) {
	b.WriteString(`
-- _statements_extension: pg_stat_statements' schema (quoted) and version where it is usable in
-- this database (installed, loaded, 1.9 or later), as the statements collector decides.
CREATE OR REPLACE FUNCTION telemetry._statements_extension()
RETURNS TABLE (schema text, major integer, minor integer)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$
DECLARE
    v_schema text;
    v_version text;
    v_loaded boolean;
BEGIN
    ` + collectors.SQLStatementsExtension + `
    INTO v_schema, v_version, v_loaded;
    IF v_schema IS NULL OR NOT v_loaded
       OR (split_part(v_version, '.', 1)::int, split_part(v_version, '.', 2)::int) < (1, 9) THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT v_schema, split_part(v_version, '.', 1)::int, split_part(v_version, '.', 2)::int;
END
$collect$;
`)
	for _, f := range statementFuncs {
		fmt.Fprintf(b, "\nCREATE OR REPLACE FUNCTION telemetry.%s(%s)\nRETURNS TABLE (%s)\n", f.name, f.params, f.returns)
		b.WriteString("LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $collect$\nDECLARE\n    e record;\nBEGIN\n")
		b.WriteString("    SELECT * INTO e FROM telemetry._statements_extension();\n    IF NOT FOUND THEN\n        RETURN;\n    END IF;\n")
		// One branch per version whose statement differs, newest first.
		type branch struct {
			major, minor int
			sql          string
		}
		var branches []branch
		for _, v := range statementExtVersions {
			sql := f.sql(extensionSchema, fmt.Sprintf("%d.%d", v[0], v[1]))
			if strings.Count(sql, "%") != strings.Count(sql, extensionSchema) {
				panic(f.name + ": a % in the statement would be format()'s")
			}
			if len(branches) > 0 && branches[len(branches)-1].sql == sql {
				branches[len(branches)-1].major, branches[len(branches)-1].minor = v[0], v[1]
				continue
			}
			branches = append(branches, branch{v[0], v[1], sql})
		}
		for i, br := range branches {
			switch {
			case len(branches) == 1:
			case i == 0:
				fmt.Fprintf(b, "    IF (e.major, e.minor) >= (%d, %d) THEN\n", br.major, br.minor)
			case i < len(branches)-1:
				fmt.Fprintf(b, "    ELSIF (e.major, e.minor) >= (%d, %d) THEN\n", br.major, br.minor)
			default:
				b.WriteString("    ELSE\n")
			}
			fmt.Fprintf(b, "    RETURN QUERY EXECUTE format($statement$%s$statement$, e.schema)%s;\n", br.sql, f.using)
		}
		if len(branches) > 1 {
			b.WriteString("    END IF;\n")
		}
		b.WriteString("END\n$collect$;\n")
		// Dynamic SQL, for pg_cron's snapshot() alone: not a reader's (docs/security.md).
		fmt.Fprintf(b, "REVOKE EXECUTE ON FUNCTION telemetry.%s(%s) FROM PUBLIC;\n", f.name, paramTypes(f.params))
	}
}

// paramTypes is a parameter list's types, as REVOKE names a function: "p_a bigint[], p_b
// integer" is "bigint[], integer".
func paramTypes(params string) string {
	var types []string
	for _, p := range strings.Split(params, ",") {
		if _, typ, ok := strings.Cut(strings.TrimSpace(p), " "); ok {
			types = append(types, typ)
		}
	}
	return strings.Join(types, ", ")
}

type branch struct {
	from int // the lowest major of the branch
	sql  string
}

// versionBranches groups the majors by the statement they need, newest first.
func versionBranches(sql func(collectors.Server) string) []branch {
	var out []branch
	for i := len(supportedMajors) - 1; i >= 0; i-- {
		m := supportedMajors[i]
		s := sql(collectors.Server{VersionNum: m * 10000})
		if len(out) > 0 && out[len(out)-1].sql == s {
			out[len(out)-1].from = m
			continue
		}
		out = append(out, branch{from: m, sql: s})
	}
	return out
}
