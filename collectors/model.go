package collectors

import "time"

// Tier is a collection schedule: what is happening now (sample) or the cumulative
// statistics that compare two points in time (snapshot).
type Tier string

const (
	TierSample   Tier = "sample"
	TierSnapshot Tier = "snapshot"
)

// Server describes the monitored server as seen at the start of a collection.
type Server struct {
	VersionNum int    // server_version_num, e.g. 170010
	Database   string // the database the exporter is connected to
	InRecovery bool   // a standby: no pg_current_wal_lsn(), lag is measured from replay
	SystemID   string // pg_control_system().system_identifier: tells recorded servers apart
	// ReadsAllStats: the role sees every session's activity (pg_read_all_stats, which
	// pg_monitor includes). Without it other roles' sessions show only pid, user and database.
	ReadsAllStats bool
}

// Major is the major version (15, 16, ...).
func (s Server) Major() int { return s.VersionNum / 10000 }

// Collection is one tier's reading of the server: the one data model that the Prometheus
// side turns into metrics and the recorder turns into rows. Pointer fields are nil where
// the server cannot give the value (version, privileges, a failed collector): an absent
// series and a NULL column, never a zero.
type Collection struct {
	Tier       Tier
	CapturedAt time.Time // server clock at the collection's transaction start
	Server     Server
	// Requested: a snapshot taken on request (Runner.Trigger: a batch's boundary,
	// telemetry.request_snapshot()), which reads RelationStates.
	Requested bool

	// Snapshot tier.
	WAL               *WAL
	Checkpointer      *Checkpointer
	Control           *ControlCheckpoint
	BGWriter          *BGWriter
	IO                []IOStat   // 16+; nil on 15
	IOStatsReset      *time.Time // pg_stat_io's stats_reset: deltas of IO across a change are meaningless
	Databases         []DatabaseStat
	ReplicationSlots  []ReplicationSlot
	AutovacuumWorkers *int
	Tables            []TableStat
	Statements        *Statements // nil where pg_stat_statements is not usable in the database
	// Settings is the server's settings as one JSON document (SQLServerSettings).
	Settings *string
	// RelationStates are the relations batches touched and the tracked tables, at a requested snapshot.
	RelationStates []RelationState
	// Plans are those auto_explain logged since the previous snapshot (--plans.source).
	Plans []PlanExecution

	// Sample tier.
	Sessions []SessionGroup
	Activity []ActiveSession
	Locks    []LockWait
	// XminHolders are what held the cleanup horizon back, the oldest first.
	XminHolders []XminHolder
	Progress    []Operation
	Replication []ReplicationStat
	// WaitTime is the wait sampler's session-seconds since the previous sample-tier collection.
	WaitTime []WaitTime
	// StatementWaits splits the same session-seconds by statement (query_id).
	StatementWaits []StatementWait
	// BatchWaits splits them, while a batch runs, between its own sessions and the others.
	BatchWaits []BatchWait
	// BatchRelations are the relations batches' own sessions held locks on at the wait
	// sampler's readings since the previous sample-tier collection.
	BatchRelations []BatchRelation
	// LockEpisodes are the lock waits the wait sampler saw end since the previous sample-tier
	// collection (and, at shutdown, those still going on).
	LockEpisodes []LockEpisode

	// Results says how each collector fared, in run order.
	Results []Result
}

// Result is one collector's outcome within a collection.
type Result struct {
	Collector string
	Duration  time.Duration
	Err       error
}

// WAL is pg_stat_wal. Times are milliseconds, as PostgreSQL reports them; 18 moved them to
// pg_stat_io's WAL rows, where they are read (SQLWAL).
type WAL struct {
	Records     int64
	FPI         int64
	Bytes       int64
	BuffersFull int64
	WriteTimeMs *float64
	SyncTimeMs  *float64
	StatsReset  *time.Time // when the counters last restarted from zero: deltas across it are meaningless
}

// Checkpointer is pg_stat_bgwriter's checkpoint columns on 15/16 and pg_stat_checkpointer on 17+.
type Checkpointer struct {
	Timed          int64
	Requested      int64
	WriteTimeMs    float64
	SyncTimeMs     float64
	BuffersWritten int64
	StatsReset     *time.Time
}

// ControlCheckpoint is pg_control_checkpoint(): where and when the last checkpoint was.
type ControlCheckpoint struct {
	LSN  string // checkpoint_lsn
	Time time.Time
}

// BGWriter is pg_stat_bgwriter. The backend columns exist on 15/16 only.
type BGWriter struct {
	BuffersClean        int64
	MaxwrittenClean     int64
	BuffersAlloc        int64
	BuffersBackend      *int64
	BuffersBackendFsync *int64
	StatsReset          *time.Time
	// ClientBackendWrites is pg_stat_io's writes of relations by client backends (17+), which
	// replaced BuffersBackend; the recorder's bgw_buffers_backend keeps the seed's NULL there,
	// and its io_client_buffer_writes has it.
	ClientBackendWrites *int64
}

// IOStat is one pg_stat_io row. PostgreSQL leaves a column NULL where the operation
// cannot happen for that backend type, object and context.
type IOStat struct {
	BackendType  string
	Object       string
	Context      string
	Reads        *int64
	ReadTimeMs   *float64
	Writes       *int64
	WriteTimeMs  *float64
	Writebacks   *int64
	WritebackMs  *float64
	Extends      *int64
	ExtendTimeMs *float64
	Hits         *int64
	Evictions    *int64
	Reuses       *int64
	Fsyncs       *int64
	FsyncTimeMs  *float64
}

// DatabaseStat is one pg_stat_database row.
type DatabaseStat struct {
	Datname      string
	XactCommit   int64
	XactRollback int64
	BlksRead     int64
	BlksHit      int64
	TempFiles    int64
	TempBytes    int64
	Deadlocks    int64
	StatsReset   *time.Time
}

// ReplicationSlot is one pg_replication_slots row with the WAL it holds back.
type ReplicationSlot struct {
	SlotName         string
	SlotType         string
	Active           bool
	RetainedWALBytes *int64
}

// XminHolder is one holder of the xmin horizon (SQLXminHolders): a session's snapshot or
// transaction, a standby's feedback, a prepared transaction or a replication slot.
type XminHolder struct {
	Rank      int32  // 1 the oldest of the collection
	Kind      string // XminSession, XminStandby, XminPrepared, XminSlot
	PID       *int32 // a session's, a standby's walsender, a slot's consumer
	Datname   *string
	Usename   *string
	Name      *string // a session's application_name, a prepared transaction's gid, a slot's name
	State     *string // a session's state; a slot's active or inactive
	HeldSince *time.Time
	// Xmin is the oldest transaction ID it holds (32 bits, without epoch), XminAge its age in
	// transactions.
	Xmin, XminAge int64
	QueryPreview  *string
}

// TableStat is one tracked table: sizes from the relation, counters from pg_stat_all_tables.
// Sizes are nil while another session holds an ACCESS EXCLUSIVE lock on the table.
type TableStat struct {
	Relid            uint32
	Schemaname       string
	Relname          string
	RelationSize     *int64
	TotalSize        *int64
	IndexesSize      *int64
	NLiveTup         int64
	NDeadTup         int64
	NTupIns          int64
	NTupUpd          int64
	NTupDel          int64
	NTupHotUpd       int64
	LastVacuum       *time.Time
	LastAutovacuum   *time.Time
	LastAnalyze      *time.Time
	LastAutoanalyze  *time.Time
	VacuumCount      int64
	AutovacuumCount  int64
	AnalyzeCount     int64
	AutoanalyzeCount int64
}

// SessionGroup counts sessions by what they were doing at the sample instant, with the
// seed's fill-ins for NULLs: backend_type 'unknown', wait 'Running'/'CPU', state 'unknown'.
type SessionGroup struct {
	BackendType   string
	WaitEventType string
	WaitEvent     string
	State         string
	Count         int
}

// ActiveSession is a non-idle session, the longest-running first.
type ActiveSession struct {
	PID             int32
	Datname         *string
	Usename         *string
	ApplicationName *string
	BackendType     *string
	State           *string
	WaitEventType   *string
	WaitEvent       *string
	QueryStart      *time.Time
	StateChange     *time.Time
	QueryPreview    *string
}

// LockWait is one blocked/blocking pair as pg_blocking_pids() reports it.
type LockWait struct {
	BlockedPID           int32
	BlockedUser          *string
	BlockedApp           *string
	BlockedQueryPreview  *string
	BlockedDuration      *time.Duration // since pg_locks.waitstart
	BlockingPID          int32
	BlockingUser         *string
	BlockingApp          *string
	BlockingQueryPreview *string
	// BlockingState is the blocker's pg_stat_activity.state: a holder idle (in a transaction)
	// is not running the statement its query shows, its last one.
	BlockingState  *string
	LockType       *string
	LockedRelation *string
	// LockedObject names what a lock on no relation is on (an advisory lock's key, the
	// transaction a row lock waits for); a row's or a page's place in its relation.
	LockedObject        *string
	Datname             *string
	WaitStart           *time.Time // pg_locks.waitstart: NULL for an instant as a wait begins
	BlockedBackendStart *time.Time // tells a reused pid apart
}

// Operation is one running command from a pg_stat_progress_* view.
type Operation struct {
	Type        string // vacuum, analyze, copy, create_index, cluster
	PID         int32
	Datname     *string
	Relid       *uint32
	Relname     *string
	Phase       *string
	BlocksTotal *int64
	BlocksDone  *int64
	TuplesTotal *int64
	TuplesDone  *int64
	BytesTotal  *int64
	BytesDone   *int64
	Details     map[string]any // the view's remaining columns, version-dependent
}

// ReplicationStat is one pg_stat_replication row with lag in bytes (from the primary's
// current WAL position) and in time (as the standby reports it).
type ReplicationStat struct {
	PID             int32
	ClientAddr      *string
	ApplicationName string
	State           *string
	SyncState       *string
	SentLSN         *string
	WriteLSN        *string
	FlushLSN        *string
	ReplayLSN       *string
	WriteLagBytes   *int64
	FlushLagBytes   *int64
	ReplayLagBytes  *int64
	WriteLag        *time.Duration
	FlushLag        *time.Duration
	ReplayLag       *time.Duration
}

// BatchWait is session-seconds, while a batch runs, of its own sessions (Own: by state, wait
// and statement, QueryID 0 where none was found, an idle session's last statement) or of every
// other non-idle client session (by wait).
type BatchWait struct {
	Batch         string
	Own           bool
	PID           int32     // an own session's (0 for the others)
	BackendStart  time.Time // an own session's, telling a reused pid apart (zero for the others)
	State         string    // SessionActive, or an own session's idle state (SessionWait.State)
	Usename       string    // an own session's role ("" for the others)
	Datname       string    // an own session's database ("" for the others)
	WaitEventType string
	WaitEvent     string
	QueryID       int64
	Seconds       float64
}

// WaitTime is session-seconds spent in one wait by non-idle client sessions.
type WaitTime struct {
	WaitEventType string
	WaitEvent     string
	Seconds       float64
}
