package report

import (
	"strings"
	"testing"
)

// TestCompareUnits: compare()'s *_ms columns read in milliseconds whatever their size, not
// a mix of "0 s" and "850 ms"; bytes in IEC units.
func TestCompareUnits(t *testing.T) {
	for _, c := range []struct {
		v         any
		col, want string
	}{
		{int64(0), "ckpt_write_time_ms", "0 ms"},
		{float64(850), "ckpt_sync_time_ms", "850 ms"},
		{float64(4200), "ckpt_write_time_ms", "4200 ms"},
		{int64(100515840), "wal_bytes", "95.9 MiB"},
	} {
		if got := formatCompare(c.v, c.col); got != c.want {
			t.Errorf("%s %v: %q, want %q", c.col, c.v, got, c.want)
		}
	}
}

// TestStepChart: a count of events is drawn as a step, not a diagonal from 0 to 1.
func TestStepChart(t *testing.T) {
	c := chart{Unit: "count", XMax: 5, Step: true, Lines: []line{{Name: "checkpoints", Points: []point{{0, 0}, {5, 1}}}}}
	svg := string(c.SVG())
	d := svg[strings.Index(svg, `class="series" d="`):]
	if !strings.Contains(d, " H") || !strings.Contains(d, " V") || strings.Contains(d[:strings.Index(d, `" stroke`)], "L") {
		t.Errorf("the checkpoint line is not a step: %s", d)
	}
}
