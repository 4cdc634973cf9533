package dashboards

var recorderDashboard = dashboard{
	file:  "recorder.json",
	uid:   "pgbatch-recorder",
	title: "Recorder",
	description: "The recorder's telemetry schema through a PostgreSQL data source: compare, wait_summary and diagnose over the selected range, " +
		"for history beyond Prometheus's retention.",
	from: "now-24h",
	variables: []any{
		recorderVariable,
		sorted(sqlVariable("server", "Server", "SELECT server FROM telemetry.servers ORDER BY 1")),
	},
	annotations: []any{recordedRunsAnnotation("Batch runs", "purple", true)},
	links:       []any{dashboardsLink(false)},
	rows: []row{
		{"The selected range, from the recorder (history beyond Prometheus's retention)", []panel{
			table("Diagnosis: telemetry.diagnose", "Findings for the range, most important first, with their evidence and what to change.",
				`SELECT severity, pattern, summary, recommendation, evidence::text AS evidence
FROM telemetry.diagnose($__timeFrom(), $__timeTo())`),
			table("telemetry.compare",
				"The seed's compare(): deltas between the snapshot at or before the start and the one at or after the end.",
				`SELECT * FROM telemetry.compare($__timeFrom(), $__timeTo(), nullif('$server', ''))`,
				columnsUnit("_ms$", "ms"),
				columnsUnit("^elapsed_seconds$", "s"),
				columnsUnit("^(wal_bytes_delta|slots_max_retained_wal|temp_bytes_delta)$", "bytes"),
				columnsUnit("_snapshot_at$", "dateTimeAsIso"),
			).height(5),
			table("telemetry.wait_summary", "The seed's wait_summary(): every backend's waits at the 30-second samples.",
				`SELECT * FROM telemetry.wait_summary($__timeFrom(), $__timeTo(), nullif('$server', ''))`,
				columnsUnit("^pct_of_samples$", "percent")).width(12).height(10),
			table("telemetry.client_wait_summary", "Client sessions only: the background processes that swamp wait_summary left out.",
				`SELECT * FROM telemetry.client_wait_summary($__timeFrom(), $__timeTo(), nullif('$server', ''))`,
				columnsUnit("^pct_of_samples$", "percent")).width(12).height(10),
			runsTable("Batch runs", "Open this run in the recorder dashboard",
				"/d/pgbatch-recorder/?from=${__data.fields.from_ms}&to=${__data.fields.to_ms}&${recorder:queryparam}&${server:queryparam}"),
		}},
		{"Snapshots over the range (telemetry.deltas)", []panel{
			sqlTimeSeries("WAL generated", "Bps", "wal_bytes_delta of each snapshot over its interval.",
				`SELECT captured_at AS time, wal_bytes_delta / nullif(interval_seconds, 0) AS "WAL"
FROM telemetry.deltas WHERE $__timeFilter(captured_at) ORDER BY 1`).width(8),
			sqlTimeSeries("Checkpoints", "short", "Checkpoints between consecutive snapshots.",
				`SELECT captured_at AS time, ckpt_timed_delta AS timed, ckpt_requested_delta AS requested
FROM telemetry.deltas WHERE $__timeFilter(captured_at) ORDER BY 1`).width(8),
			sqlTimeSeries("Temp bytes", "bytes", "temp_bytes_delta between consecutive snapshots.",
				`SELECT captured_at AS time, temp_bytes_delta AS "temp bytes"
FROM telemetry.deltas WHERE $__timeFilter(captured_at) ORDER BY 1`).width(8),
			sqlTimeSeries("Client sessions by wait (30-second samples)", "short", "Non-idle client sessions at each sample, by wait.",
				`SELECT s.captured_at AS time, w.wait_event_type || ':' || w.wait_event AS metric, sum(w.count) AS value
FROM telemetry.samples s JOIN telemetry.wait_samples w ON w.sample_id = s.id
WHERE $__timeFilter(s.captured_at) AND w.backend_type = 'client backend'
  AND w.state NOT IN ('idle', 'idle in transaction')
GROUP BY 1, 2 ORDER BY 1`).stacked(),
		}},
	},
}

// sorted lists a variable's values alphabetically.
func sorted(v queryVariable) queryVariable {
	v.Sort = 1
	return v
}
