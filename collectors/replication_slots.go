package collectors

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	register("replication_slots", TierSnapshot, true, "WAL retained by replication slots from pg_replication_slots",
		func(Config) Collector { return slotsCollector{} })
}

var (
	slotRetainedDesc = newDesc("replication_slot_retained_wal_bytes", "WAL the slot keeps from being removed, in bytes.", "slot_name", "slot_type")
	slotActiveDesc   = newDesc("replication_slot_active", "1 when a consumer is connected to the slot.", "slot_name", "slot_type")
)

// sqlCurrentLSN is the server's WAL position on a primary and its replay position on a standby,
// where pg_current_wal_lsn() raises an error.
const sqlCurrentLSN = `(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)`

// SQLReplicationSlots reads the slots and the WAL each retains.
const SQLReplicationSlots = `SELECT slot_name::text, slot_type, active, (` + sqlCurrentLSN + ` - restart_lsn)::bigint
FROM pg_replication_slots ORDER BY slot_name`

type slotsCollector struct{}

func (slotsCollector) Collect(ctx context.Context, tx pgx.Tx, c *Collection) error {
	var err error
	c.ReplicationSlots, err = queryAll(ctx, tx, SQLReplicationSlots, func(s *ReplicationSlot) []any {
		return []any{&s.SlotName, &s.SlotType, &s.Active, &s.RetainedWALBytes}
	})
	return err
}

func (slotsCollector) Emit(c *Collection, ch chan<- prometheus.Metric) {
	for _, s := range c.ReplicationSlots {
		if s.RetainedWALBytes != nil {
			gauge(ch, slotRetainedDesc, float64(*s.RetainedWALBytes), s.SlotName, s.SlotType)
		}
		gauge(ch, slotActiveDesc, boolValue(s.Active), s.SlotName, s.SlotType)
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
