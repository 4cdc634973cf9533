package report

import (
	"net/url"
	"testing"
)

// FuzzWindowQuery: /report's query string never panics the parser, and a window it accepts
// is one the report can read: to after from, at most maxWindow long.
func FuzzWindowQuery(f *testing.F) {
	for _, s := range []string{"from=2026-01-02T01:00:00Z&to=2026-01-02T02:00:00Z", "from=2026-01-02%2001:00&to=2026-01-02%2002:00",
		"from=-infinity&to=infinity", "from=2026-01-02&to=2026-01-01", "from=0001-01-01T00:00:00Z&to=9999-12-31T23:59:59Z",
		"from=2026-01-02T01:00:00Z", "to=x", "from=%zz", "from=2026-01-02T01:00:00Z&from=2020-01-01&to=2026-01-02T02:00:00Z",
		"from=2026-01-02T01:00:00%2B14:00&to=2026-01-02T01:00:00-12:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		from, to, err := parseWindow(q)
		if err != nil {
			return
		}
		if !to.After(from) || to.Sub(from) > maxWindow {
			t.Errorf("%q: accepted the window %s to %s", raw, from, to)
		}
	})
}
