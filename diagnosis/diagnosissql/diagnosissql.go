// Package diagnosissql holds the SQL definitions of the diagnosis (diagnose, diagnose_run and
// their helpers): package schema applies them after batch runs' (schema/README.md). It only
// embeds files, so that schema can import it without importing package diagnosis.
package diagnosissql

import "embed"

// Files are the definitions.
//
//go:embed *.sql
var Files embed.FS

// Order is the order to apply Files in: each may use what the ones before define.
var Order = []string{"diagnose.sql", "statements.sql", "plans.sql", "account.sql"}
