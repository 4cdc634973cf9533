package batch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
)

func TestParseRule(t *testing.T) {
	r, err := ParseRule("nightly=application_name:^etl_nightly")
	if err != nil {
		t.Fatal(err)
	}
	if r.Batch != "nightly" || !r.Matches("etl_nightly_loader", "") || r.Matches("x_etl_nightly", "") {
		t.Errorf("rule %+v matches wrongly", r)
	}
	for value, want := range map[string]string{
		"nightly":                    "want batch=user:role, application_name:regexp",
		"=application_name:^x":       "the batch name is empty",
		"nightly=^etl":               "want user:role, application_name:regexp",
		"nightly=user:":              "the role of user: is empty",
		"nightly=user:etl,^etl":      "want user:role",
		"nightly=usename:^etl":       `cannot match on "usename"`,
		"nightly=application_name:":  "pattern is empty",
		"nightly=application_name:(": "missing closing )",
	} {
		if _, err := ParseRule(value); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRule(%q) = %v, want an error with %q", value, err, want)
		}
	}
	// user: binds a rule to the role a session logged in as, which it cannot SET as it can its
	// application_name.
	for value, cases := range map[string][]struct {
		app, user string
		want      bool
	}{
		"nightly=user:etl":                         {{"anything", "etl", true}, {"anything", "analyst", false}},
		"nightly=user:etl,application_name:^etl_n": {{"etl_nightly", "etl", true}, {"etl_nightly", "analyst", false}, {"psql", "etl", false}},
		"nightly=application_name:^etl_n":          {{"etl_nightly", "analyst", true}},
	} {
		r, err := ParseRule(value)
		if err != nil {
			t.Fatalf("%s: %v", value, err)
		}
		for _, c := range cases {
			if got := r.Matches(c.app, c.user); got != c.want {
				t.Errorf("%s: Matches(%q, %q) = %v, want %v", value, c.app, c.user, got, c.want)
			}
		}
	}
	if _, err := ParseRules([]string{"a=application_name:x", "a=application_name:y"}); err == nil {
		t.Error("two rules for one batch were accepted")
	}
}

func TestLoadRules(t *testing.T) {
	dir := t.TempDir()
	write := func(text string) string {
		p := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rules, err := LoadRules(write("batches:\n  - name: nightly\n    match: application_name:^etl_nightly\n  - name: weekly\n    match: 'application_name:^weekly$'\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 || rules[0].Batch != "nightly" || !rules[1].Matches("weekly", "") {
		t.Errorf("rules = %+v", rules)
	}
	for text, want := range map[string]string{
		"batches:\n  - name: nightly\n    macth: application_name:x\n": "field macth not found",
		"batches:\n  - name: nightly\n    match: application_name:(\n": "config.yml: batch nightly",
		"batches: [": "config.yml",
	} {
		if _, err := LoadRules(write(text)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadRules(%q) = %v, want an error with %q", text, err, want)
		}
	}
	if _, err := LoadRules(filepath.Join(dir, "missing.yml")); err == nil {
		t.Error("a missing file was accepted")
	}
}

// A detected run seen by a single sample lasted that sample's span, not zero.
func TestDetectedRunOfOneSample(t *testing.T) {
	rules, err := ParseRules([]string{"nightly=application_name:^etl"})
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTracker(Options{Rules: rules, QuietPeriod: time.Second})
	at := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	tr.Observe(at, time.Second, []collectors.SessionWait{{PID: 7, ApplicationName: "etl", State: collectors.SessionActive, WaitEventType: "Running", WaitEvent: "CPU", Count: 1}}, nil)
	tr.Observe(at.Add(2*time.Second), time.Second, nil, nil)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if d := tr.batches["nightly"].lastDuration; d == nil || *d != time.Second {
		t.Errorf("duration of a one-sample run = %v, want 1s", d)
	}
}

// TestRunWaitsSplitOwnFromOthers: while a detected run is in progress, each sample's
// session-seconds go to the run's own sessions (by wait and statement) or to the other
// sessions (by wait); nothing is booked while no batch runs.
func TestRunWaitsSplitOwnFromOthers(t *testing.T) {
	rules, err := ParseRules([]string{"nightly=application_name:^etl"})
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTracker(Options{Rules: rules, QuietPeriod: time.Minute})
	at := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	other := collectors.SessionWait{PID: 9, ApplicationName: "reporting", State: collectors.SessionActive, WaitEventType: "Lock", WaitEvent: "relation", QueryID: 0, Count: 2}
	tr.Observe(at, time.Second, []collectors.SessionWait{other}, nil) // no run yet
	if got := tr.TakeRunWaits(); len(got) != 0 {
		t.Fatalf("booked %v with no batch running", got)
	}
	own := collectors.SessionWait{PID: 7, ApplicationName: "etl", State: collectors.SessionActive, WaitEventType: "IO", WaitEvent: "BufFileWrite", QueryID: 42, Count: 1}
	// Between statements: an own session idle in its transaction after statement 42 is the
	// run's time (by its state and last statement); another idle session is not.
	ownIdle := collectors.SessionWait{PID: 8, ApplicationName: "etl", State: "idle in transaction", WaitEventType: "Client", WaitEvent: "ClientRead", QueryID: 42, Count: 1}
	otherIdle := collectors.SessionWait{PID: 10, ApplicationName: "reporting", State: "idle", WaitEventType: "Client", WaitEvent: "ClientRead", Count: 1}
	tr.Observe(at.Add(time.Second), time.Second, []collectors.SessionWait{own, other, ownIdle, otherIdle}, nil)
	tr.Observe(at.Add(2*time.Second), 500*time.Millisecond, []collectors.SessionWait{own, other}, nil)
	got := map[collectors.BatchWait]float64{}
	for _, w := range tr.TakeRunWaits() {
		s := w.Seconds
		w.Seconds = 0
		got[w] = s
	}
	want := map[collectors.BatchWait]float64{
		{Batch: "nightly", Own: true, PID: 7, State: collectors.SessionActive, WaitEventType: "IO", WaitEvent: "BufFileWrite", QueryID: 42}: 1.5,
		{Batch: "nightly", Own: true, PID: 8, State: "idle in transaction", WaitEventType: "Client", WaitEvent: "ClientRead", QueryID: 42}:  1,
		{Batch: "nightly", Own: false, State: collectors.SessionActive, WaitEventType: "Lock", WaitEvent: "relation"}:                       3,
	}
	if len(got) != len(want) {
		t.Fatalf("run waits %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%+v: %v session-seconds, want %v", k, got[k], v)
		}
	}
	if again := tr.TakeRunWaits(); len(again) != 0 {
		t.Errorf("taken twice: %v", again)
	}
}
