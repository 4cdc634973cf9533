package repeatlog

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// TestFailureLogsOncePerError: ten identical failures are one line, a different error another,
// and the recovery one more with the retries counted.
func TestFailureLogsOncePerError(t *testing.T) {
	var buf bytes.Buffer
	f := New(slog.New(slog.NewTextHandler(&buf, nil)))
	f.Succeeded("ok again") // never failed: nothing
	for range 10 {
		f.Failed("write failed", errors.New("connection refused"))
	}
	f.Failed("write failed", errors.New("too many clients"))
	f.Failed("write failed", errors.New("too many clients"))
	f.Succeeded("ok again")
	f.Succeeded("ok again")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "connection refused") || !strings.Contains(lines[1], "too many clients") ||
		!strings.Contains(lines[2], "failed_retries=2") {
		t.Errorf("log:\n%s", buf.String())
	}
}
