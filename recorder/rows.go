package recorder

import (
	"encoding/json"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
)

// collectionRows is one collection turned into rows: the parent row (snapshots or samples) and the
// rows of its child tables, written together in one transaction or not at all.
type collectionRows struct {
	tier       collectors.Tier
	capturedAt time.Time
	server     string
	systemID   string
	pgVersion  int
	settings   *string // the server's settings (collectors.SQLServerSettings), kept where they changed
	parent     table
	children   []table
	runStarts  []int64 // the runs this snapshot is the start read of
}

// table is rows for one table; children's rows lack their first column (the parent id) and
// their last two (server, captured_at), which the writer adds. A shared table's rows are
// the collection's but not its children (no parent id), kept once (ON CONFLICT DO NOTHING).
type table struct {
	name    string
	columns []string
	rows    [][]any
	shared  bool
}

func (b *collectionRows) rowCount() int {
	n := 1
	for _, t := range b.children {
		n += len(t.rows)
	}
	return n
}

var snapshotColumns = []string{"captured_at", "pg_version", "wal_records", "wal_fpi", "wal_bytes", "wal_write_time",
	"wal_sync_time", "checkpoint_lsn", "checkpoint_time", "ckpt_timed", "ckpt_requested", "ckpt_write_time",
	"ckpt_sync_time", "ckpt_buffers", "bgw_buffers_clean", "bgw_maxwritten_clean", "bgw_buffers_alloc",
	"bgw_buffers_backend", "bgw_buffers_backend_fsync", "autovacuum_workers", "slots_count",
	"slots_max_retained_wal", "io_checkpointer_writes", "io_checkpointer_write_time", "io_checkpointer_fsyncs",
	"io_checkpointer_fsync_time", "io_autovacuum_writes", "io_autovacuum_write_time", "io_client_writes",
	"io_client_write_time", "io_bgwriter_writes", "io_bgwriter_write_time", "temp_files", "temp_bytes", "server",
	"wal_stats_reset", "ckpt_stats_reset", "bgw_stats_reset", "db_stats_reset", "io_stats_reset", "io_client_buffer_writes"}

// newCollectionRows maps a collection to rows as telemetry.snapshot() and telemetry.sample() do in
// SQL: the parent row, a table per declaration of the collection's tier (tables), with the
// latest sample's standbys in a snapshot's (replication: the snapshot tier does not read
// them), and the pg_stat_statements entries statements says to store.
func newCollectionRows(c *collectors.Collection, tables []collectors.RecordedTable, server string, replication []collectors.ReplicationStat, statements *statementDeltas) *collectionRows {
	b := &collectionRows{tier: c.Tier, capturedAt: c.CapturedAt, server: server, systemID: c.Server.SystemID, pgVersion: c.Server.Major(), settings: c.Settings}
	source := c
	if c.Tier == collectors.TierSnapshot {
		withStandbys := *c
		withStandbys.Replication = replication
		source = &withStandbys
	}
	for _, t := range tables {
		if t.Tier == c.Tier {
			b.children = append(b.children, table{name: t.Name, columns: t.ColumnNames(), rows: t.Rows(source)})
		}
	}
	if c.Tier == collectors.TierSnapshot {
		b.parent = table{name: "snapshots", columns: snapshotColumns, rows: [][]any{snapshotRow(c, server)}}
		b.children = append(append(b.children, statements.rows(c.Statements, c.CapturedAt)...), planRows(c.Plans)...)
	} else {
		b.parent = table{name: "samples", columns: []string{"captured_at", "server"}, rows: [][]any{{c.CapturedAt, server}}}
	}
	for _, t := range append([]table{b.parent}, b.children...) {
		storableTexts(t.rows)
	}
	return b
}

// queryTextColumns are the columns that hold a session's query text, which the recorder
// stores normalized unless told to keep it literal (Options.LiteralQueryText).
var queryTextColumns = map[string]bool{"query_preview": true, "blocked_query_preview": true, "blocking_query_preview": true,
	"query_text": true, "query": true}

// storableTexts makes every text of rows one the database accepts (collectors.ValidText): a
// refused text would set its row aside.
func storableTexts(rows [][]any) {
	for _, row := range rows {
		for i, v := range row {
			switch v := v.(type) {
			case string:
				row[i] = collectors.ValidText(v)
			case *string:
				if v == nil {
					continue
				}
				if s := collectors.ValidText(*v); s != *v {
					row[i] = &s
				}
			}
		}
	}
}

func snapshotRow(c *collectors.Collection, server string) []any {
	row := []any{c.CapturedAt, c.Server.Major()}
	if w := c.WAL; w != nil {
		row = append(row, w.Records, w.FPI, w.Bytes, w.WriteTimeMs, w.SyncTimeMs)
	} else {
		row = append(row, nil, nil, nil, nil, nil)
	}
	if ctl := c.Control; ctl != nil {
		row = append(row, ctl.LSN, ctl.Time)
	} else {
		row = append(row, nil, nil)
	}
	if k := c.Checkpointer; k != nil {
		row = append(row, k.Timed, k.Requested, k.WriteTimeMs, k.SyncTimeMs, k.BuffersWritten)
	} else {
		row = append(row, nil, nil, nil, nil, nil)
	}
	if bg := c.BGWriter; bg != nil {
		row = append(row, bg.BuffersClean, bg.MaxwrittenClean, bg.BuffersAlloc, bg.BuffersBackend, bg.BuffersBackendFsync)
	} else {
		row = append(row, nil, nil, nil, nil, nil)
	}
	row = append(row, c.AutovacuumWorkers)
	if succeeded(c, "replication_slots") {
		var maxRetained *int64
		for _, s := range c.ReplicationSlots {
			if r := s.RetainedWALBytes; r != nil && (maxRetained == nil || *r > *maxRetained) {
				maxRetained = r
			}
		}
		row = append(row, len(c.ReplicationSlots), maxRetained)
	} else {
		row = append(row, nil, nil)
	}
	for _, backendType := range []string{"checkpointer", "autovacuum worker", "client backend", "background writer"} {
		row = append(row, ioSum(c, backendType, func(s collectors.IOStat) *int64 { return s.Writes }),
			ioSum(c, backendType, func(s collectors.IOStat) *float64 { return s.WriteTimeMs }))
		if backendType == "checkpointer" {
			row = append(row, ioSum(c, backendType, func(s collectors.IOStat) *int64 { return s.Fsyncs }),
				ioSum(c, backendType, func(s collectors.IOStat) *float64 { return s.FsyncTimeMs }))
		}
	}
	d := c.Database(c.Server.Database)
	if d != nil {
		row = append(row, d.TempFiles, d.TempBytes)
	} else {
		row = append(row, nil, nil)
	}
	row = append(row, server)
	var resets [5]*time.Time
	if c.WAL != nil {
		resets[0] = c.WAL.StatsReset
	}
	if c.Checkpointer != nil {
		resets[1] = c.Checkpointer.StatsReset
	}
	if c.BGWriter != nil {
		resets[2] = c.BGWriter.StatsReset
	}
	if d != nil {
		resets[3] = d.StatsReset
	}
	resets[4] = c.IOStatsReset
	for _, r := range resets {
		row = append(row, r)
	}
	if c.BGWriter != nil {
		row = append(row, c.BGWriter.ClientBackendWrites)
	} else {
		row = append(row, nil)
	}
	return row
}

// succeeded tells whether a collector ran in this collection without error: its empty
// result then means "none", not "unknown".
func succeeded(c *collectors.Collection, name string) bool {
	for _, r := range c.Results {
		if r.Collector == name {
			return r.Err == nil
		}
	}
	return false
}

// ioSum adds a pg_stat_io column over a backend type's rows as SQL's sum() does: NULL when
// no row has a value (and on 15, which has no pg_stat_io).
func ioSum[T int64 | float64](c *collectors.Collection, backendType string, col func(collectors.IOStat) *T) *T {
	var sum *T
	for _, s := range c.IO {
		if v := col(s); s.BackendType == backendType && v != nil {
			if sum == nil {
				sum = new(T)
			}
			*sum += *v
		}
	}
	return sum
}

// statementKey is a pg_stat_statements entry.
type statementKey struct {
	userid, dbid uint32
	toplevel     bool
	queryid      int64
}

// statementDeltas is the recorder's delta storage: an entry is stored when its calls changed
// since the previous stored snapshot, and every entry at a full read (a requested snapshot:
// a batch's boundaries), so that a statement's counters at any snapshot are its last row at
// or before it.
type statementDeltas struct {
	calls map[statementKey]int64 // as last stored
	// fullFrom is when a batch's boundary asked for every entry (zero: none asked): kept until
	// a collection taken at or after it stores them, so that one already under way when the
	// boundary came does not use the request up.
	fullFrom time.Time
	// every spaces the statements stored between a batch's boundaries (not above 0: every snapshot):
	// a run's statements come from its boundaries' full reads, and 1000 statements busy every
	// minute were 430 MB a day stored at every snapshot.
	every  time.Duration
	stored time.Time // when they were last stored
}

var statementColumns = []string{"userid", "dbid", "toplevel", "queryid", "datname", "username", "calls", "plans",
	"total_plan_time", "total_exec_time", "rows", "shared_blks_hit", "shared_blks_read", "shared_blks_dirtied",
	"shared_blks_written", "local_blks_read", "local_blks_written", "temp_blks_read", "temp_blks_written",
	"blk_read_time", "blk_write_time", "wal_records", "wal_fpi", "wal_bytes", "wal_buffers_full", "stats_since",
	"parallel_workers_to_launch", "parallel_workers_launched"}

// rows are the statement tables' rows of one snapshot (none where the collector had nothing).
// A nil statementDeltas stores every entry.
func (d *statementDeltas) rows(st *collectors.Statements, at time.Time) []table {
	entries := table{name: "statement_snapshots", columns: statementColumns}
	info := table{name: "statement_info_snapshots", columns: []string{"dealloc", "stats_reset", "entries", "full_read"}}
	texts := table{name: "statement_texts", columns: []string{"queryid", "query"}, shared: true}
	if st == nil {
		return []table{entries, info, texts}
	}
	// Texts whatever the interval: the collector fetches a statement's text once, in the
	// collection that first sees it, and a later stored row (a boundary's, a sampled wait's)
	// refers to it.
	for _, t := range st.Texts {
		texts.rows = append(texts.rows, []any{t.QueryID, t.Text})
	}
	full := d == nil || !d.fullFrom.IsZero() || d.calls == nil
	if !full && d.every > 0 && at.Sub(d.stored) < d.every {
		return []table{entries, info, texts}
	}
	seen := make(map[statementKey]int64, len(st.Entries))
	for i := range st.Entries {
		e := &st.Entries[i]
		k := statementKey{e.UserID, e.DBID, e.Toplevel, e.QueryID}
		seen[k] = e.Calls
		if last, ok := d.last(k); !full && ok && last == e.Calls {
			continue
		}
		entries.rows = append(entries.rows, []any{e.UserID, e.DBID, e.Toplevel, e.QueryID, e.Datname, e.User, e.Calls,
			e.Plans, e.PlanTimeMs, e.ExecTimeMs, e.Rows, e.SharedBlksHit, e.SharedBlksRead, e.SharedBlksDirtied,
			e.SharedBlksWritten, e.LocalBlksRead, e.LocalBlksWritten, e.TempBlksRead, e.TempBlksWritten,
			e.BlkReadTimeMs, e.BlkWriteTimeMs, e.WALRecords, e.WALFPI, e.WALBytes, e.WALBuffersFull, e.StatsSince,
			e.ParallelWorkersToLaunch, e.ParallelWorkersLaunched})
	}
	info.rows = [][]any{{st.Dealloc, st.StatsReset, len(st.Entries), full}}
	if d != nil {
		d.calls, d.stored = seen, at
		if !at.Before(d.fullFrom) {
			d.fullFrom = time.Time{}
		}
	}
	return []table{entries, info, texts}
}

func (d *statementDeltas) last(k statementKey) (int64, bool) {
	if d == nil {
		return 0, false
	}
	n, ok := d.calls[k]
	return n, ok
}

// planRows are the plans a snapshot read from the server's log: each execution, and each
// shape once (kept once per server: ON CONFLICT DO NOTHING).
func planRows(plans []collectors.PlanExecution) []table {
	executions := table{name: "plan_executions", columns: []string{"logged_at", "pid", "application_name", "username", "datname",
		"queryid", "plan_queryid", "plan_hash", "duration_ms", "node_rows", "settings", "workers_planned", "workers_launched", "query_text"}}
	shapes := table{name: "plan_shapes", columns: []string{"plan_hash", "nodes"}, shared: true}
	seen := map[int64]bool{}
	for _, p := range plans {
		if !seen[p.Shape.Hash] {
			seen[p.Shape.Hash] = true
			nodes, _ := json.Marshal(p.Shape.Nodes)
			shapes.rows = append(shapes.rows, []any{p.Shape.Hash, string(nodes)})
		}
		rows, _ := json.Marshal(p.Rows)
		settings := []byte("{}")
		if len(p.Settings) > 0 {
			settings, _ = json.Marshal(p.Settings)
		}
		executions.rows = append(executions.rows, []any{p.LoggedAt, p.PID, p.ApplicationName, p.User, p.Database, p.QueryID, p.PlanQueryID,
			p.Shape.Hash, p.DurationMs, string(rows), string(settings), p.WorkersPlanned, p.WorkersLaunched, p.QueryText})
	}
	return []table{shapes, executions}
}
