package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/proctest"
)

// exporterProcess is the built binary serving on addr, killed at the test's end.
type exporterProcess struct {
	t      *testing.T
	cmd    *exec.Cmd
	addr   string
	logs   *proctest.LockedBuffer
	exited chan error
}

// startExporterProcess runs bin serve on a free address with extra environment env.
func startExporterProcess(t *testing.T, bin string, env []string, args ...string) *exporterProcess {
	t.Helper()
	p := &exporterProcess{t: t, addr: freeAddr(t), logs: &proctest.LockedBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"--web.listen-address=" + p.addr}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// get fetches a path; the status is 0 when the request failed.
func (p *exporterProcess) get(path string) (int, string) {
	resp, err := http.Get("http://" + p.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metric is the value of one series on /metrics, or -1 when it is absent.
func (p *exporterProcess) metric(series string) float64 {
	_, body := p.get("/metrics")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

func (p *exporterProcess) waitFor(what string, within time.Duration, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: not within %s; logs:\n%s", what, within, p.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sigterm stops the process and returns how long it took to exit, failing the test when it
// exits with an error or not within limit.
func (p *exporterProcess) sigterm(limit time.Duration) time.Duration {
	p.t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			p.t.Errorf("exit after SIGTERM: %v\n%s", err, p.logs.String())
		}
	case <-time.After(limit):
		p.t.Fatalf("still running %s after SIGTERM; logs:\n%s", limit, p.logs.String())
	}
	return time.Since(start)
}
