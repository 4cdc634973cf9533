// Package proctest gives tests the exporter binary and what Linux's /proc says of a process:
// its CPU (its own and its waited-for children's) and its memory, so that a benchmark
// measures the exporter process alone, or a PostgreSQL backend, rather than the test's.
package proctest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// ExporterBinary builds cmd/pg-batch-exporter once per test process and returns its path.
func ExporterBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pgbatch-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "pg-batch-exporter")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/pg-batch-exporter/pg-batch-exporter/cmd/pg-batch-exporter").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// statFields are the fields of /proc/<pid>/stat from the third (state) on: the command name
// (the second) may hold spaces and parentheses, so they follow its last ')'. f[0] is field 3.
func statFields(t testing.TB, pid uint32) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
}

func statInt(t testing.TB, pid uint32, f []string, field int) int64 {
	t.Helper()
	v, err := strconv.ParseInt(f[field-3], 10, 64)
	if err != nil {
		t.Fatalf("/proc/%d/stat field %d: %q", pid, field, f[field-3])
	}
	return v
}

// Stat is a process's own CPU (utime+stime) and that of its children it has waited for
// (cutime+cstime: a postmaster's ended backends), from /proc/<pid>/stat, in clock ticks of
// 10 ms (USER_HZ is 100 on Linux).
func Stat(t testing.TB, pid uint32) (self, children time.Duration) {
	t.Helper()
	f := statFields(t, pid)
	tick := func(a, b int) time.Duration {
		return time.Duration(statInt(t, pid, f, a)+statInt(t, pid, f, b)) * 10 * time.Millisecond
	}
	return tick(14, 15), tick(16, 17)
}

// Parent is a process's parent pid.
func Parent(t testing.TB, pid uint32) uint32 {
	t.Helper()
	return uint32(statInt(t, pid, statFields(t, pid), 4))
}

// Stopped says whether the process is stopped by a signal (state T or t).
func Stopped(t testing.TB, pid uint32) bool {
	t.Helper()
	s := statFields(t, pid)[0]
	return s == "T" || s == "t"
}

// Exists says whether a process is there.
func Exists(pid uint32) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil
}

// BackendsCPU is the CPU so far of each PostgreSQL backend whose pid the query returns
// (for example from pg_stat_activity), by pid; a backend that ended meanwhile is left out.
// The server must be local.
func BackendsCPU(t testing.TB, c *pgx.Conn, query string, args ...any) map[uint32]time.Duration {
	t.Helper()
	rows, err := c.Query(context.Background(), query, args...)
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint32]time.Duration{}
	for _, pid := range pids {
		if Exists(pid) {
			out[pid], _ = Stat(t, pid)
		}
	}
	return out
}

// Status is a field of /proc/<pid>/status in kB, such as VmHWM (peak RSS) or VmRSS.
func Status(t testing.TB, pid uint32, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("/proc/%d/status %s: %q", pid, field, v)
			}
			return n
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// LockedBuffer collects what a process or a logger writes while the test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
