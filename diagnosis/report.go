package diagnosis

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pg-batch-exporter/pg-batch-exporter/internal/units"
)

// TextMeasures is how many ranked measures the text report shows (JSON has them all).
const TextMeasures = 6

// JSON writes the report as one indented JSON document.
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Text writes the report for a reader: the findings, most severe first, each with its
// recommendation, then for a run the measures that moved most against its baseline.
func (r *Report) Text(w io.Writer) error {
	ew := &errWriter{w: w}
	const layout = "2006-01-02 15:04:05 MST"
	from, to := r.From.Local(), r.To.Local()
	if r.Running {
		ew.printf("Batch %s, run %d (%s): STILL RUNNING, since %s (%s so far)\n", r.Run.Batch, r.Run.RunID, r.Run.Source,
			from.Format(layout), to.Sub(from).Round(100*time.Millisecond))
		ew.printf("  This run has not ended: what follows is its account up to %s.\n", to.Format(layout))
		r.usualText(ew)
	} else if r.Run != nil {
		ew.printf("Batch %s, run %d (%s, %s): %s to %s (%s)\n", r.Run.Batch, r.Run.RunID, r.Run.Source, r.Run.Status,
			from.Format(layout), to.Format(layout), to.Sub(from).Round(100*time.Millisecond))
	}
	if r.Run != nil {
		if r.Run.Detail != nil {
			ew.printf("  %s\n", *r.Run.Detail)
		}
	} else {
		ew.printf("Window %s to %s (%s)\n", from.Format(layout), to.Format(layout), to.Sub(from).Round(time.Second))
	}
	r.extraText(ew)
	for _, f := range r.Findings {
		ew.printf("\n%-8s  %s", strings.ToUpper(f.Severity), f.Pattern)
		if f.ExplainedSeconds != nil && f.ShareOfExtraPct != nil {
			ew.printf("  %s s, %.0f%% of the extra time", signedSeconds(*f.ExplainedSeconds), *f.ShareOfExtraPct)
		}
		ew.printf("\n  %s\n", f.Summary)
		for _, c := range f.Children {
			shared := ""
			if c.Shared {
				shared = " (shared with other sessions)"
			}
			ew.printf("    %8s s  %s%s\n", signedSeconds(c.ExtraSeconds), statementText(c.Query, c.QueryID), shared)
		}
		if f.Recommendation != nil {
			ew.printf("  Fix: %s\n", *f.Recommendation)
		}
	}
	if r.Run != nil {
		r.statementsText(ew)
	}
	if r.Running {
		r.soFarText(ew)
	} else if r.Run != nil {
		r.baselineText(ew)
	}
	return ew.err
}

// extraText splits a run's extra time by cause, on one line: what the report's bar shows.
func (r *Report) extraText(ew *errWriter) {
	if r.ExtraSeconds == nil {
		return
	}
	ew.printf("\nExtra time against the baseline median: %s s", signedSeconds(*r.ExtraSeconds))
	var parts []string
	for _, f := range r.Findings {
		if f.ExplainedSeconds != nil {
			parts = append(parts, fmt.Sprintf("%s %s s", f.Pattern, signedSeconds(*f.ExplainedSeconds)))
		}
	}
	if r.UnexplainedSeconds != nil {
		parts = append(parts, fmt.Sprintf("not explained %s s", signedSeconds(*r.UnexplainedSeconds)))
	}
	if len(parts) > 0 {
		ew.printf(" = %s", strings.Join(parts, " + "))
	}
	ew.printf("\n")
}

func signedSeconds(v float64) string { return fmt.Sprintf("%+.1f", v) }

// statementText is a statement on one line, at most 60 characters (queryid N without its text).
func statementText(query *string, queryID int64) string {
	text := fmt.Sprintf("queryid %d", queryID)
	if queryID == 0 {
		text = "(statement unknown)"
	}
	if query != nil {
		text = strings.Join(strings.Fields(*query), " ")
	}
	if len([]rune(text)) > 60 {
		text = string([]rune(text)[:59]) + "…"
	}
	return text
}

// usualText says how the run in progress stands against its batch's usual duration.
func (r *Report) usualText(ew *errWriter) {
	u := r.Usual
	if u == nil {
		ew.printf("  No usual duration of %s yet: too few previous normal runs.\n", r.Run.Batch)
		return
	}
	elapsed := r.To.Sub(r.From).Seconds()
	ew.printf("  Its %d previous normal run(s) took %s (median), at most %s (90th percentile)", u.BaselineRuns,
		units.Seconds(u.MedianSeconds), units.Seconds(u.P90Seconds))
	if elapsed > u.P90Seconds {
		ew.printf(": this run is %s past that.\n", units.Seconds(elapsed-u.P90Seconds))
	} else {
		ew.printf(".\n")
	}
}

// soFarText compares the measures of the run in progress with its baseline runs, over
// their whole runs and over the same elapsed part of them.
func (r *Report) soFarText(ew *errWriter) {
	if len(r.SoFar) == 0 || r.SoFar[0].BaselineRuns == 0 {
		ew.printf("\nNo previous normal run of %s to compare with.\n", r.Run.Batch)
		return
	}
	first := r.SoFar[0]
	ew.printf("\nSo far against the median of %d previous normal run(s) of %s, whole and over their first %.1f s:\n",
		first.BaselineRuns, r.Run.Batch, first.ElapsedSeconds)
	tw := tabwriter.NewWriter(ew, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "  measure\tthis run so far\twhole runs\tsame elapsed part\tpattern\n")
	for _, m := range r.SoFar {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", m.Measure, quantity(m.Value, m.Unit), quantity(m.MedianWhole, m.Unit),
			quantity(m.MedianElapsed, m.Unit), deref(m.Pattern))
	}
	tw.Flush()
}

// TextStatements is how many statements the text report shows.
const TextStatements = 5

func (r *Report) statementsText(ew *errWriter) {
	if len(r.Statements) == 0 {
		return
	}
	ew.printf("\nTop statements of this run, by time beyond their baseline median:\n")
	tw := tabwriter.NewWriter(ew, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "  rank\textra\tthis run\tmedian\tcalls\tper call\ttop wait\tstatement\n")
	for _, s := range r.Statements {
		if s.Rank > TextStatements {
			break
		}
		text := statementText(s.Query, s.QueryID)
		calls := "-"
		if s.Calls != nil {
			calls = fmt.Sprint(*s.Calls)
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Rank, optional(s.ExtraSeconds, "%+.1f s"), optional(s.Seconds, "%.1f s"),
			optional(s.BaselineSeconds, "%.1f s"), calls, optional(s.SecondsPerCall, "%.4f s"), deref(s.TopWait), text)
	}
	tw.Flush()
}

func (r *Report) baselineText(ew *errWriter) {
	runs := 0
	for _, m := range r.Baseline {
		runs = max(runs, m.BaselineRuns)
	}
	if runs == 0 {
		ew.printf("\nNo previous normal run of %s to compare with.\n", r.Run.Batch)
		return
	}
	ew.printf("\nAgainst the median of %d previous normal run(s) of %s, most unusual first:\n", runs, r.Run.Batch)
	tw := tabwriter.NewWriter(ew, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "  rank\tmeasure\tthis run\tmedian\tscore\tpattern\n")
	for _, m := range r.Baseline {
		if m.Rank > TextMeasures {
			break
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\n", m.Rank, m.Measure, quantity(m.Value, m.Unit), quantity(m.BaselineMedian, m.Unit),
			optional(m.Score, "%+.1f"), deref(m.Pattern))
	}
	tw.Flush()
	ew.printf("  (score: distance from the median in robust standard deviations; rank 0 is the symptom)\n")
}

func quantity(v *float64, unit string) string {
	if v == nil {
		return "-"
	}
	switch unit {
	case "bytes":
		return units.Bytes(*v)
	case "seconds":
		return fmt.Sprintf("%.1f s", *v) // one unit down a column of seconds
	case "buffers":
		return fmt.Sprintf("%.0f buffers", *v)
	}
	return fmt.Sprintf("%.0f", *v)
}

func optional(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// errWriter keeps the first write error, so the report is written without checking each line.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }
