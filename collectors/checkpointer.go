package collectors

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("checkpointer", TierSnapshot, true,
		"Checkpoints from pg_stat_bgwriter (15/16) or pg_stat_checkpointer (17+), and pg_control_checkpoint()",
		func(Config) Collector { return checkpointerCollector{} })
}

var (
	ckptTimedDesc     = newDesc("checkpoints_timed_total", "Checkpoints started because checkpoint_timeout elapsed.")
	ckptRequestedDesc = newDesc("checkpoints_requested_total", "Checkpoints requested: CHECKPOINT, max_wal_size reached, and the like.")
	ckptWriteDesc     = newDesc("checkpoint_write_seconds_total", "Time checkpoints spent writing buffers.")
	ckptSyncDesc      = newDesc("checkpoint_sync_seconds_total", "Time checkpoints spent syncing files.")
	ckptBuffersDesc   = newDesc("checkpoint_buffers_written_total", "Buffers written by checkpoints.")
	ckptLastDesc      = newDesc("last_checkpoint_timestamp_seconds", "Time of the last checkpoint, from pg_control_checkpoint().")
)

type checkpointerCollector struct{}

// SQLCheckpointer reads the checkpoint counters from where the server keeps them.
func SQLCheckpointer(s Server) string {
	if s.Major() >= 17 {
		return `SELECT num_timed, num_requested, write_time, sync_time, buffers_written, stats_reset FROM pg_stat_checkpointer`
	}
	return `SELECT checkpoints_timed, checkpoints_req, checkpoint_write_time, checkpoint_sync_time, buffers_checkpoint, stats_reset FROM pg_stat_bgwriter`
}

// SQLControlCheckpoint reads the last checkpoint's location and time.
const SQLControlCheckpoint = `SELECT checkpoint_lsn::text, checkpoint_time FROM pg_control_checkpoint()`

func (checkpointerCollector) Collect(ctx context.Context, tx pgx.Tx, c *Collection) error {
	var k Checkpointer
	if err := tx.QueryRow(ctx, SQLCheckpointer(c.Server)).Scan(&k.Timed, &k.Requested, &k.WriteTimeMs, &k.SyncTimeMs, &k.BuffersWritten, &k.StatsReset); err != nil {
		return err
	}
	c.Checkpointer = &k
	var ctl ControlCheckpoint
	if err := tx.QueryRow(ctx, SQLControlCheckpoint).Scan(&ctl.LSN, &ctl.Time); err != nil {
		return err
	}
	c.Control = &ctl
	return nil
}

func (checkpointerCollector) Emit(c *Collection, ch chan<- prometheus.Metric) {
	if k := c.Checkpointer; k != nil {
		counter(ch, ckptTimedDesc, float64(k.Timed))
		counter(ch, ckptRequestedDesc, float64(k.Requested))
		counter(ch, ckptWriteDesc, k.WriteTimeMs*msToSeconds)
		counter(ch, ckptSyncDesc, k.SyncTimeMs*msToSeconds)
		counter(ch, ckptBuffersDesc, float64(k.BuffersWritten))
	}
	if c.Control != nil {
		gauge(ch, ckptLastDesc, float64(c.Control.Time.UnixNano())/1e9)
	}
}
