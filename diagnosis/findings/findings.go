// Package findings holds the causes of a run's extra time, one folder each:
// <name>/finding.sql (its thresholds and its rule, the function telemetry._finding_<name>,
// which reads the run's account, telemetry._run_causes, and says how many seconds of the
// run's extra time the cause explains, with the statements under it), <name>/README.md (its
// page) and <name>/scenario_test.go (slow runs with that cause). The recorder applies them
// after the diagnosis definitions, then Combine's telemetry._run_cause_findings, which
// telemetry._run_findings_json reads: a folder added here is a cause, a folder removed is not.
// The package only embeds files, so that the recorder can import it.
package findings

import (
	"embed"

	"github.com/pg-batch-exporter/pg-batch-exporter/diagnosis/patterns"
)

// Files are the causes' folders.
//
//go:embed */finding.sql
var Files embed.FS

// RuleFile is the file of a cause's folder that defines its thresholds and its rule.
const RuleFile = "finding.sql"

// CombineFile is the generated definition of telemetry._run_cause_findings, beside the
// folders (go generate ./...).
const CombineFile = "dispatch.sql"

// Combine is the text of CombineFile for these causes: telemetry._run_cause_findings, every
// cause's finding for a run, and the removal of the function of a cause no longer registered.
func Combine(names []string) string {
	return patterns.Dispatcher{
		Comment: `-- _run_cause_findings is every registered cause's finding for a run, from its account
-- (p_account: telemetry._run_causes), in no order: telemetry._run_findings_json ranks them.`,
		Header: `CREATE OR REPLACE FUNCTION telemetry._run_cause_findings(p_run_id bigint, p_account jsonb)
RETURNS TABLE (finding text, severity text, summary text, evidence jsonb, recommendation text, explained_seconds numeric, children jsonb)`,
		Prefix: "_finding_",
		Args:   "p_run_id, p_account",
		Empty:  "SELECT NULL::text, NULL::text, NULL::text, NULL::jsonb, NULL::text, NULL::numeric, NULL::jsonb WHERE false",
		Kind:   "cause",
	}.Text("diagnosis/findings", names)
}
