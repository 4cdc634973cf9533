// Package repeatlog logs a failure that repeats (a server down, every retry failing alike)
// once when it starts, again only when its error changes, and once when it ends: a line per
// retry of each loop would bury the one line that matters in the operator's log.
package repeatlog

import (
	"log/slog"
	"sync"
)

// Failure is one retried operation's failure state.
type Failure struct {
	mu      sync.Mutex
	logger  *slog.Logger
	last    string // the error last logged, "" while the operation succeeds
	retries int    // failures since last was logged
}

// New logs to logger.
func New(logger *slog.Logger) *Failure { return &Failure{logger: logger} }

// Failed logs msg with err (at WARN) unless err says what the failure logged last said.
func (f *Failure) Failed(msg string, err error, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err.Error() == f.last {
		f.retries++
		return
	}
	f.last, f.retries = err.Error(), 0
	f.logger.Warn(msg, append(args, "err", err, "repeats", "logged again only when the error changes")...)
}

// Succeeded logs msg (at INFO) when the operation had been failing.
func (f *Failure) Succeeded(msg string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last == "" {
		return
	}
	f.logger.Info(msg, append(args, "failed_retries", f.retries+1)...)
	f.last, f.retries = "", 0
}
