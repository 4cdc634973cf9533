package diagnosis

import (
	"testing"
	"time"
)

// FuzzParseTime: the diagnose --from/--to and /report ?from=&to= parser never panics, and a
// time it accepts survives the trip to PostgreSQL's timestamptz range and back as text.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2024-12-16T14:00:00+01:00", "2024-12-16 14:00", "2024-12-16 14:00:05", "2024-12-16",
		"2024-12-16T14:00", "-infinity", "infinity", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
		"2024-02-30", "2024-12-16T14:00:00+25:00", "now", "", " 2024-12-16", "2024-12-16T14:00:00.123456789-07:00"} {
		f.Add(s)
	}
	// timestamptz holds 4713 BC to 294276 AD.
	lowest, highest := time.Date(-4712, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(294276, 12, 31, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTime(s)
		if err != nil {
			return
		}
		if got.Before(lowest) || got.After(highest) {
			t.Errorf("%q: accepted %s, outside timestamptz", s, got)
		}
		back, err := time.Parse(time.RFC3339Nano, got.Format(time.RFC3339Nano))
		if err != nil || !back.Equal(got) {
			t.Errorf("%q: %s does not survive RFC 3339: %v %s", s, got, err, back)
		}
	})
}
