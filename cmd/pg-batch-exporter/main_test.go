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
	code, out, _ := runCLI("serve", "--help")
	if code != 0 {
		t.Fatalf("serve --help exited %d", code)
	}
	for _, flag := range []string{"--web.listen-address", "--web.config.file", "--web.telemetry-path", "--log.level", "--log.format",
		"--postgres.dsn", "--postgres.statement-timeout", "--postgres.lock-timeout", "--tier.sample-interval",
		"--tier.snapshot-interval", "--collector.waits.interval", "--collector.tables.track", "--[no-]collector.wal", "--[no-]collector.waits",
		"--[no-]collector.disable-defaults"} {
		if !strings.Contains(out, flag) {
			t.Errorf("serve --help lacks %s", flag)
		}
	}
	if strings.Contains(out, "hunter2-secret") {
		t.Error("--help shows the password from DATA_SOURCE_NAME")
	}
}

// TestEachCommandShowsItsOwnFlags: a command's help lists its own flags first, then the
// shared ones, and none that belong to another command.
func TestEachCommandShowsItsOwnFlags(t *testing.T) {
	shared := []string{"--postgres.dsn", "--postgres.statement-timeout", "--postgres.lock-timeout", "--log.level"}
	serveOnly := []string{"--web.listen-address", "--tier.sample-interval", "--[no-]collector.wal", "--[no-]recorder.enabled",
		"--recorder.dsn", "--batch.match", "--postgres.max-connections"}
	for _, c := range []struct {
		args     []string
		own      []string
		notShown []string
	}{
		{[]string{"--help"}, nil, append(serveOnly, "--from", "--run")},
		{[]string{"serve", "--help"}, serveOnly, []string{"--from", "--run"}},
		{[]string{"diagnose", "--help"}, []string{"--from", "--to", "--batch", "--run", "--server", "--format"}, serveOnly},
		{[]string{"exec", "--help"}, []string{"--batch"}, append(serveOnly, "--from")},
	} {
		code, out, errOut := runCLI(c.args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, code, errOut)
		}
		sharedAt := strings.Index(out, "Flags of every command:")
		if sharedAt < 0 {
			t.Fatalf("%v: no section of the shared flags:\n%s", c.args, out)
		}
		for _, f := range c.own {
			if i := strings.Index(out, f); i < 0 || i > sharedAt {
				t.Errorf("%v: %s not among the command's own flags, before the shared ones", c.args, f)
			}
		}
		for _, f := range shared {
			if !strings.Contains(out[sharedAt:], f) {
				t.Errorf("%v: shared flag %s not among the flags of every command", c.args, f)
			}
		}
		for _, f := range c.notShown {
			if strings.Contains(out, f+"=") || strings.Contains(out, f+" ") {
				t.Errorf("%v: shows %s, a flag it does not use", c.args, f)
			}
		}
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
		{[]string{"--recorder.enabled", "--recorder.request-min-interval=-1s"}, "--recorder.request-min-interval must not be negative, got -1s"},
		{[]string{"--recorder.enabled", "--recorder.request-min-interval=often"}, "recorder.request-min-interval"},
		{[]string{"exec", "--batch=" + strings.Repeat("n", 201), "--", "true"}, "--batch: the batch name is 201 bytes long"},
		{[]string{"exec", "--batch= ", "--", "true"}, "--batch: the batch name is empty"},
		{[]string{"--batch.match=" + strings.Repeat("n", 300) + "=application_name:^x"}, "the batch name is 300 bytes long"},
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
