package collectors_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// specFamilies is ../shared/spec/metrics.md, the names dashboards, alerts and users build on:
// each family's type and label names (sorted, as the golden files write them).
var specFamilies = map[string]string{
	// snapshot tier
	"pgbatch_checkpoints_timed_total":             "counter{}",
	"pgbatch_checkpoints_requested_total":         "counter{}",
	"pgbatch_checkpoint_write_seconds_total":      "counter{}",
	"pgbatch_checkpoint_sync_seconds_total":       "counter{}",
	"pgbatch_checkpoint_buffers_written_total":    "counter{}",
	"pgbatch_last_checkpoint_timestamp_seconds":   "gauge{}",
	"pgbatch_bgwriter_buffers_clean_total":        "counter{}",
	"pgbatch_bgwriter_maxwritten_clean_total":     "counter{}",
	"pgbatch_bgwriter_buffers_alloc_total":        "counter{}",
	"pgbatch_backend_buffers_written_total":       "counter{}",
	"pgbatch_wal_records_total":                   "counter{}",
	"pgbatch_wal_fpi_total":                       "counter{}",
	"pgbatch_wal_bytes_total":                     "counter{}",
	"pgbatch_wal_buffers_full_total":              "counter{}",
	"pgbatch_io_operations_total":                 "counter{backend_type,context,object,op}",
	"pgbatch_io_seconds_total":                    "counter{backend_type,context,object,op}",
	"pgbatch_database_temp_files_total":           "counter{datname}",
	"pgbatch_database_temp_bytes_total":           "counter{datname}",
	"pgbatch_database_deadlocks_total":            "counter{datname}",
	"pgbatch_replication_slot_retained_wal_bytes": "gauge{slot_name,slot_type}",
	"pgbatch_autovacuum_workers":                  "gauge{}",
	"pgbatch_table_size_bytes":                    "gauge{relname,schemaname}",
	"pgbatch_table_live_tuples":                   "gauge{relname,schemaname}",
	"pgbatch_table_dead_tuples":                   "gauge{relname,schemaname}",
	"pgbatch_table_rows_inserted_total":           "counter{relname,schemaname}",
	"pgbatch_table_rows_updated_total":            "counter{relname,schemaname}",
	"pgbatch_table_rows_deleted_total":            "counter{relname,schemaname}",
	"pgbatch_table_rows_hot_updated_total":        "counter{relname,schemaname}",
	"pgbatch_table_vacuums_total":                 "counter{kind,relname,schemaname}",
	"pgbatch_table_analyzes_total":                "counter{kind,relname,schemaname}",
	// sample tier
	"pgbatch_sessions":                 "gauge{backend_type,state,wait_event,wait_event_type}",
	"pgbatch_wait_event_seconds_total": "counter{wait_event,wait_event_type}",
	"pgbatch_lock_blocked_sessions":    "gauge{}",
	"pgbatch_lock_wait_max_seconds":    "gauge{}",
	"pgbatch_progress_operations":      "gauge{command}",
	"pgbatch_replication_lag_bytes":    "gauge{application_name,client_addr,stage}",
	"pgbatch_replication_lag_seconds":  "gauge{application_name,client_addr,stage}",
	// statements
	"pgbatch_statements_calls_total":         "counter{}",
	"pgbatch_statements_seconds_total":       "counter{phase}",
	"pgbatch_statements_rows_total":          "counter{}",
	"pgbatch_statements_blocks_total":        "counter{kind}",
	"pgbatch_statements_wal_bytes_total":     "counter{}",
	"pgbatch_statements_deallocations_total": "counter{}",
	"pgbatch_statement_seconds_total":        "counter{datname,queryid,user}",
	"pgbatch_statement_calls_total":          "counter{datname,queryid,user}",
	// the exporter itself
	"pgbatch_up":                                  "gauge{}",
	"pgbatch_server_version_num":                  "gauge{}",
	"pgbatch_collector_success":                   "gauge{collector}",
	"pgbatch_collector_duration_seconds":          "gauge{collector}",
	"pgbatch_tier_last_success_timestamp_seconds": "gauge{tier}",
}

// specFamiliesElsewhere are the spec's families the collectors' golden files cannot hold, and
// where they are checked.
var specFamiliesElsewhere = map[string]string{
	"pgbatch_replication_lag_bytes":   "a standby or subscriber connected: TestReplicationLag",
	"pgbatch_replication_lag_seconds": "a standby or subscriber connected: TestReplicationLag",
}

// TestGoldenFamiliesAsSpecified: every family of ../shared/spec/metrics.md that the collectors
// expose is in the golden files with the spec's type and labels, on every version the server
// gives it (pg_stat_io from 16); the batch, recorder and build families are other packages'.
func TestGoldenFamiliesAsSpecified(t *testing.T) {
	got := map[string]map[int]string{} // family -> version -> "type{labels}"
	for _, major := range []int{15, 16, 17, 18} {
		f, err := os.Open(filepath.Join("testdata", fmt.Sprintf("metrics-pg%d.golden", major)))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 2 {
				continue
			}
			if got[fields[0]] == nil {
				got[fields[0]] = map[int]string{}
			}
			got[fields[0]][major] = fields[1]
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range specFamilies {
		versions := got[name]
		if versions == nil {
			if specFamiliesElsewhere[name] == "" {
				t.Errorf("%s is in the spec but in no golden file", name)
			}
			continue
		}
		for _, major := range []int{15, 16, 17, 18} {
			sig, ok := versions[major]
			switch {
			case !ok && (major >= 16 || !strings.HasPrefix(name, "pgbatch_io_")):
				t.Errorf("%s is missing on %d", name, major)
			case ok && sig != want:
				t.Errorf("%s on %d is %s, the spec says %s", name, major, sig, want)
			}
		}
	}
}
