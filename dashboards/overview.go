package dashboards

var overview = dashboard{
	file:        "overview.json",
	uid:         "pgbatch-overview",
	title:       "Overview",
	description: "The server over days: batch durations, WAL and checkpoints, waits, temp spills, and the exporter's own health.",
	from:        "now-7d",
	variables: []any{prometheusVariable, instanceVariable, recorderVariable,
		textbox("exporter_url", "Exporter URL", "Where the exporter's report pages are reached (its --web.external-url): run links open /report/run/<id> there.", "http://localhost:9188")},
	annotations: []any{batchRunsAnnotation("1m")},
	links:       []any{dashboardsLink(true)},
	rows: []row{
		{"Batches", []panel{
			timeSeries("Duration of the last run, per batch", "s",
				"pgbatch_batch_last_duration_seconds: a step up is a slow run; open the batch window dashboard on it.",
				prom(`max by (batch) (pgbatch_batch_last_duration_seconds{instance="$instance"})`, "{{batch}}")).width(12),
			timeSeries("Batches running", "short", "1 while a run of the batch is in progress.",
				prom(`max by (batch) (pgbatch_batch_running{instance="$instance"})`, "{{batch}}")).width(12),
			timeSeries("Runs finished per hour", "short", "Runs ended per hour, per batch.",
				prom(`sum by (batch) (rate(pgbatch_batch_runs_total{instance="$instance"}[$__rate_interval])) * 3600`, "{{batch}}")).width(12),
		}},
		{"Batch durations over the last weeks (recorder)", []panel{
			sqlTimeSeries("Run durations", "s",
				"Each recorded run's duration at its start, per batch; a run past its batch's usual 90th percentile by more than baseline_floor_seconds (telemetry.batch_run_durations: of the normal runs before it) is drawn apart, in red, as 'slow'. The 50 batches with the latest runs.",
				`SELECT started_at AS time, batch || CASE WHEN slow THEN ' slow' ELSE '' END AS metric, duration_seconds AS value
FROM telemetry.batch_run_durations($__timeFrom(), NULL, 50)
WHERE started_at <= $__timeTo()
ORDER BY 1`).points().overridden(colorSeries(" slow$", "red")).lastDays(28).width(12),
			table("Slow runs", "Runs past their batch's usual 90th percentile, newest first; the run links to its report page (set Exporter URL above).",
				`SELECT run_id, batch, started_at, status, duration_seconds AS duration, usual_median_seconds AS usual_median,
  usual_p90_seconds AS usual_p90, round((duration_seconds / nullif(usual_p90_seconds, 0))::numeric, 1) AS times_p90
FROM telemetry.batch_run_durations($__timeFrom(), NULL, 50)
WHERE slow AND started_at <= $__timeTo()
ORDER BY started_at DESC`,
				columnsUnit("^(duration|usual_median|usual_p90)$", "s"),
				columnsUnit("^started_at$", "dateTimeAsIso"),
				columnLink("run_id", "Open the run's report", "${exporter_url}/report/run/${__data.fields.run_id}"),
			).lastDays(28).width(12),
		}},
		{"WAL and checkpoints", []panel{
			walGenerated.width(8),
			timeSeries("Checkpoints per hour", "short",
				"Timed checkpoints are normal; requested ones mean CHECKPOINT or max_wal_size reached.",
				prom(`max(rate(pgbatch_checkpoints_timed_total{instance="$instance"}[$__rate_interval])) * 3600`, "timed"),
				prom(`max(rate(pgbatch_checkpoints_requested_total{instance="$instance"}[$__rate_interval])) * 3600`, "requested")).width(8),
			timeSeries("Checkpointer busy", "percentunit", "Share of time the checkpointer spent writing and syncing.",
				prom(`max(rate(pgbatch_checkpoint_write_seconds_total{instance="$instance"}[$__rate_interval]))`, "write"),
				prom(`max(rate(pgbatch_checkpoint_sync_seconds_total{instance="$instance"}[$__rate_interval]))`, "sync")).width(8),
			timeSeries("Buffers written", "suffix: buffers/s",
				"Who writes dirty buffers: checkpoints, the background writer, or client backends themselves (buffer pressure).",
				prom(`max(rate(pgbatch_checkpoint_buffers_written_total{instance="$instance"}[$__rate_interval]))`, "checkpointer"),
				prom(`max(rate(pgbatch_bgwriter_buffers_clean_total{instance="$instance"}[$__rate_interval]))`, "background writer"),
				prom(`max(rate(pgbatch_backend_buffers_written_total{instance="$instance"}[$__rate_interval]))`, "backends")).width(12),
			timeSeries("Temp-file spills", "Bps", "Bytes written to temporary files per second, per database.",
				prom(`sum by (datname) (rate(pgbatch_database_temp_bytes_total{instance="$instance"}[$__rate_interval]))`, "{{datname}}")).width(12),
		}},
		{"Waits and contention", []panel{
			timeSeries("Top waits (average active sessions)", "short",
				"The ten waits with the most client session-seconds at each point.",
				prom(`topk(10, sum by (wait_event_type, wait_event) (rate(pgbatch_wait_event_seconds_total{instance="$instance"}[$__rate_interval])))`,
					"{{wait_event_type}}:{{wait_event}}")).stacked().width(12),
			longestLockWait("The longest current lock wait.").width(6),
			timeSeries("Replication lag", "s", "The largest lag of any standby.",
				prom(`max by (application_name) (pgbatch_replication_lag_seconds{instance="$instance"})`, "{{application_name}}")).width(6),
		}},
		{"Exporter and recorder", []panel{
			timeSeries("Server reachable", "bool",
				"pgbatch_up: 1 when the exporter's last attempt to reach PostgreSQL succeeded.",
				prom(`min(pgbatch_up{instance="$instance"})`, "up")).width(6),
			timeSeries("Collectors failing", "short", "Collectors whose last run failed (0 = all succeed).",
				prom(`count(max by (collector) (pgbatch_collector_success{instance="$instance"}) == 0) or vector(0)`, "failing")).width(6),
			timeSeries("Age of the latest collection", "s", "Seconds since each tier last collected successfully.",
				prom(`time() - max by (tier) (pgbatch_tier_last_success_timestamp_seconds{instance="$instance"})`, "{{tier}}")).width(6),
			timeSeries("Collector duration", "s", "How long each collector's last run took.",
				prom(`max by (collector) (pgbatch_collector_duration_seconds{instance="$instance"})`, "{{collector}}")).width(6),
			timeSeries("Recorder rows written", "suffix: rows/s", "Rows per second the recorder writes, per table.",
				prom(`sum by (table) (rate(pgbatch_recorder_rows_written_total{instance="$instance"}[$__rate_interval]))`, "{{table}}")).width(8),
			timeSeries("Recorder rows dropped or refused", "suffix: rows/s",
				"Rows dropped because the recorder's buffer overflowed while its database was unreachable, and rows its database refused for their data (set aside, the rest written).",
				prom(`sum by (table) (rate(pgbatch_recorder_rows_dropped_total{instance="$instance"}[$__rate_interval]))`, "{{table}} dropped"),
				prom(`sum by (table) (rate(pgbatch_recorder_rows_refused_total{instance="$instance"}[$__rate_interval]))`, "{{table}} refused")).width(8),
			timeSeries("Recorder buffer", "short", "Rows waiting in memory to be written.",
				prom(`max(pgbatch_recorder_buffered_rows{instance="$instance"})`, "buffered")).width(8),
		}},
	},
}

// Panels the overview and the batch window share.

var walGenerated = timeSeries("WAL generated", "Bps", "WAL bytes per second.",
	prom(`max(rate(pgbatch_wal_bytes_total{instance="$instance"}[$__rate_interval]))`, "WAL"))

func longestLockWait(description string) panel {
	return timeSeries("Longest lock wait", "s", description,
		prom(`max(pgbatch_lock_wait_max_seconds{instance="$instance"})`, "longest wait"))
}
