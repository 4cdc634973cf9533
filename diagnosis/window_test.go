package diagnosis

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
)

// Too little data is said plainly, with the reason; what can still be judged is.
func TestWindowTooLittleData(t *testing.T) {
	l := lab.New(t, 17)
	l.PrepareWork()
	runID := l.Run("nightly", func(c *pgx.Conn) { lab.CPU(t, c, 600*time.Millisecond) })
	ctx := context.Background()
	var started, ended time.Time
	if err := l.Admin.QueryRow(ctx, `SELECT started_at, ended_at FROM telemetry.batch_runs WHERE run_id = $1`, runID).Scan(&started, &ended); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		from, to time.Time
		want     []string
		// wantAdvice is in the recommendation: what is really missing.
		wantAdvice, wantWindow string
	}{
		{"no end snapshot yet", started, time.Now().Add(time.Hour), []string{"No snapshot at or after", "(the last is "}, "", ""},
		{"before any snapshot", started.Add(-time.Hour), started.Add(-30 * time.Minute), []string{"No snapshot at or before", "Only 0 samples"},
			"Is the recorder running", "no snapshots at both ends of the window"},
		// Boundary snapshots there, the recorder running: what is missing is sample-tier cadence.
		{"too few samples", ended, ended.Add(time.Millisecond), []string{"samples between", "(at least 3 needed)"},
			"lower --tier.sample-interval to", "snapshots "},
	} {
		rep, err := Window(ctx, l.Admin, c.from, c.to, "")
		if err != nil {
			t.Fatal(err)
		}
		f := rep.Findings[0]
		for _, w := range c.want {
			if f.Pattern != "insufficient_data" || f.Severity != "warning" || !strings.Contains(f.Summary, w) {
				t.Errorf("%s: first finding %s %s %q, want insufficient_data saying %q", c.name, f.Pattern, f.Severity, f.Summary, w)
			}
		}
		var advice string
		if f.Recommendation != nil {
			advice = *f.Recommendation
		}
		if !strings.Contains(advice, c.wantAdvice) || (c.wantAdvice != "" && c.wantAdvice != "Is the recorder running" && strings.Contains(advice, "Is the recorder running")) {
			t.Errorf("%s: recommendation %q, want it to say %q", c.name, advice, c.wantAdvice)
		}
		last := rep.Findings[len(rep.Findings)-1]
		if last.Pattern != "window" || !strings.Contains(last.Summary, c.wantWindow) || strings.Contains(last.Summary, "none to none") {
			t.Errorf("%s: the last row is %s %q, want window saying %q", c.name, last.Pattern, last.Summary, c.wantWindow)
		}
	}
	if _, err := Window(ctx, l.Admin, ended, started, ""); err == nil || !strings.Contains(err.Error(), "is before the start") {
		t.Errorf("an end before the start: %v", err)
	}
	if _, err := Window(ctx, l.Admin, started, started, ""); err == nil || !strings.Contains(err.Error(), "is not after the start") {
		t.Errorf("an empty window: %v", err)
	}
}
