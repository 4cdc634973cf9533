package report

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pg-batch-exporter/pg-batch-exporter/internal/units"
)

const none = "–"

func formatTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") }

// toFloat reads the numbers pgx returns from Values(): ints, floats and numerics.
func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int16:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	case float32:
		return float64(x), true
	case float64:
		return x, true
	case pgtype.Numeric:
		f, err := x.Float64Value()
		return f.Float64, err == nil && f.Valid
	}
	return 0, false
}

func isNumeric(v any) bool {
	_, ok := toFloat(v)
	return ok
}

// formatCell shows a value of a SQL API result as psql would, numbers grouped by thousands.
func formatCell(v any) string {
	if v == nil {
		return none
	}
	if f, ok := toFloat(v); ok {
		return formatNumber(f)
	}
	switch x := v.(type) {
	case time.Time:
		return formatTime(x)
	case bool:
		if x {
			return "yes"
		}
		return "no"
	}
	return fmt.Sprint(v)
}

// formatNumber groups thousands with a thin space and keeps up to two decimals.
func formatNumber(f float64) string {
	s := units.TrimZeros(strconv.FormatFloat(f, 'f', 2, 64))
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(c)
	}
	out := b.String()
	if frac != "" {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

// formatMeasure shows a diagnose_run measure in its unit.
func formatMeasure(v *float64, unit string) string {
	if v == nil {
		return none
	}
	switch unit {
	case "bytes", "seconds":
		return formatValue(*v, unit)
	case "buffers":
		return formatNumber(math.Round(*v)) + " buffers"
	}
	return formatNumber(*v)
}

// formatAgainstUsual says how a run's duration stands against its batch's usual 90th
// percentile: how far past it, or within it; nothing without a usual yet.
func formatAgainstUsual(seconds float64, p90 *float64) string {
	switch {
	case p90 == nil:
		return ""
	case seconds > *p90:
		return units.Seconds(seconds-*p90) + " past the p90"
	}
	return "within the usual"
}

// formatSigned shows a change with its sign, e.g. +520%.
func formatSigned(v *float64, suffix string) string {
	if v == nil {
		return none
	}
	return fmt.Sprintf("%+.1f%s", *v, suffix)
}

// compareLine is one column of telemetry.compare(): this window's value and, for a run,
// the median over its baseline runs.
type compareLine struct {
	Name, Value, Baseline string
}

// compareUnit is the unit of a compare() column, read off its name.
func compareUnit(col string) string {
	switch {
	case strings.HasSuffix(col, "_ms"):
		return "ms"
	case col == "elapsed_seconds":
		return "seconds"
	case strings.Contains(col, "bytes") || strings.Contains(col, "retained_wal"):
		return "bytes"
	}
	return "count"
}

// compareLines turns compare()'s one row into lines, leaving out the *_pretty columns
// (shown in their unit anyway) and the boundary snapshots (in the page's header).
func compareLines(cur table, base []table) []compareLine {
	if len(cur.Rows) == 0 {
		return nil
	}
	var out []compareLine
	for i, col := range cur.Columns {
		if strings.HasSuffix(col, "_pretty") || strings.HasSuffix(col, "_snapshot_at") {
			continue
		}
		l := compareLine{Name: col, Value: formatCompare(cur.Rows[0][i], col)}
		var vals []float64
		for _, b := range base {
			if len(b.Rows) == 0 {
				continue
			}
			for j, bc := range b.Columns {
				if f, ok := toFloat(b.Rows[0][j]); ok && bc == col {
					vals = append(vals, f)
				}
			}
		}
		if len(base) > 0 {
			l.Baseline = none
			if len(vals) > 0 {
				l.Baseline = formatCompare(median(vals), col)
			}
		}
		out = append(out, l)
	}
	return out
}

func formatCompare(v any, col string) string {
	f, ok := toFloat(v)
	if !ok {
		return formatCell(v)
	}
	switch compareUnit(col) {
	case "ms":
		return units.Milliseconds(f)
	case "seconds", "bytes":
		return formatValue(f, compareUnit(col))
	}
	return formatNumber(f)
}

func median(vs []float64) float64 {
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// shortText is a statement's first line of words, cut to 80 characters, for a table cell.
func shortText(s *string) string {
	if s == nil {
		return none
	}
	t := []rune(strings.Join(strings.Fields(*s), " "))
	if len(t) > 80 {
		return string(t[:79]) + "…"
	}
	return string(t)
}
