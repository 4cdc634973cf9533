// Package units formats quantities for people, one way for the CLI and the report page:
// bytes in IEC units (KiB, MiB, GiB), durations as 850 ms, 12.3 s, 4m05s.
package units

import (
	"fmt"
	"math"
	"strings"
)

// Bytes shows a byte count in IEC units with one decimal: 100515840 is 95.9 MiB.
func Bytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for ; math.Abs(v) >= 1024 && i < len(units)-1; i++ {
		v /= 1024
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", v)
	}
	return TrimZeros(fmt.Sprintf("%.1f", v)) + " " + units[i]
}

// Seconds shows a duration the way people read one: 850 ms, 12.3 s, 4m05s, 1h02m; zero is 0 s.
func Seconds(s float64) string {
	switch a := math.Abs(s); {
	case a == 0:
		return "0 s"
	case a < 1:
		return fmt.Sprintf("%.0f ms", s*1000)
	case a < 60:
		return TrimZeros(fmt.Sprintf("%.1f", s)) + " s"
	case a < 3600:
		return fmt.Sprintf("%dm%02ds", int(s)/60, int(math.Round(s))%60)
	}
	return fmt.Sprintf("%dh%02dm", int(s)/3600, int(s)%3600/60)
}

// Milliseconds shows a *_ms column (checkpoint write and sync times) in milliseconds
// whatever its size, so a column of them reads in one unit: 0 ms, 12.5 ms, 4200 ms.
func Milliseconds(ms float64) string {
	return TrimZeros(fmt.Sprintf("%.1f", ms)) + " ms"
}

// TrimZeros drops a decimal fraction's trailing zeros: 1.50 is 1.5, 2.0 is 2.
func TrimZeros(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
