// Package batchsql holds the SQL definitions (functions, views) of batch runs: package
// schema applies them after the recorder's (schema/README.md). It only embeds files, so that
// schema can import it without importing package batch.
package batchsql

import "embed"

// Files are the definitions.
//
//go:embed *.sql
var Files embed.FS

// Order is the order to apply Files in: each may use what the ones before define.
var Order = []string{"runs.sql"}
