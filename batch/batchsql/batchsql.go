// Package batchsql holds the SQL definitions (functions, views) of batch runs: the recorder
// applies them after its own (recorder/README.md). It only embeds files, so that the
// recorder can import it without importing package batch.
package batchsql

import "embed"

// Files are the definitions.
//
//go:embed *.sql
var Files embed.FS

// Order is the order to apply Files in: each may use what the ones before define.
var Order = []string{"runs.sql"}
