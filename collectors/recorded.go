package collectors

import "time"

// What the recorder stores of each collection, declared once per table: each column's name,
// its SQL type and its Go value. The recorder writes a table's rows from its declaration;
// pg_cron mode's sample() and snapshot() fill it through the statement schema.CollectSQL
// generates from it (telemetry._record_samples, _record_snapshots); TestRecordedTablesAsCreated
// compares each declaration with its table as the migrations create it. Adding a table is
// its migration and its declaration here (schema/README.md).

// RecordedTable is a table of the telemetry schema filled from each collection of a tier.
// The writer adds the parent's key first (sample_id or snapshot_id) and server and
// captured_at last: Columns are the others. Its day partitions and retention follow from the
// catalog (telemetry._partitioned_tables).
type RecordedTable struct {
	Name    string
	Tier    Tier
	Columns []RecordedColumn
	// From is where pg_cron mode reads the rows: a telemetry._collect_* function's call whose
	// row is c. Empty where that mode does not collect the data (it has no wait sampler).
	From string
	// Rows are a collection's rows, a value per column.
	Rows func(*Collection) [][]any
}

// RecordedColumn is one column of a RecordedTable.
type RecordedColumn struct {
	Name string
	Type string // as the migration declares it
	// SQL is pg_cron mode's value, from the row c of the table's From: c.<Name> when empty.
	SQL string
}

// Column is a RecordedColumn with its Go value, read from one item of a collection.
type Column[T any] struct {
	RecordedColumn
	value func(*T) any
}

// Col declares a column whose pg_cron value is c.<name>.
func Col[T any](name, typ string, value func(*T) any) Column[T] {
	return Column[T]{RecordedColumn{Name: name, Type: typ}, value}
}

// ColSQL declares a column whose pg_cron value is an expression of the row c.
func ColSQL[T any](name, typ, sql string, value func(*T) any) Column[T] {
	return Column[T]{RecordedColumn{Name: name, Type: typ, SQL: sql}, value}
}

// Recorded declares a table with a row per item of a collection.
func Recorded[T any](name string, tier Tier, from string, items func(*Collection) []T, cols ...Column[T]) RecordedTable {
	t := RecordedTable{Name: name, Tier: tier, From: from}
	for _, c := range cols {
		t.Columns = append(t.Columns, c.RecordedColumn)
	}
	t.Rows = func(c *Collection) [][]any {
		list := items(c)
		out := make([][]any, 0, len(list))
		for i := range list {
			row := make([]any, len(cols))
			for j, col := range cols {
				row[j] = col.value(&list[i])
			}
			out = append(out, row)
		}
		return out
	}
	return t
}

// ColumnNames are the declared columns' names, in order.
func (t RecordedTable) ColumnNames() []string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	return names
}

// RecordedTables are the recorder's tables filled from each collection.
var RecordedTables = []RecordedTable{
	Recorded("table_snapshots", TierSnapshot, "telemetry._collect_tables('{}', '{}')",
		func(c *Collection) []TableStat { return c.Tables },
		Col("relid", "oid", func(s *TableStat) any { return s.Relid }),
		Col("schemaname", "text", func(s *TableStat) any { return s.Schemaname }),
		Col("relname", "text", func(s *TableStat) any { return s.Relname }),
		ColSQL("pg_relation_size", "bigint", "c.relation_size", func(s *TableStat) any { return s.RelationSize }),
		ColSQL("pg_total_relation_size", "bigint", "c.total_size", func(s *TableStat) any { return s.TotalSize }),
		ColSQL("pg_indexes_size", "bigint", "c.indexes_size", func(s *TableStat) any { return s.IndexesSize }),
		Col("n_live_tup", "bigint", func(s *TableStat) any { return s.NLiveTup }),
		Col("n_dead_tup", "bigint", func(s *TableStat) any { return s.NDeadTup }),
		Col("n_tup_ins", "bigint", func(s *TableStat) any { return s.NTupIns }),
		Col("n_tup_upd", "bigint", func(s *TableStat) any { return s.NTupUpd }),
		Col("n_tup_del", "bigint", func(s *TableStat) any { return s.NTupDel }),
		Col("n_tup_hot_upd", "bigint", func(s *TableStat) any { return s.NTupHotUpd }),
		Col("last_vacuum", "timestamptz", func(s *TableStat) any { return s.LastVacuum }),
		Col("last_autovacuum", "timestamptz", func(s *TableStat) any { return s.LastAutovacuum }),
		Col("last_analyze", "timestamptz", func(s *TableStat) any { return s.LastAnalyze }),
		Col("last_autoanalyze", "timestamptz", func(s *TableStat) any { return s.LastAutoanalyze }),
		Col("vacuum_count", "bigint", func(s *TableStat) any { return s.VacuumCount }),
		Col("autovacuum_count", "bigint", func(s *TableStat) any { return s.AutovacuumCount }),
		Col("analyze_count", "bigint", func(s *TableStat) any { return s.AnalyzeCount }),
		Col("autoanalyze_count", "bigint", func(s *TableStat) any { return s.AutoanalyzeCount })),
	// The snapshot tier does not read the standbys: each snapshot keeps the latest sample's,
	// which the recorder puts in its Replication.
	Recorded("replication_snapshots", TierSnapshot, "telemetry._collect_replication()",
		func(c *Collection) []ReplicationStat { return c.Replication },
		Col("pid", "integer", func(r *ReplicationStat) any { return r.PID }),
		ColSQL("client_addr", "inet", "c.client_addr::inet", func(r *ReplicationStat) any { return r.ClientAddr }),
		Col("application_name", "text", func(r *ReplicationStat) any { return r.ApplicationName }),
		Col("state", "text", func(r *ReplicationStat) any { return r.State }),
		Col("sync_state", "text", func(r *ReplicationStat) any { return r.SyncState }),
		ColSQL("sent_lsn", "pg_lsn", "c.sent_lsn::pg_lsn", func(r *ReplicationStat) any { return r.SentLSN }),
		ColSQL("write_lsn", "pg_lsn", "c.write_lsn::pg_lsn", func(r *ReplicationStat) any { return r.WriteLSN }),
		ColSQL("flush_lsn", "pg_lsn", "c.flush_lsn::pg_lsn", func(r *ReplicationStat) any { return r.FlushLSN }),
		ColSQL("replay_lsn", "pg_lsn", "c.replay_lsn::pg_lsn", func(r *ReplicationStat) any { return r.ReplayLSN }),
		ColSQL("write_lag", "interval", "make_interval(secs => c.write_lag_seconds)", func(r *ReplicationStat) any { return r.WriteLag }),
		ColSQL("flush_lag", "interval", "make_interval(secs => c.flush_lag_seconds)", func(r *ReplicationStat) any { return r.FlushLag }),
		ColSQL("replay_lag", "interval", "make_interval(secs => c.replay_lag_seconds)", func(r *ReplicationStat) any { return r.ReplayLag })),
	// What changed since a batch's normal runs: the state of the relations batches touch
	// (and of the tracked tables) at the snapshots a batch's boundaries ask for.
	Recorded("relation_states", TierSnapshot, "telemetry._collect_relation_states('{}', '{}', '{}')",
		func(c *Collection) []RelationState { return c.RelationStates },
		Col("relid", "oid", func(s *RelationState) any { return s.Relid }),
		Col("schemaname", "text", func(s *RelationState) any { return s.Schemaname }),
		Col("relname", "text", func(s *RelationState) any { return s.Relname }),
		Col("relfilenode", "oid", func(s *RelationState) any { return s.Relfilenode }),
		Col("reltuples", "double precision", func(s *RelationState) any { return s.Reltuples }),
		Col("n_live_tup", "bigint", func(s *RelationState) any { return s.NLiveTup }),
		Col("n_mod_since_analyze", "bigint", func(s *RelationState) any { return s.NModSinceAnalyze }),
		Col("last_analyze", "timestamptz", func(s *RelationState) any { return s.LastAnalyze }),
		Col("last_autoanalyze", "timestamptz", func(s *RelationState) any { return s.LastAutoanalyze }),
		Col("last_vacuum", "timestamptz", func(s *RelationState) any { return s.LastVacuum }),
		Col("last_autovacuum", "timestamptz", func(s *RelationState) any { return s.LastAutovacuum }),
		Col("total_size", "bigint", func(s *RelationState) any { return s.TotalSize }),
		Col("autovacuum_enabled", "boolean", func(s *RelationState) any { return s.AutovacuumEnabled }),
		ColSQL("indexes", "jsonb", "c.indexes::jsonb", func(s *RelationState) any { return s.Indexes }),
		ColSQL("triggers", "jsonb", "c.triggers::jsonb", func(s *RelationState) any { return s.Triggers }),
		ColSQL("foreign_keys", "jsonb", "c.foreign_keys::jsonb", func(s *RelationState) any { return s.ForeignKeys })),
	Recorded("wait_samples", TierSample, "telemetry._collect_session_groups()",
		func(c *Collection) []SessionGroup { return c.Sessions },
		Col("backend_type", "text", func(g *SessionGroup) any { return g.BackendType }),
		Col("wait_event_type", "text", func(g *SessionGroup) any { return g.WaitEventType }),
		Col("wait_event", "text", func(g *SessionGroup) any { return g.WaitEvent }),
		Col("state", "text", func(g *SessionGroup) any { return g.State }),
		Col("count", "integer", func(g *SessionGroup) any { return g.Count })),
	Recorded("activity_samples", TierSample, "telemetry._collect_active_sessions()",
		func(c *Collection) []ActiveSession { return c.Activity },
		Col("pid", "integer", func(a *ActiveSession) any { return a.PID }),
		Col("usename", "text", func(a *ActiveSession) any { return a.Usename }),
		Col("application_name", "text", func(a *ActiveSession) any { return a.ApplicationName }),
		Col("backend_type", "text", func(a *ActiveSession) any { return a.BackendType }),
		Col("state", "text", func(a *ActiveSession) any { return a.State }),
		Col("wait_event_type", "text", func(a *ActiveSession) any { return a.WaitEventType }),
		Col("wait_event", "text", func(a *ActiveSession) any { return a.WaitEvent }),
		Col("query_start", "timestamptz", func(a *ActiveSession) any { return a.QueryStart }),
		Col("state_change", "timestamptz", func(a *ActiveSession) any { return a.StateChange }),
		ColSQL("query_preview", "text", "telemetry._normalized_query(c.query_preview)", func(a *ActiveSession) any { return a.QueryPreview }),
		Col("datname", "text", func(a *ActiveSession) any { return a.Datname })),
	Recorded("progress_samples", TierSample, "telemetry._collect_progress()",
		func(c *Collection) []Operation { return c.Progress },
		Col("progress_type", "text", func(p *Operation) any { return p.Type }),
		Col("pid", "integer", func(p *Operation) any { return p.PID }),
		Col("relid", "oid", func(p *Operation) any { return p.Relid }),
		Col("relname", "text", func(p *Operation) any { return p.Relname }),
		Col("phase", "text", func(p *Operation) any { return p.Phase }),
		Col("blocks_total", "bigint", func(p *Operation) any { return p.BlocksTotal }),
		Col("blocks_done", "bigint", func(p *Operation) any { return p.BlocksDone }),
		Col("tuples_total", "bigint", func(p *Operation) any { return p.TuplesTotal }),
		Col("tuples_done", "bigint", func(p *Operation) any { return p.TuplesDone }),
		Col("bytes_total", "bigint", func(p *Operation) any { return p.BytesTotal }),
		Col("bytes_done", "bigint", func(p *Operation) any { return p.BytesDone }),
		Col("details", "jsonb", func(p *Operation) any { return p.Details }),
		Col("datname", "text", func(p *Operation) any { return p.Datname })),
	Recorded("lock_samples", TierSample, "telemetry._collect_lock_waits()",
		func(c *Collection) []LockWait { return c.Locks },
		Col("blocked_pid", "integer", func(l *LockWait) any { return l.BlockedPID }),
		Col("blocked_user", "text", func(l *LockWait) any { return l.BlockedUser }),
		Col("blocked_app", "text", func(l *LockWait) any { return l.BlockedApp }),
		ColSQL("blocked_query_preview", "text", "telemetry._normalized_query(c.blocked_query_preview)", func(l *LockWait) any { return l.BlockedQueryPreview }),
		ColSQL("blocked_duration", "interval", "make_interval(secs => c.waited_seconds)", func(l *LockWait) any { return l.BlockedDuration }),
		Col("blocking_pid", "integer", func(l *LockWait) any { return l.BlockingPID }),
		Col("blocking_user", "text", func(l *LockWait) any { return l.BlockingUser }),
		Col("blocking_app", "text", func(l *LockWait) any { return l.BlockingApp }),
		ColSQL("blocking_query_preview", "text", "telemetry._normalized_query(c.blocking_query_preview)", func(l *LockWait) any { return l.BlockingQueryPreview }),
		Col("lock_type", "text", func(l *LockWait) any { return l.LockType }),
		Col("locked_relation", "text", func(l *LockWait) any { return l.LockedRelation }),
		Col("datname", "text", func(l *LockWait) any { return l.Datname }),
		Col("blocking_state", "text", func(l *LockWait) any { return l.BlockingState }),
		Col("locked_object", "text", func(l *LockWait) any { return l.LockedObject })),
	Recorded("xmin_horizon_samples", TierSample, "telemetry._collect_xmin_holders()",
		func(c *Collection) []XminHolder { return c.XminHolders },
		Col("rank", "integer", func(h *XminHolder) any { return h.Rank }),
		Col("kind", "text", func(h *XminHolder) any { return h.Kind }),
		Col("pid", "integer", func(h *XminHolder) any { return h.PID }),
		Col("datname", "text", func(h *XminHolder) any { return h.Datname }),
		Col("usename", "text", func(h *XminHolder) any { return h.Usename }),
		Col("name", "text", func(h *XminHolder) any { return h.Name }),
		Col("state", "text", func(h *XminHolder) any { return h.State }),
		Col("held_since", "timestamptz", func(h *XminHolder) any { return h.HeldSince }),
		Col("horizon_xid", "bigint", func(h *XminHolder) any { return h.Xmin }),
		Col("xmin_age", "bigint", func(h *XminHolder) any { return h.XminAge }),
		ColSQL("query_preview", "text", "telemetry._normalized_query(c.query_preview)", func(h *XminHolder) any { return h.QueryPreview })),
	// The episodes and the wait times come from the wait sampler, which pg_cron mode lacks.
	Recorded("lock_wait_episodes", TierSample, "",
		func(c *Collection) []LockEpisode { return c.LockEpisodes },
		Col("blocked_pid", "integer", func(e *LockEpisode) any { return e.BlockedPID }),
		Col("blocked_backend_start", "timestamptz", func(e *LockEpisode) any { return e.BlockedBackendStart }),
		Col("blocked_user", "text", func(e *LockEpisode) any { return e.BlockedUser }),
		Col("blocked_app", "text", func(e *LockEpisode) any { return e.BlockedApp }),
		Col("blocked_query_preview", "text", func(e *LockEpisode) any { return e.BlockedQueryPreview }),
		Col("blocking_pid", "integer", func(e *LockEpisode) any { return e.BlockingPID }),
		Col("blocking_user", "text", func(e *LockEpisode) any { return e.BlockingUser }),
		Col("blocking_app", "text", func(e *LockEpisode) any { return e.BlockingApp }),
		Col("blocking_query_preview", "text", func(e *LockEpisode) any { return e.BlockingQueryPreview }),
		Col("blocking_pids", "integer[]", func(e *LockEpisode) any { return e.BlockingPIDs }),
		Col("lock_type", "text", func(e *LockEpisode) any { return e.LockType }),
		Col("locked_relation", "text", func(e *LockEpisode) any { return e.LockedRelation }),
		Col("datname", "text", func(e *LockEpisode) any { return e.Datname }),
		Col("started_at", "timestamptz", func(e *LockEpisode) any { return e.StartedAt }),
		Col("last_seen_at", "timestamptz", func(e *LockEpisode) any { return e.LastSeenAt }),
		Col("ended_at", "timestamptz", func(e *LockEpisode) any { return e.EndedAt }),
		Col("duration", "interval", func(e *LockEpisode) any { return e.Duration() }),
		Col("still_waiting", "boolean", func(e *LockEpisode) any { return e.StillWaiting }),
		Col("blocking_batch", "text", func(e *LockEpisode) any { return e.BlockingBatch }),
		Col("blocking_state", "text", func(e *LockEpisode) any { return e.BlockingState }),
		Col("locked_object", "text", func(e *LockEpisode) any { return e.LockedObject })),
	Recorded("wait_time_samples", TierSample, "",
		func(c *Collection) []WaitTime { return c.WaitTime },
		Col("wait_event_type", "text", func(w *WaitTime) any { return w.WaitEventType }),
		Col("wait_event", "text", func(w *WaitTime) any { return w.WaitEvent }),
		Col("seconds", "double precision", func(w *WaitTime) any { return w.Seconds })),
	Recorded("statement_wait_samples", TierSample, "",
		func(c *Collection) []StatementWait { return c.StatementWaits },
		Col("batch", "text", func(w *StatementWait) any { return w.Batch }),
		Col("queryid", "bigint", func(w *StatementWait) any { return w.QueryID }),
		Col("wait_event_type", "text", func(w *StatementWait) any { return w.WaitEventType }),
		Col("wait_event", "text", func(w *StatementWait) any { return w.WaitEvent }),
		Col("before_query_id", "boolean", func(w *StatementWait) any { return w.BeforeQueryID }),
		Col("query_text", "text", func(w *StatementWait) any { return w.QueryText }),
		Col("seconds", "double precision", func(w *StatementWait) any { return w.Seconds })),
	Recorded("batch_wait_samples", TierSample, "",
		func(c *Collection) []BatchWait { return c.BatchWaits },
		Col("batch", "text", func(w *BatchWait) any { return w.Batch }),
		Col("own", "boolean", func(w *BatchWait) any { return w.Own }),
		Col("pid", "integer", func(w *BatchWait) any { return w.PID }),
		Col("backend_start", "timestamptz", func(w *BatchWait) any {
			if w.BackendStart.IsZero() {
				return (*time.Time)(nil)
			}
			return &w.BackendStart
		}),
		Col("state", "text", func(w *BatchWait) any { return w.State }),
		// An own session's role and database (NULL for the others).
		Col("usename", "text", func(w *BatchWait) any { return ownText(w, w.Usename) }),
		Col("datname", "text", func(w *BatchWait) any { return ownText(w, w.Datname) }),
		Col("wait_event_type", "text", func(w *BatchWait) any { return w.WaitEventType }),
		Col("wait_event", "text", func(w *BatchWait) any { return w.WaitEvent }),
		Col("queryid", "bigint", func(w *BatchWait) any { return w.QueryID }),
		Col("seconds", "double precision", func(w *BatchWait) any { return w.Seconds })),
	// The relations a batch's own sessions hold locks on (the wait sampler's pg_locks read).
	Recorded("batch_relations", TierSample, "",
		func(c *Collection) []BatchRelation { return c.BatchRelations },
		Col("batch", "text", func(b *BatchRelation) any { return b.Batch }),
		Col("relid", "oid", func(b *BatchRelation) any { return b.Relid }),
		Col("schemaname", "text", func(b *BatchRelation) any { return b.Schemaname }),
		Col("relname", "text", func(b *BatchRelation) any { return b.Relname }),
		Col("queryid", "bigint", func(b *BatchRelation) any { return b.QueryID }),
		Col("username", "text", func(b *BatchRelation) any { return b.Usename })),
}

// ownText is an own session's text, NULL for the other sessions' rows.
func ownText(w *BatchWait, s string) any {
	if !w.Own {
		return (*string)(nil)
	}
	return s
}
