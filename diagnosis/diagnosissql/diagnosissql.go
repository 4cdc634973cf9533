// Package diagnosissql holds the SQL definitions of the diagnosis (diagnose, diagnose_run and
// their helpers) and its settings' reader (thresholds.sql, telemetry._threshold): package
// schema applies the reader before batch runs' definitions, which read their settings with it,
// and the rest after them (schema/README.md). It only embeds files, so that schema can import
// it without importing package diagnosis.
package diagnosissql

import "embed"

// Files are the definitions.
//
//go:embed *.sql
var Files embed.FS

// ThresholdsOrder are the files applied before batch runs' definitions: the settings' reader.
var ThresholdsOrder = []string{"thresholds.sql"}

// Order is the order to apply the other Files in, after batch runs' definitions: each may use
// what the ones before define.
var Order = []string{"diagnose.sql", "statements.sql", "series.sql", "changes.sql", "plans.sql", "account.sql", "settle.sql"}
