package main

import (
	"bytes"
	"strings"
	"testing"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpListsFlagsWithoutSecrets(t *testing.T) {
	t.Setenv("DATA_SOURCE_NAME", "postgres://u:hunter2-secret@h/db")
	code, out, _ := runCLI("--help")
	if code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, flag := range []string{"--web.listen-address", "--web.config.file", "--web.telemetry-path", "--log.level", "--log.format",
		"--postgres.dsn", "--postgres.statement-timeout", "--postgres.lock-timeout", "--tier.sample-interval",
		"--tier.snapshot-interval", "--collector.waits.interval", "--collector.tables.track", "--[no-]collector.wal", "--[no-]collector.waits"} {
		if !strings.Contains(out, flag) {
			t.Errorf("--help lacks %s", flag)
		}
	}
	if strings.Contains(out, "hunter2-secret") {
		t.Error("--help shows the password from DATA_SOURCE_NAME")
	}
}

func TestBadInputIsAClearErrorWithStatus2(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "unknown long flag"},
		{[]string{"--tier.sample-interval=soon"}, "tier.sample-interval"},
		{[]string{"--collector.tables.track=a.b.c"}, "want schema.table"},
		{[]string{"--collector.tables.track=\"unterminated"}, "unterminated"},
		{[]string{"--tier.snapshot-interval=0s"}, "at least 100ms"},
		{[]string{"--postgres.dsn=postgres://u:pw-secret@h:port/db"}, "invalid port"},
	} {
		code, out, errOut := runCLI(c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", c.args, code, errOut, c.want)
		}
		if strings.Contains(out+errOut, "pw-secret") {
			t.Errorf("%v: password in output", c.args)
		}
	}
}
