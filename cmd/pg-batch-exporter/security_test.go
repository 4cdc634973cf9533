package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// TestBinaryRefusesBadFlagsBeforeStarting: every bad flag value, the web configuration file
// included, is one line on stderr and exit status 2 before anything starts: no panic, no
// log of a started exporter.
func TestBinaryRefusesBadFlagsBeforeStarting(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	webConfig := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return "--web.config.file=" + p
	}
	for _, c := range []struct {
		arg, want string
	}{
		{"--postgres.statement-timeout=0s", "--postgres.statement-timeout must be at least 1ms, got 0s"},
		{"--postgres.statement-timeout=500us", "--postgres.statement-timeout must be at least 1ms, got 500us"},
		{"--postgres.statement-timeout=-1s", "--postgres.statement-timeout must be at least 1ms"},
		{"--postgres.lock-timeout=0s", "--postgres.lock-timeout must be at least 1ms"},
		{"--postgres.lock-timeout=-5ms", "--postgres.lock-timeout must be at least 1ms"},
		{"--batch.quiet-period=-1s", "--batch.quiet-period must be at least 1ms"},
		{"--batch.quiet-period=100ms", "--batch.quiet-period (100ms) must be at least --collector.waits.interval (1s)"},
		{"--batch.max-batches=0", "--batch.max-batches must be at least 1"},
		{"--batch.max-batches=-5", "--batch.max-batches must be at least 1"},
		{"--tier.sample-interval=-1m", "--tier.sample-interval must be at least 100ms, got -1m"},
		{"--tier.snapshot-interval=10ms", "--tier.snapshot-interval must be at least 100ms"},
		{"--collector.waits.interval=0s", "--collector.waits.interval must be at least 100ms, got 0s"},
		{"--recorder.shutdown-timeout=0s", "--recorder.shutdown-timeout must be at least 1ms"},
		{"--web.telemetry-path=metrics", `--web.telemetry-path: "metrics" must start with /`},
		{"--web.telemetry-path=/report", `--web.telemetry-path: "/report" is where the batch report pages are served`},
		{"--web.telemetry-path=/report/metrics", "is where the batch report pages are served"},
		{"--web.telemetry-path=/metrics/{x}", `"{" is not allowed`},
		{"--web.telemetry-path=GET /metrics", "must start with /"},
		{"--web.config.file=" + filepath.Join(dir, "missing.yml"), "--web.config.file: open "},
		{webConfig("invalid.yml", "basic_auth_users: [unclosed\n"), "--web.config.file: yaml:"},
		{webConfig("unknown.yml", "basic_auth_user:\n  a: b\n  c: d\n"), "--web.config.file: yaml: unmarshal errors: line 1: field basic_auth_user not found"},
		{webConfig("cert.yml", "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n"), "--web.config.file: "},
		{webConfig("hash.yml", "basic_auth_users:\n  prometheus: not-a-bcrypt-hash\n"), "--web.config.file: crypto/bcrypt"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, bin, c.arg, "--web.listen-address="+freeAddr(t), "--recorder.enabled",
			"--postgres.dsn=postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
		out, err := cmd.CombinedOutput()
		cancel()
		code := -1
		if cmd.ProcessState != nil {
			code = cmd.ProcessState.ExitCode()
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if code != 2 || len(lines) != 1 || !strings.Contains(lines[0], c.want) || !strings.HasPrefix(lines[0], "pg-batch-exporter: ") {
			t.Errorf("%s: exit %d (%v), output:\n%s\nwant status 2 and one line with %q", c.arg, code, err, out, c.want)
		}
	}
}

// TestBinaryLandingLinksAndNoWebReport: every link of the landing page answers (no pprof
// links while pprof is not served), and --no-web.report takes the report pages, which show
// query text, off the port while /metrics stays.
func TestBinaryLandingLinksAndNoWebReport(t *testing.T) {
	bin := buildBinary(t)
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			dsn := pgtest.Start(t, major).NewDatabase(t)
			for _, report := range []bool{true, false} {
				args := []string{"--postgres.dsn=" + dsn, "--recorder.enabled", "--tier.sample-interval=200ms", "--tier.snapshot-interval=300ms"}
				if !report {
					args = append(args, "--no-web.report")
				}
				p := startExporterProcess(t, bin, nil, args...)
				// The report reads the schema the recorder creates with its first start.
				p.waitFor("a snapshot recorded", 30*time.Second, func() bool {
					return p.metric(`pgbatch_recorder_rows_written_total{table="snapshots"}`) >= 1
				})
				_, landing := p.get("/")
				if strings.Contains(landing, "debug/pprof") {
					t.Errorf("the landing page mentions pprof, which is not served:\n%s", landing)
				}
				links := regexp.MustCompile(`href="([^"]*)"`).FindAllStringSubmatch(landing, -1)
				var reportLinked bool
				for _, l := range links {
					href := strings.ReplaceAll(l[1], "&amp;", "&")
					if strings.Contains(href, "://") {
						continue
					}
					reportLinked = reportLinked || strings.HasPrefix(href, "/report")
					if code, body := p.get("/" + strings.TrimPrefix(href, "/")); code != 200 {
						t.Errorf("report=%v: landing page link %q answers %d: %.200s", report, href, code, body)
					}
				}
				if len(links) < 3 || reportLinked != report {
					t.Errorf("report=%v: landing page links %v (report linked: %v)", report, links, reportLinked)
				}
				for path, served := range map[string]bool{"/report": report, "/report/run/1": report, "/debug/pprof/heap": false} {
					// A report of an unknown run is a 404 page of its own: tell it from the mux's.
					code, body := p.get(path)
					if pageServed := code != 404 || !strings.HasPrefix(body, "404 page not found"); pageServed != served {
						t.Errorf("report=%v: %s answers %d: %.200s", report, path, code, body)
					}
				}
				if code, body := p.get("/metrics"); code != 200 || !strings.Contains(body, "pgbatch_up 1") {
					t.Errorf("report=%v: /metrics answers %d", report, code)
				}
				p.sigterm(20 * time.Second)
			}
		})
	}
}

// TestBinarySIGTERMFlushesRecorderBuffer: collections buffered while the recorder cannot
// write (its tables locked) are written on SIGTERM once the lock goes, each once; while it
// stays, the exporter still exits within --recorder.shutdown-timeout and says how many it lost.
func TestBinarySIGTERMFlushesRecorderBuffer(t *testing.T) {
	bin := buildBinary(t)
	for _, major := range pgtest.Versions() {
		t.Run(fmt.Sprintf("pg%d", major), func(t *testing.T) {
			srv := pgtest.Start(t, major)
			monitored, recorded := srv.NewDatabase(t), srv.NewDatabase(t)
			for _, released := range []bool{true, false} {
				p := startExporterProcess(t, bin, nil, "--postgres.dsn="+monitored, "--recorder.enabled", "--recorder.dsn="+recorded,
					"--tier.sample-interval=200ms", "--tier.snapshot-interval=300ms", "--postgres.lock-timeout=200ms",
					"--recorder.shutdown-timeout=3s", "--log.level=debug")
				p.waitFor("snapshots written", 30*time.Second, func() bool {
					return p.metric(`pgbatch_recorder_rows_written_total{table="snapshots"}`) >= 1
				})
				holder := pgtest.Connect(t, recorded, "test lock holder")
				ctx := context.Background()
				pgtest.MustExec(t, holder, "BEGIN")
				pgtest.MustExec(t, holder, "LOCK TABLE telemetry.snapshots, telemetry.samples IN ACCESS EXCLUSIVE MODE")
				var before int
				if err := holder.QueryRow(ctx, "SELECT (SELECT count(*) FROM telemetry.snapshots) + (SELECT count(*) FROM telemetry.samples)").Scan(&before); err != nil {
					t.Fatal(err)
				}
				p.waitFor("collections buffered", 20*time.Second, func() bool {
					return p.metric("pgbatch_recorder_buffered_rows") > 0 && strings.Contains(p.logs.String(), "recorder write failed")
				})
				time.Sleep(time.Second)
				if released {
					go func() {
						time.Sleep(500 * time.Millisecond)
						pgtest.MustExec(t, holder, "ROLLBACK")
					}()
				}
				took := p.sigterm(15 * time.Second)
				if !released {
					pgtest.MustExec(t, holder, "ROLLBACK")
				}
				m := regexp.MustCompile(`(?m)^.*level=(\w+) .*msg="recorder flushed its buffer on shutdown" .*written_collections=(\d+) lost_collections=(\d+) lost_rows=(\d+).*$`).
					FindStringSubmatch(p.logs.String())
				if m == nil {
					t.Fatalf("released=%v: no flush line in the logs:\n%s", released, p.logs.String())
				}
				var written, lost, lostRows int
				level := m[1]
				fmt.Sscan(m[2]+" "+m[3]+" "+m[4], &written, &lost, &lostRows)
				var after, distinct int
				if err := holder.QueryRow(ctx, `SELECT (SELECT count(*) FROM telemetry.snapshots) + (SELECT count(*) FROM telemetry.samples),
					(SELECT count(DISTINCT captured_at) FROM telemetry.snapshots) + (SELECT count(DISTINCT captured_at) FROM telemetry.samples)`).Scan(&after, &distinct); err != nil {
					t.Fatal(err)
				}
				t.Logf("released=%v: %d collections before the lock, flush wrote %d, lost %d (%d rows), exit took %s", released, before, written, lost, lostRows, took.Round(time.Millisecond))
				if after != distinct {
					t.Errorf("released=%v: %d collections recorded but %d distinct capture times: duplicates", released, after, distinct)
				}
				if released {
					if written < 2 || lost != 0 || lostRows != 0 || after != before+written {
						t.Errorf("released=%v: flush wrote %d and lost %d (%d rows); %d recorded before, %d after, want all written",
							released, written, lost, lostRows, before, after)
					}
					if level != "INFO" {
						t.Errorf("a complete flush is logged at level %s: %s", level, m[0])
					}
				} else {
					if written != 0 || lost < 2 || lostRows < lost || after != before {
						t.Errorf("released=%v: flush wrote %d and lost %d (%d rows); %d recorded before, %d after, want all lost",
							released, written, lost, lostRows, before, after)
					}
					if level != "WARN" {
						t.Errorf("a flush that lost collections is logged at level %s: %s", level, m[0])
					}
					if took > 8*time.Second {
						t.Errorf("exit took %s with --recorder.shutdown-timeout=3s", took)
					}
				}
			}
		})
	}
}

// TestBinaryExecForwardsSIGQUIT (issue 17, finding 8): SIGQUIT to exec is passed on to the
// command, as SIGTERM is, and the run ends with the command's status; it does not dump the
// wrapper's goroutines and exit 2 while the command runs on and its run is left open.
func TestBinaryExecForwardsSIGQUIT(t *testing.T) {
	bin := buildBinary(t)
	dsn := pgtest.Start(t, 17).NewDatabase(t)
	ctx := context.Background()
	pool := pgtest.Pool(t, dsn, false, "")
	defer pool.Close()
	if err := schema.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(t.TempDir(), "ready")
	// The command quits with 7 on SIGQUIT; it gives up by itself after 10 s.
	cmd := exec.Command(bin, "exec", "--batch=nightly", "--", "sh", "-c",
		`trap 'exit 7' QUIT; touch "$0"; for i in $(seq 200); do sleep 0.05; done`, ready)
	cmd.Env = append(os.Environ(), "DATA_SOURCE_NAME="+dsn)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the command never started: %s", stderr.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 7 || strings.Contains(stderr.String(), "goroutine ") {
		t.Errorf("exec after SIGQUIT: %v, exit %d, want the command's 7 and no goroutine dump; stderr:\n%s", err, code, stderr.String())
	}
	var status string
	var exitCode *int32
	if err := pool.QueryRow(ctx, `SELECT status, exit_code FROM telemetry.batch_runs WHERE batch = 'nightly'`).Scan(&status, &exitCode); err != nil ||
		status != "failed" || exitCode == nil || *exitCode != 7 {
		t.Errorf("the run after SIGQUIT: %s %v (%v), want failed with exit code 7", status, exitCode, err)
	}
}
