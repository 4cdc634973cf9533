package collectors

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("replication", TierSample, true, "Replication lag of connected standbys from pg_stat_replication",
		func(Config) Collector { return replicationCollector{} })
}

var (
	replLabels       = []string{"application_name", "client_addr", "stage"}
	replLagBytesDesc = newDesc("replication_lag_bytes", "WAL not yet written, flushed or replayed by the standby, in bytes.", replLabels...)
	replLagSecDesc   = newDesc("replication_lag_seconds", "Time the standby reports for writing, flushing or replaying recent WAL.", replLabels...)
)

// SQLReplication reads pg_stat_replication with lag in bytes from this server's WAL position.
const SQLReplication = `SELECT pid, host(client_addr), application_name, state, sync_state,
	sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text,
	(` + sqlCurrentLSN + ` - write_lsn)::bigint, (` + sqlCurrentLSN + ` - flush_lsn)::bigint, (` + sqlCurrentLSN + ` - replay_lsn)::bigint,
	extract(epoch FROM write_lag)::float8, extract(epoch FROM flush_lag)::float8, extract(epoch FROM replay_lag)::float8
FROM pg_stat_replication ORDER BY pid`

type replicationCollector struct{}

func (replicationCollector) Collect(ctx context.Context, tx pgx.Tx, c *Collection) error {
	rows, _ := tx.Query(ctx, SQLReplication)
	stats, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ReplicationStat, error) {
		var s ReplicationStat
		var wl, fl, rl *float64
		err := r.Scan(&s.PID, &s.ClientAddr, &s.ApplicationName, &s.State, &s.SyncState,
			&s.SentLSN, &s.WriteLSN, &s.FlushLSN, &s.ReplayLSN, &s.WriteLagBytes, &s.FlushLagBytes, &s.ReplayLagBytes, &wl, &fl, &rl)
		s.WriteLag, s.FlushLag, s.ReplayLag = secondsToDuration(wl), secondsToDuration(fl), secondsToDuration(rl)
		return s, err
	})
	if err != nil {
		return err
	}
	c.Replication = stats
	return nil
}

func (replicationCollector) Emit(c *Collection, ch chan<- prometheus.Metric) {
	for _, s := range c.Replication {
		addr := ""
		if s.ClientAddr != nil {
			addr = *s.ClientAddr
		}
		for _, st := range []struct {
			stage string
			bytes *int64
			lag   *float64
		}{
			{"write", s.WriteLagBytes, durationSeconds(s.WriteLag)},
			{"flush", s.FlushLagBytes, durationSeconds(s.FlushLag)},
			{"replay", s.ReplayLagBytes, durationSeconds(s.ReplayLag)},
		} {
			if st.bytes != nil {
				gauge(ch, replLagBytesDesc, float64(*st.bytes), s.ApplicationName, addr, st.stage)
			}
			if st.lag != nil {
				gauge(ch, replLagSecDesc, *st.lag, s.ApplicationName, addr, st.stage)
			}
		}
	}
}
