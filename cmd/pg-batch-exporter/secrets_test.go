package main

import (
	"net"
	"strings"
	"testing"
	"time"
)

// TestPasswordsNeverShown: a password given in any form (in a URL, as a URL parameter, as a
// key=value pair, through PGPASSWORD, in a DSN that does not parse) never reaches diagnose's
// or exec's output, the exporter's log, /, /metrics or /report, whether the server cannot be
// reached or the DSN is wrong.
func TestPasswordsNeverShown(t *testing.T) {
	bin := buildBinary(t)
	_, port, _ := net.SplitHostPort(freeAddr(t)) // nothing listens there
	forms := []struct {
		name, dsn, env, password string
	}{
		{"URL", "postgres://alice:pw-in-url-1@127.0.0.1:" + port + "/app?connect_timeout=1", "", "pw-in-url-1"},
		{"URL parameter", "postgres://alice@127.0.0.1:" + port + "/app?password=pw-param-2&connect_timeout=1", "", "pw-param-2"},
		{"key=value", "host=127.0.0.1 port=" + port + " user=alice password=pw-keyvalue-3 dbname=app connect_timeout=1", "", "pw-keyvalue-3"},
		{"PGPASSWORD", "host=127.0.0.1 port=" + port + " user=alice dbname=app connect_timeout=1", "PGPASSWORD=pw-env-4", "pw-env-4"},
		{"unparsable URL", "postgres://alice:pw-bad-url-5@127.0.0.1:notaport/app", "", "pw-bad-url-5"},
		{"unparsable key=value", "host=127.0.0.1 password=pw-bad-kv-6 port=", "", "pw-bad-kv-6"},
	}
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			if f.env != "" {
				k, v, _ := strings.Cut(f.env, "=")
				t.Setenv(k, v)
			}
			check := func(where, text string) {
				t.Helper()
				if strings.Contains(text, f.password) {
					t.Errorf("%s shows the password:\n%s", where, text)
				}
			}
			_, out, errOut := runCLI("diagnose", "--postgres.dsn="+f.dsn, "--from=2024-12-16 14:00", "--to=2024-12-16 15:00")
			check("diagnose", out+errOut)
			_, out, errOut = runCLI("diagnose", "--postgres.dsn="+f.dsn, "--batch=nightly")
			check("diagnose --batch", out+errOut)
			_, out, errOut = runCLI("exec", "--postgres.dsn="+f.dsn, "--batch=nightly", "--", "true")
			check("exec", out+errOut)

			var env []string
			if f.env != "" {
				env = []string{f.env}
			}
			p := startExporterProcess(t, bin, env, "--postgres.dsn="+f.dsn, "--recorder.enabled", "--tier.sample-interval=200ms")
			deadline := time.Now().Add(10 * time.Second)
			for exited := false; !exited; {
				code, metrics := p.get("/metrics")
				if strings.Contains(metrics, "\npgbatch_up 0\n") || time.Now().After(deadline) {
					break
				}
				if code == 0 { // refused at start (exit 2) or not listening yet
					select {
					case <-p.exited:
						exited = true
					case <-time.After(200 * time.Millisecond):
					}
					continue
				}
				time.Sleep(200 * time.Millisecond)
			}
			for _, path := range []string{"/", "/metrics", "/report", "/report/run/1"} {
				_, body := p.get(path)
				check(path, body)
			}
			check("the log", p.logs.String())
		})
	}
}
