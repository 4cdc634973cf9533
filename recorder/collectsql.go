package recorder

import (
	"fmt"
	"strings"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
)

// The pg_cron mode's SQL collection functions run the collectors' own statements: each
// collection query lives in one place, the collectors package, and sql/collect.sql is
// generated from it (TestGeneratedSQLInSync fails when it is stale; PGBATCH_UPDATE_SQL=1
// rewrites it). Statements that differ by server version become version branches.

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

// since16 is a statement on pg_stat_io, which 15 does not have.
func since16(sql string) func(collectors.Server) string {
	return func(s collectors.Server) string {
		if s.Major() < 16 {
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
	{name: "_collect_io", sql: since16(collectors.SQLIO), returns: "backend_type text, object text, context text, reads bigint, read_time double precision, writes bigint, " +
		"write_time double precision, writebacks bigint, writeback_time double precision, extends bigint, " +
		"extend_time double precision, hits bigint, evictions bigint, reuses bigint, fsyncs bigint, fsync_time double precision"},
	{name: "_collect_io_reset", sql: since16(collectors.SQLIOReset), returns: "stats_reset timestamptz"},
	{name: "_collect_databases", sql: constant(collectors.SQLDatabase),
		returns: "datname name, xact_commit bigint, xact_rollback bigint, blks_read bigint, blks_hit bigint, temp_files bigint, temp_bytes bigint, deadlocks bigint, stats_reset timestamptz"},
	{name: "_collect_replication_slots", sql: constant(collectors.SQLReplicationSlots),
		returns: "slot_name text, slot_type text, active boolean, retained_wal_bytes bigint"},
	{name: "_collect_autovacuum_workers", sql: constant(collectors.SQLAutovacuumWorkers),
		returns: "workers integer"},
	{name: "_collect_tables", params: "p_schemas text[], p_names text[]", sql: constant(collectors.SQLTables(true, true)),
		returns: "relid oid, schemaname text, relname text, relation_size bigint, total_size bigint, indexes_size bigint, " +
			"n_live_tup bigint, n_dead_tup bigint, n_tup_ins bigint, n_tup_upd bigint, n_tup_del bigint, n_tup_hot_upd bigint, " +
			"last_vacuum timestamptz, last_autovacuum timestamptz, last_analyze timestamptz, last_autoanalyze timestamptz, " +
			"vacuum_count bigint, autovacuum_count bigint, analyze_count bigint, autoanalyze_count bigint"},
	{name: "_collect_session_groups", sql: constant(collectors.SQLSessionGroups),
		returns: "backend_type text, wait_event_type text, wait_event text, state text, count integer"},
	{name: "_collect_active_sessions", sql: constant(collectors.SQLActiveSessions),
		returns: "pid integer, datname text, usename text, application_name text, backend_type text, state text, " +
			"wait_event_type text, wait_event text, query_start timestamptz, state_change timestamptz, query_preview text"},
	{name: "_collect_lock_waits", sql: constant(collectors.SQLLockWaits),
		returns: "blocked_pid integer, blocked_user text, blocked_app text, blocked_query_preview text, waited_seconds double precision, " +
			"blocking_pid integer, blocking_user text, blocking_app text, blocking_query_preview text, lock_type text, " +
			"locked_relation text, datname text"},
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
	b.WriteString("-- Generated from the collectors' statements by recorder.CollectSQL: do not edit.\n")
	b.WriteString("-- Each function runs one collection query, with a branch per server version where it differs.\n")
	for _, f := range collectFuncs {
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
	return b.String()
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
