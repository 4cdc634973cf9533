package diagnosis

import "testing"

// TestQuantityUnits: the CLI writes bytes in the IEC units the report page uses.
func TestQuantityUnits(t *testing.T) {
	b, s := 100515840.0, 0.0
	if got := quantity(&b, "bytes"); got != "95.9 MiB" {
		t.Errorf("100515840 bytes: %q, want 95.9 MiB", got)
	}
	if got := quantity(&s, "seconds"); got != "0.0 s" {
		t.Errorf("0 seconds: %q, want 0.0 s", got)
	}
}
