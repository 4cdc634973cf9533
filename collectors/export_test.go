package collectors

import "time"

// NewStderrPrefix reads a log_line_prefix in UTC (tests).
func NewStderrPrefix(prefix string) (*stderrPrefix, error) { return newStderrPrefix(prefix, time.UTC) }
