package dashboards

var batchWindow = dashboard{
	file:  "batch-window.json",
	uid:   "pgbatch-batch-window",
	title: "Batch window",
	description: "One batch run: set the time range to the run (or pick it in 'Batch run' and follow 'Jump to the selected batch run'). " +
		"The stat panels reproduce telemetry.compare over the range, the wait panels telemetry.wait_summary.",
	from: "now-1h",
	variables: []any{
		prometheusVariable,
		recorderVariable,
		instanceVariable,
		sqlVariable("run", "Batch run",
			`SELECT format('%s #%s %s (%s)', batch, run_id, to_char(started_at, 'YYYY-MM-DD HH24:MI'), status) AS __text, run_id AS __value
FROM telemetry.batch_runs_checked WHERE times_ok ORDER BY started_at DESC LIMIT 200`),
		// The selected run's start and end in ms, for the link that jumps to it.
		hidden(sqlVariable("run_from", "",
			"SELECT (extract(epoch FROM started_at) * 1000)::bigint FROM telemetry.batch_runs WHERE run_id::text = '$run'")),
		hidden(sqlVariable("run_to", "",
			"SELECT (extract(epoch FROM coalesce(ended_at, now())) * 1000)::bigint FROM telemetry.batch_runs WHERE run_id::text = '$run'")),
	},
	annotations: []any{
		batchRunsAnnotation("15s"),
		promAnnotation{
			Name: "Checkpoints", Datasource: prometheus, Enable: true, IconColor: "orange",
			Expr:        `max(pgbatch_last_checkpoint_timestamp_seconds{instance="$instance"}) * 1000`,
			Step:        "15s",
			TitleFormat: "Checkpoint", TextFormat: "checkpoint started (pg_control_checkpoint())",
			UseValueForTime: true,
		},
		recordedRunsAnnotation("Recorded runs", "blue", false),
		runStartsAnnotation(),
		runEndsAnnotation(),
	},
	links: []any{
		urlLink{
			Title: "Jump to the selected batch run", Type: "link", Icon: "external link",
			Tooltip: "Sets the time range to the run chosen in 'Batch run'",
			URL:     "/d/pgbatch-batch-window/?from=${run_from}&to=${run_to}&${instance:queryparam}&${datasource:queryparam}&${recorder:queryparam}&${run:queryparam}",
		},
		dashboardsLink(true),
	},
	rows: []row{
		{"telemetry.compare over the selected range (the time picker is the batch window)", []panel{
			stat("Checkpoint occurred", "bool_yes_no",
				"compare.checkpoint_occurred: the time of the last checkpoint (pg_control_checkpoint()) changed within the range.",
				`max(changes(pgbatch_last_checkpoint_timestamp_seconds{instance="$instance"}[$__range])) > bool 0`),
			stat("Timed checkpoints", "short", "compare.ckpt_timed_delta: checkpoints started by checkpoint_timeout.",
				`round(max(increase(pgbatch_checkpoints_timed_total{instance="$instance"}[$__range])))`),
			stat("Requested checkpoints", "short", "compare.ckpt_requested_delta: CHECKPOINT, or max_wal_size reached.",
				`round(max(increase(pgbatch_checkpoints_requested_total{instance="$instance"}[$__range])))`),
			stat("Checkpoint write time", "s", "compare.ckpt_write_time_ms.",
				`max(increase(pgbatch_checkpoint_write_seconds_total{instance="$instance"}[$__range]))`),
			stat("Checkpoint sync time", "s", "compare.ckpt_sync_time_ms.",
				`max(increase(pgbatch_checkpoint_sync_seconds_total{instance="$instance"}[$__range]))`),
			stat("Checkpoint buffers written", "short", "compare.ckpt_buffers_delta.",
				`round(max(increase(pgbatch_checkpoint_buffers_written_total{instance="$instance"}[$__range])))`),
			stat("WAL generated", "bytes", "compare.wal_bytes_delta.",
				`max(increase(pgbatch_wal_bytes_total{instance="$instance"}[$__range]))`),
			stat("WAL full-page images", "short", "Full-page images written to WAL: they multiply after each checkpoint.",
				`round(max(increase(pgbatch_wal_fpi_total{instance="$instance"}[$__range])))`),
			stat("Backend buffer writes", "short",
				"compare.bgw_buffers_backend_delta (15/16) or io_client_buffer_writes_delta (17+): client backends writing dirty buffers themselves, a sign of buffer pressure.",
				`round(max(increase(pgbatch_backend_buffers_written_total{instance="$instance"}[$__range])))`),
			stat("Bgwriter buffers cleaned", "short", "compare.bgw_buffers_clean_delta.",
				`round(max(increase(pgbatch_bgwriter_buffers_clean_total{instance="$instance"}[$__range])))`),
			stat("Buffers allocated", "short", "compare.bgw_buffers_alloc_delta.",
				`round(max(increase(pgbatch_bgwriter_buffers_alloc_total{instance="$instance"}[$__range])))`),
			stat("Temp files", "short", "compare.temp_files_delta (here summed over every database).",
				`round(sum(increase(pgbatch_database_temp_files_total{instance="$instance"}[$__range])))`),
			stat("Temp bytes", "bytes", "compare.temp_bytes_delta (here summed over every database): work_mem spills.",
				`sum(increase(pgbatch_database_temp_bytes_total{instance="$instance"}[$__range]))`),
			stat("Replication slots", "short", "compare.slots_count at the end of the range.",
				`count(max by (slot_name) (pgbatch_replication_slot_retained_wal_bytes{instance="$instance"}))`),
			stat("Max WAL retained by a slot", "bytes", "compare.slots_max_retained_wal at the end of the range.",
				`max(pgbatch_replication_slot_retained_wal_bytes{instance="$instance"})`),
			barGauge("pg_stat_io writes by backend type", "short",
				"compare.io_*_writes_delta: buffers written in the range by each kind of process (16+).",
				prom(`sort_desc(sum by (backend_type) (increase(pgbatch_io_operations_total{instance="$instance", op="write"}[$__range])))`, "{{backend_type}}")).width(12),
			barGauge("pg_stat_io write time by backend type", "s", "compare.io_*_write_time_ms (needs track_io_timing).",
				prom(`sort_desc(sum by (backend_type) (increase(pgbatch_io_seconds_total{instance="$instance", op="write"}[$__range])))`, "{{backend_type}}")).width(12),
		}},
		{"telemetry.wait_summary: what the sessions waited on", []panel{
			barGauge("Average active sessions by wait over the range", "short",
				"wait_summary.avg_waiters, from the 1-second wait sampler: session-seconds in each wait divided by the range. Running:CPU is active and not waiting.",
				prom(`sort_desc(sum by (wait_event_type, wait_event) (increase(pgbatch_wait_event_seconds_total{instance="$instance"}[$__range])) / $__range_s)`,
					"{{wait_event_type}}:{{wait_event}}")).width(8),
			timeSeries("Average active sessions by wait", "short",
				"rate() of the session-seconds per wait: the average number of client sessions in that wait.",
				prom(`sum by (wait_event_type, wait_event) (rate(pgbatch_wait_event_seconds_total{instance="$instance"}[$__rate_interval]))`,
					"{{wait_event_type}}:{{wait_event}}")).stacked().width(16),
			timeSeries("The batch's own sessions by wait", "short",
				"Average active sessions of each batch's own sessions, by wait: what the batch itself waited on, apart from the rest of the server.",
				prom(`sum by (batch, wait_event_type, wait_event) (rate(pgbatch_batch_wait_event_seconds_total{instance="$instance"}[$__rate_interval]))`,
					"{{batch}} {{wait_event_type}}:{{wait_event}}")).stacked(),
		}},
		{"During the batch", []panel{
			timeSeries("Run elapsed against its usual duration", "s",
				"Each batch's run in progress: seconds since it began, against the batch's usual duration, the median and 90th percentile of its recent normal runs (read when the run began). Past the 90th percentile by the rule's margin, PgBatchRunOverdue fires.",
				prom(`max by (batch) (pgbatch_batch_run_elapsed_seconds{instance="$instance"})`, "{{batch}} elapsed"),
				prom(`max by (batch) (pgbatch_batch_usual_duration_seconds{instance="$instance", quantile="0.5"})`, "{{batch}} usual median"),
				prom(`max by (batch) (pgbatch_batch_usual_duration_seconds{instance="$instance", quantile="0.9"})`, "{{batch}} usual p90"),
			).overridden(dashedSeries("usual"), colorSeries("usual p90$", "orange"), colorSeries("usual median$", "green")),
			timeSeries("Sessions blocked on locks", "short", "Sessions waiting on a lock per pg_blocking_pids().",
				prom(`max(pgbatch_lock_blocked_sessions{instance="$instance"})`, "blocked sessions")).width(8),
			longestLockWait("The longest current lock wait, from pg_locks.waitstart.").width(8),
			timeSeries("Operations in progress", "short",
				"Vacuum, analyze, COPY, CREATE INDEX and CLUSTER running (pg_stat_progress_*).",
				prom(`max by (command) (pgbatch_progress_operations{instance="$instance"})`, "{{command}}")).width(8),
			timeSeries("Replication lag (bytes)", "bytes", "WAL each standby has not yet written, flushed or replayed.",
				prom(`max by (application_name, stage) (pgbatch_replication_lag_bytes{instance="$instance"})`, "{{application_name}} {{stage}}")).width(8),
			timeSeries("Replication lag (time)", "s", "write_lag, flush_lag and replay_lag as the standbys report them.",
				prom(`max by (application_name, stage) (pgbatch_replication_lag_seconds{instance="$instance"})`, "{{application_name}} {{stage}}")).width(8),
			timeSeries("Autovacuum workers", "short", "Autovacuum workers running: they compete with the batch for I/O and locks.",
				prom(`max(pgbatch_autovacuum_workers{instance="$instance"})`, "workers")).width(8),
			timeSeries("Tracked tables: rows written", "suffix: rows/s",
				"Rows inserted, updated and deleted per second in each tracked table.",
				prom(`sum by (schemaname, relname) (rate(pgbatch_table_rows_inserted_total{instance="$instance"}[$__rate_interval]) + `+
					`rate(pgbatch_table_rows_updated_total{instance="$instance"}[$__rate_interval]) + `+
					`rate(pgbatch_table_rows_deleted_total{instance="$instance"}[$__rate_interval]))`, "{{schemaname}}.{{relname}}")).width(8),
			timeSeries("Tracked tables: total size", "bytes", "Table with indexes and TOAST.",
				prom(`max by (schemaname, relname) (pgbatch_table_total_size_bytes{instance="$instance"})`, "{{schemaname}}.{{relname}}")).width(8),
			timeSeries("Tracked tables: dead rows", "short", "Estimated dead rows: what autovacuum will come for.",
				prom(`max by (schemaname, relname) (pgbatch_table_dead_tuples{instance="$instance"})`, "{{schemaname}}.{{relname}}")).width(8),
			timeSeries("Cleanup (xmin) horizon held", "s",
				"How long the oldest holder of each database's xmin horizon (a session's transaction, a prepared transaction) has held it: no row version deleted or updated since can be removed there. PgBatchXminHorizonHeldDuringBatch fires past 15 minutes during a batch.",
				prom(`max by (datname, kind) (pgbatch_xmin_horizon_held_seconds{instance="$instance"})`, "{{datname}} {{kind}}")).width(8),
			barGauge("Tracked tables: vacuums and analyzes in the range", "short",
				"table_compare.autovacuum_count_delta and friends, by kind (auto, manual).",
				prom(`round(sum by (schemaname, relname, kind) (increase(pgbatch_table_vacuums_total{instance="$instance"}[$__range])))`,
					"{{schemaname}}.{{relname}} vacuum ({{kind}})")).width(8),
			walGenerated.width(8),
			timeSeries("Client sessions by state", "short", "Client backends at each sample, by state.",
				prom(`sum by (state) (pgbatch_sessions{instance="$instance", backend_type="client backend"})`, "{{state}}")).width(8),
		}},
		{"Recorded runs (recorder)", []panel{
			runsTable("Runs in the range", "Open this run in the batch window",
				"/d/pgbatch-batch-window/?from=${__data.fields.from_ms}&to=${__data.fields.to_ms}&${instance:queryparam}&${datasource:queryparam}&${recorder:queryparam}"),
			table("Top statements in the range",
				"The range's top-level statements by their time (telemetry.statement_compare: pg_stat_statements' planning and execution, with the lock waits it leaves out), where pg_stat_statements is installed; telemetry.run_statements(run_id) ranks a run's against its baseline.",
				`SELECT left(regexp_replace(query, '\s+', ' ', 'g'), 120) AS statement, total_seconds AS seconds, calls_delta AS calls,
  rows_delta AS rows, seconds_per_call, temp_blks_written_delta AS temp_blks_written, wal_bytes_delta AS wal_bytes, status,
  (SELECT w.key FROM jsonb_each_text(sampled_waits) w ORDER BY w.value::numeric DESC LIMIT 1) AS top_wait
FROM telemetry.statement_compare($__timeFrom(), $__timeTo())
WHERE toplevel
ORDER BY total_seconds DESC NULLS LAST
LIMIT 10`,
				columnsUnit("^(seconds|seconds_per_call)$", "s"),
				columnsUnit("^wal_bytes$", "bytes")),
		}},
	},
}

// hidden hides a variable that only links use.
func hidden(v queryVariable) queryVariable {
	v.Hide = 2
	return v
}

// runsTable lists the recorded runs that overlap the range; each batch name links to its
// run's window. Here and in every list of runs, runs whose times are out of range
// ('-infinity' has no epoch in milliseconds) are left out: telemetry.batch_runs_checked.
func runsTable(title, linkTitle, linkURL string) panel {
	return table(title, "Runs from telemetry.batch_runs that overlap the range. The batch name links to the run's own window.",
		`SELECT run_id, batch, started_at, ended_at, status, source,
  extract(epoch FROM coalesce(ended_at, now()) - started_at) AS duration,
  (extract(epoch FROM started_at) * 1000)::bigint AS from_ms,
  (extract(epoch FROM coalesce(ended_at, now())) * 1000)::bigint AS to_ms
FROM telemetry.batch_runs_checked
WHERE started_at <= $__timeTo() AND coalesce(ended_at, now()) >= $__timeFrom() AND times_ok
ORDER BY started_at DESC`,
		columnsUnit("^duration$", "s"),
		columnsUnit("^(run_id|from_ms|to_ms)$", "none"),
		columnsUnit("^(started_at|ended_at)$", "dateTimeAsIso"),
		columnLink("batch", linkTitle, linkURL),
	)
}
