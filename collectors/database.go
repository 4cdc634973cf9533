package collectors

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("database", TierSnapshot, true, "Temp files, deadlocks, transactions and block I/O per database from pg_stat_database",
		func(Config) Collector { return databaseCollector{} })
}

var (
	dbTempFilesDesc = newDesc("database_temp_files_total", "Temporary files created by queries (work_mem spills).", "datname")
	dbTempBytesDesc = newDesc("database_temp_bytes_total", "Bytes written to temporary files by queries.", "datname")
	dbDeadlocksDesc = newDesc("database_deadlocks_total", "Deadlocks detected.", "datname")
	dbCommitsDesc   = newDesc("database_commits_total", "Transactions committed.", "datname")
	dbRollbacksDesc = newDesc("database_rollbacks_total", "Transactions rolled back.", "datname")
	dbBlksReadDesc  = newDesc("database_blocks_read_total", "Blocks read from outside shared buffers.", "datname")
	dbBlksHitDesc   = newDesc("database_blocks_hit_total", "Blocks found in shared buffers.", "datname")
)

type databaseCollector struct{}

// SQLDatabase reads pg_stat_database; the row with a NULL datname is shared objects.
const SQLDatabase = `SELECT datname, xact_commit, xact_rollback, blks_read, blks_hit, temp_files, temp_bytes, deadlocks, stats_reset
FROM pg_stat_database WHERE datname IS NOT NULL ORDER BY datname`

func (databaseCollector) Collect(ctx context.Context, tx pgx.Tx, c *Collection) error {
	var err error
	c.Databases, err = queryAll(ctx, tx, SQLDatabase, func(d *DatabaseStat) []any {
		return []any{&d.Datname, &d.XactCommit, &d.XactRollback, &d.BlksRead, &d.BlksHit, &d.TempFiles, &d.TempBytes, &d.Deadlocks, &d.StatsReset}
	})
	return err
}

func (databaseCollector) Emit(c *Collection, ch chan<- prometheus.Metric) {
	for _, d := range c.Databases {
		counter(ch, dbTempFilesDesc, float64(d.TempFiles), d.Datname)
		counter(ch, dbTempBytesDesc, float64(d.TempBytes), d.Datname)
		counter(ch, dbDeadlocksDesc, float64(d.Deadlocks), d.Datname)
		counter(ch, dbCommitsDesc, float64(d.XactCommit), d.Datname)
		counter(ch, dbRollbacksDesc, float64(d.XactRollback), d.Datname)
		counter(ch, dbBlksReadDesc, float64(d.BlksRead), d.Datname)
		counter(ch, dbBlksHitDesc, float64(d.BlksHit), d.Datname)
	}
}

// Database returns the statistics of the named database, or nil.
func (c *Collection) Database(name string) *DatabaseStat {
	for i := range c.Databases {
		if c.Databases[i].Datname == name {
			return &c.Databases[i]
		}
	}
	return nil
}
