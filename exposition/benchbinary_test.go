package exposition_test

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/proctest"
)

// The bench runs the built exporter as a subprocess where it measures the exporter alone
// (its CPU and peak RSS from /proc/<pid>), not the test process with its harness.

// exporterProcess is a running exporter binary.
type exporterProcess struct {
	cmd  *exec.Cmd
	url  string   // its /metrics
	out  *os.File // its output, read on failure
	done chan struct{}
}

// startExporterBinary runs the exporter with args (plus a loopback listen address) and waits
// until /metrics answers 200. It is stopped (SIGTERM, then SIGKILL) at the test's end unless
// stop was called before.
func startExporterBinary(t testing.TB, args ...string) *exporterProcess {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	out, err := os.CreateTemp(t.TempDir(), "exporter-*.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	p := &exporterProcess{url: "http://" + addr + "/metrics", out: out, done: make(chan struct{})}
	p.cmd = exec.Command(proctest.ExporterBinary(t), append([]string{"--web.listen-address=" + addr, "--log.level=warn"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("the exporter exited: %s", p.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exporter did not answer on %s: %v\n%s", p.url, err, p.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *exporterProcess) output() string { b, _ := os.ReadFile(p.out.Name()); return string(b) }

func (p *exporterProcess) pid() uint32 { return uint32(p.cmd.Process.Pid) }

// cpu is the exporter process's CPU so far.
func (p *exporterProcess) cpu(t testing.TB) time.Duration {
	self, _ := proctest.Stat(t, p.pid())
	return self
}

// stop ends the exporter with SIGTERM (it writes what it buffered and exits), SIGKILL after 15 s.
func (p *exporterProcess) stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // if it was paused
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("the exporter did not stop on SIGTERM within 15 s")
	}
}

// pause stops the exporter with SIGSTOP and waits until it is stopped; resume continues it.
func (p *exporterProcess) pause(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGSTOP)
	for range 1000 {
		if proctest.Stopped(t, p.pid()) {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("the exporter (%d) did not stop", p.pid())
}

func (p *exporterProcess) resume() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }
