package report

import (
	"encoding/json"

	"github.com/pg-batch-exporter/pg-batch-exporter/diagnosis"
)

// planNode is a node of a plan's outline (telemetry._plan_outline).
type planNode struct {
	Depth int    `json:"depth"`
	Label string `json:"label"`
}

// planRow is a line of two plans side by side: a node of the run's plan, of the baseline's, or
// of both; Differs where it is in one plan only.
type planRow struct {
	Run, Baseline *planNode
	Differs       bool
}

// planComparison is a statement's plan in the run beside its baseline plan, as a plan finding
// (plan_changed, planner_setting) gives them.
type planComparison struct {
	Finding, Query, Worst string
	Rows                  []planRow
}

// planComparisons are the plans side by side of the findings that carry both.
func planComparisons(findings []diagnosis.Finding) []planComparison {
	var out []planComparison
	for _, f := range findings {
		var e struct {
			Query    string     `json:"query"`
			Worst    string     `json:"worst_node_label"`
			Plan     []planNode `json:"plan"`
			Baseline []planNode `json:"baseline_plan"`
		}
		if json.Unmarshal(f.Evidence, &e) != nil || len(e.Plan) == 0 || len(e.Baseline) == 0 {
			continue
		}
		out = append(out, planComparison{Finding: f.Pattern, Query: e.Query, Worst: e.Worst, Rows: alignPlans(e.Plan, e.Baseline)})
	}
	return out
}

// alignPlans lines two outlines up by their longest common subsequence of nodes (the same
// label at the same depth): the nodes of both face each other, the others are marked.
func alignPlans(run, base []planNode) []planRow {
	// common[i][j]: the longest common subsequence of run[i:] and base[j:].
	common := make([][]int, len(run)+1)
	for i := range common {
		common[i] = make([]int, len(base)+1)
	}
	for i := len(run) - 1; i >= 0; i-- {
		for j := len(base) - 1; j >= 0; j-- {
			if run[i] == base[j] {
				common[i][j] = common[i+1][j+1] + 1
			} else {
				common[i][j] = max(common[i+1][j], common[i][j+1])
			}
		}
	}
	var rows []planRow
	i, j := 0, 0
	for i < len(run) || j < len(base) {
		switch {
		case i < len(run) && j < len(base) && run[i] == base[j]:
			rows = append(rows, planRow{Run: &run[i], Baseline: &base[j]})
			i, j = i+1, j+1
		case j == len(base) || i < len(run) && common[i+1][j] >= common[i][j+1]:
			rows = append(rows, planRow{Run: &run[i], Differs: true})
			i++
		default:
			rows = append(rows, planRow{Baseline: &base[j], Differs: true})
			j++
		}
	}
	return rows
}
