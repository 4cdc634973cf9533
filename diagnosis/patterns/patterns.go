// Package patterns holds the window diagnosis patterns, one folder each: <name>/pattern.sql
// (its thresholds and its rule, the function telemetry._pattern_<name>), <name>/measures.sql
// where it has one (what diagnose_run compares of it: its measures of a window and the wait
// events it owns), <name>/README.md (its page) and, where there is one,
// <name>/scenario_test.go (a batch with that cause injected). Package schema applies the
// patterns after the diagnosis definitions (schema/README.md), and then Combine's
// findings.sql: telemetry._diagnose_findings, which telemetry._diagnose reads, and the
// measures and wait events diagnose_run compares. A folder added here is a pattern of
// diagnose and diagnose_run, a folder removed is not. The package only embeds files, so that
// schema can import it.
package patterns

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"
)

// Files are the patterns' folders.
//
//go:embed */pattern.sql */measures.sql
var Files embed.FS

// RuleFile is the file of a pattern's folder that defines its thresholds and its rule.
const RuleFile = "pattern.sql"

// MeasuresFile is the file of a pattern's folder that declares what diagnose_run compares of
// it, either or both of: telemetry._measures_<name>(p_start_time, p_end_time,
// p_snapshot_start, p_server, p_shared), its measures of a window (measure, unit, value), and
// telemetry._waits_<name>(), the wait events it owns (LIKE patterns of wait_event_type and
// wait_event, and the measure that sums them, NULL for a measure of each event). A folder
// without one has no measure.
const MeasuresFile = "measures.sql"

// CombineFile is the generated definition of telemetry._diagnose_findings, beside the
// folders (go generate ./...).
const CombineFile = "findings.sql"

var patternName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Pattern is one folder: its name, the pattern's and its functions' (telemetry._pattern_<name>),
// and what its MeasuresFile declares.
type Pattern struct {
	Name            string
	Measures, Waits bool
}

// Read is the patterns of fsys, in the order their files are applied: every folder with a
// pattern.sql, by name.
func Read(fsys fs.FS) ([]Pattern, error) {
	names, err := FolderNames(fsys, RuleFile)
	if err != nil {
		return nil, err
	}
	var out []Pattern
	for _, name := range names {
		p := Pattern{Name: name}
		measures, err := fs.ReadFile(fsys, path.Join(name, MeasuresFile))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, err
		default:
			p.Measures = strings.Contains(string(measures), "CREATE OR REPLACE FUNCTION telemetry._measures_"+name+"(")
			p.Waits = strings.Contains(string(measures), "CREATE OR REPLACE FUNCTION telemetry._waits_"+name+"(")
			if !p.Measures && !p.Waits {
				return nil, fmt.Errorf("%s/%s defines neither telemetry._measures_%s nor telemetry._waits_%s", name, MeasuresFile, name, name)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// FolderNames are the folders of fsys that hold a ruleFile, by name: the rules of a generated
// dispatcher (the patterns here, the run causes of diagnosis/findings).
func FolderNames(fsys fs.FS, ruleFile string) ([]string, error) {
	files, err := fs.Glob(fsys, "*/"+ruleFile)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, f := range files {
		name := path.Dir(f)
		if !patternName.MatchString(name) {
			return nil, fmt.Errorf("folder %q: the name must be lower case letters, digits and _", name)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

// Union is selects as one query, or none where there are none.
func Union(selects []string, none string) string {
	if len(selects) == 0 {
		return none
	}
	return strings.Join(selects, "\n    UNION ALL ")
}

// DropRemoved is the statement that drops the functions of telemetry named like one of
// prefixes (each a LIKE pattern) but not in keep (quoted names): those of a folder removed.
func DropRemoved(prefixes, keep []string) string {
	var like []string
	for _, p := range prefixes {
		like = append(like, "p.proname LIKE '"+p+"'")
	}
	if len(keep) == 0 {
		keep = []string{"''"}
	}
	return `DO $$
DECLARE
    v_function regprocedure;
BEGIN
    FOR v_function IN
        SELECT p.oid FROM pg_catalog.pg_proc p
        WHERE p.pronamespace = 'telemetry'::regnamespace
          AND (` + strings.Join(like, " OR ") + `)
          AND p.proname NOT IN (` + strings.Join(keep, ", ") + `)
    LOOP
        EXECUTE format('DROP FUNCTION %s', v_function);
    END LOOP;
END
$$;
`
}

// Files are the pattern's definition files, in the order to apply them.
func (p Pattern) Files() []string {
	files := []string{path.Join(p.Name, RuleFile)}
	if p.Measures || p.Waits {
		files = append(files, path.Join(p.Name, MeasuresFile))
	}
	return files
}

// Combine is the text of CombineFile for these patterns: telemetry._diagnose_findings, every
// pattern's findings for a window; telemetry._window_pattern_measures and
// telemetry._wait_classes, every pattern's measures and wait events (diagnose_run's
// _window_measures compares them); and the removal of the functions of a pattern no longer
// registered (its folder removed).
func Combine(patterns []Pattern) string {
	const args = "(p_start_time, p_end_time, p_snapshot_start, p_server, p_shared)"
	var findings, measures, waits, keep []string
	for _, p := range patterns {
		findings = append(findings, "SELECT * FROM telemetry._pattern_"+p.Name+args)
		keep = append(keep, "'_pattern_"+p.Name+"'")
		if p.Measures {
			measures = append(measures, fmt.Sprintf("SELECT m.measure, '%s', m.unit, m.value FROM telemetry._measures_%s%s m", p.Name, p.Name, args))
			keep = append(keep, "'_measures_"+p.Name+"'")
		}
		if p.Waits {
			waits = append(waits, fmt.Sprintf("SELECT '%s', w.wait_event_type, w.wait_event, w.measure FROM telemetry._waits_%s() w", p.Name, p.Name))
			keep = append(keep, "'_waits_"+p.Name+"'")
		}
	}
	return `-- Generated by diagnosis/patterns (go generate ./...) from the folders beside it: do not edit.
-- _diagnose_findings is every registered pattern's findings for a window (the server
-- resolved, p_shared its _diagnose_shared), in no order: telemetry._diagnose orders them and
-- adds the "window" row.
CREATE OR REPLACE FUNCTION telemetry._diagnose_findings(p_start_time timestamptz, p_end_time timestamptz,
                                                        p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (pattern text, severity text, score numeric, summary text, evidence jsonb, recommendation text)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    ` + Union(findings, "SELECT NULL::text, NULL::text, NULL::numeric, NULL::text, NULL::jsonb, NULL::text WHERE false") + `
$$;

-- _window_pattern_measures is every registered pattern's measures of a window (their
-- measures.sql), with the same arguments: what _window_measures compares besides the
-- duration and the waits.
CREATE OR REPLACE FUNCTION telemetry._window_pattern_measures(p_start_time timestamptz, p_end_time timestamptz,
                                                              p_snapshot_start timestamptz, p_server text, p_shared jsonb)
RETURNS TABLE (measure text, pattern text, unit text, value numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    ` + Union(measures, "SELECT NULL::text, NULL::text, NULL::text, NULL::numeric WHERE false") + `
$$;

-- _wait_classes are the wait events the registered patterns own (their measures.sql): LIKE
-- patterns of wait_event_type and wait_event, and the measure that sums their seconds (NULL:
-- each event is a measure of its own).
CREATE OR REPLACE FUNCTION telemetry._wait_classes()
RETURNS TABLE (pattern text, wait_event_type text, wait_event text, measure text)
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    ` + Union(waits, "SELECT NULL::text, NULL::text, NULL::text, NULL::text WHERE false") + `
$$;

-- A pattern whose folder was removed is not diagnosed or measured any more: its functions go
-- too (its thresholds stay, with an operator's values, should it come back).
` + DropRemoved([]string{`\_pattern\_%`, `\_measures\_%`, `\_waits\_%`}, keep)
}
