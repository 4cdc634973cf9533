package units

import "testing"

func TestFormats(t *testing.T) {
	for got, want := range map[string]string{
		Bytes(100515840): "95.9 MiB", Bytes(1023): "1023 B", Bytes(1536): "1.5 KiB", Bytes(1 << 30): "1 GiB",
		Seconds(0): "0 s", Seconds(0.85): "850 ms", Seconds(12.34): "12.3 s", Seconds(245): "4m05s",
		Milliseconds(0): "0 ms", Milliseconds(0.4): "0.4 ms", Milliseconds(4200): "4200 ms",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
