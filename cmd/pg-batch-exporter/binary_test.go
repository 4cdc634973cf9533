package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// buildBinary builds the real exporter once per test.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pg-batch-exporter")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestBinaryWithBasicAuth runs the built binary as a user would: DSN from DATA_SOURCE_NAME,
// basic auth from --web.config.file, SIGTERM to stop; the password is never logged.
func TestBinaryWithBasicAuth(t *testing.T) {
	bin := buildBinary(t)
	srv := pgtest.Start(t, pgtest.Versions()[0])
	dsn := strings.Replace(srv.NewDatabase(t), "postgres@", "postgres:db-pw-never-logged@", 1)

	hash, err := bcrypt.GenerateFromPassword([]byte("scrape-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(webConfig, fmt.Appendf(nil, "basic_auth_users:\n  prometheus: %s\n", hash), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--web.listen-address="+addr, "--web.config.file="+webConfig,
		"--tier.sample-interval=200ms", "--tier.snapshot-interval=300ms", "--log.level=debug")
	cmd.Env = append(os.Environ(), "DATA_SOURCE_NAME="+dsn)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()

	get := func(path string, auth bool) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if auth {
			req.SetBasicAuth("prometheus", "scrape-pw")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := get("/metrics?tier=snapshot", true)
		if code == http.StatusOK && strings.Contains(body, "\npgbatch_up 1\n") && strings.Contains(body, "pgbatch_wal_bytes_total ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no healthy scrape within 15s: %d\n%s\nlogs:\n%s", code, body, logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, _ := get("/metrics", false); code != http.StatusUnauthorized {
		t.Errorf("scrape without credentials: %d, want 401", code)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10s after SIGTERM")
	}
	if strings.Contains(logs.String(), "db-pw-never-logged") {
		t.Errorf("the password appears in the logs:\n%s", logs.String())
	}
}

// TestBinaryServerDownLogsNoPassword: with the server unreachable the exporter keeps serving
// pgbatch_up 0, and its connection errors never quote the password.
func TestBinaryServerDownLogsNoPassword(t *testing.T) {
	bin := buildBinary(t)
	closed := freeAddr(t)
	_, port, _ := net.SplitHostPort(closed)
	addr := freeAddr(t)
	cmd := exec.Command(bin, "--web.listen-address="+addr, "--tier.sample-interval=200ms",
		"--postgres.dsn=postgres://alice:db-pw-never-logged@127.0.0.1:"+port+"/app?connect_timeout=1")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), "\npgbatch_up 0\n") && strings.Contains(logs.String(), "collection failed") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pgbatch_up 0 with a logged failure within 10s; logs:\n%s", logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if strings.Contains(logs.String(), "db-pw-never-logged") {
		t.Errorf("the password appears in the logs:\n%s", logs.String())
	}
}
