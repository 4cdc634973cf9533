package collectors

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// PlanExecution is one plan auto_explain logged (auto_explain.log_format = json): the
// statement's shape, its estimated and actual rows per node and the settings it ran with.
type PlanExecution struct {
	LoggedAt        time.Time
	PID             int32
	ApplicationName string
	User            string
	Database        string
	// QueryID is the session's top-level statement (jsonlog's query_id, stderr's %Q): the
	// statement pg_stat_statements and the run's findings name. nil: not logged.
	QueryID *int64
	// PlanQueryID is the planned statement's own ("Query Identifier", with
	// auto_explain.log_verbose): a nested statement's differs from QueryID.
	PlanQueryID *int64
	DurationMs  float64
	QueryText   string
	Shape       PlanShape
	// Rows are per node of Shape.Nodes, in the same order.
	Rows []NodeRows
	// Settings are the planner settings that differ from their defaults
	// (auto_explain.log_settings), as the plan's "Settings".
	Settings map[string]string
	// WorkersPlanned and WorkersLaunched sum the plan's Gather nodes.
	WorkersPlanned, WorkersLaunched int
}

// PlanShape is what tells two plans apart: node types, relations, indexes and join order,
// without the numbers.
type PlanShape struct {
	Hash  int64
	Nodes []PlanNode // depth-first, each node before its children
}

// PlanNode is one node of a plan's shape.
type PlanNode struct {
	Depth    int    `json:"depth"`
	Type     string `json:"node"`
	Join     string `json:"join,omitempty"`
	Strategy string `json:"strategy,omitempty"`
	Relation string `json:"relation,omitempty"`
	Index    string `json:"index,omitempty"`
	// Parent is how the node feeds its parent (Outer, Inner, InitPlan, SubPlan): it fixes
	// which side of a join a relation is on.
	Parent string `json:"parent,omitempty"`
}

// NodeRows are a node's rows: the planner's estimate and what it produced, both per loop
// (as EXPLAIN shows them), and its loops. Actual is nil where the node never ran.
type NodeRows struct {
	Estimated float64
	Actual    *float64
	Loops     float64
}

// MarshalJSON writes [estimated, actual, loops]: a plan of 50 nodes logged a thousand times
// a day stays small.
func (r NodeRows) MarshalJSON() ([]byte, error) {
	return json.Marshal([]any{r.Estimated, r.Actual, r.Loops})
}

// explainNode is the part of EXPLAIN's JSON node that the shape and rows read.
type explainNode struct {
	NodeType        string        `json:"Node Type"`
	Strategy        string        `json:"Strategy"`
	JoinType        string        `json:"Join Type"`
	Schema          string        `json:"Schema"`
	Relation        string        `json:"Relation Name"`
	Index           string        `json:"Index Name"`
	CTE             string        `json:"CTE Name"`
	Function        string        `json:"Function Name"`
	Parent          string        `json:"Parent Relationship"`
	PlanRows        float64       `json:"Plan Rows"`
	ActualRows      *float64      `json:"Actual Rows"`
	ActualLoops     float64       `json:"Actual Loops"`
	WorkersPlanned  int           `json:"Workers Planned"`
	WorkersLaunched int           `json:"Workers Launched"`
	Plans           []explainNode `json:"Plans"`
}

type explainOutput struct {
	QueryText string            `json:"Query Text"`
	QueryID   *int64            `json:"Query Identifier"`
	Plan      *explainNode      `json:"Plan"`
	Settings  map[string]string `json:"Settings"`
}

// autoExplainMessage is how auto_explain begins each message: "duration: 12.345 ms  plan:".
var autoExplainMessage = regexp.MustCompile(`^duration: ([0-9.]+) ms  plan:\n`)

// parsePlanMessage reads an auto_explain message into e; ok is false for any other message
// (or one auto_explain wrote in another format than json).
func parsePlanMessage(msg string, e *PlanExecution) (ok bool, err error) {
	m := autoExplainMessage.FindStringSubmatch(msg)
	if m == nil {
		return false, nil
	}
	body := strings.TrimSpace(msg[len(m[0]):])
	if !strings.HasPrefix(body, "{") {
		return false, nil // text, xml or yaml: not ours to read
	}
	e.DurationMs, _ = strconv.ParseFloat(m[1], 64)
	var out explainOutput
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		return false, fmt.Errorf("auto_explain plan of pid %d: %w", e.PID, err)
	}
	if out.Plan == nil {
		return false, errors.New("auto_explain plan without a Plan")
	}
	e.QueryText, e.PlanQueryID, e.Settings = out.QueryText, out.QueryID, out.Settings
	h := fnv.New64a()
	var walk func(n *explainNode, depth int)
	walk = func(n *explainNode, depth int) {
		node := PlanNode{Depth: depth, Type: n.NodeType, Join: n.JoinType, Strategy: n.Strategy, Index: n.Index, Parent: n.Parent,
			Relation: cmp.Or(n.Relation, n.CTE, n.Function)}
		if n.Schema != "" && n.Relation != "" { // log_verbose
			node.Relation = n.Schema + "." + n.Relation
		}
		fmt.Fprintf(h, "%d\x00%s\x00%s\x00%s\x00%s\x00%s\x00%s\x01", node.Depth, node.Type, node.Join, node.Strategy, node.Relation, node.Index, node.Parent)
		e.Shape.Nodes = append(e.Shape.Nodes, node)
		e.Rows = append(e.Rows, NodeRows{Estimated: n.PlanRows, Actual: n.ActualRows, Loops: n.ActualLoops})
		e.WorkersPlanned += n.WorkersPlanned
		e.WorkersLaunched += n.WorkersLaunched
		for i := range n.Plans {
			walk(&n.Plans[i], depth+1)
		}
	}
	walk(out.Plan, 0)
	e.Shape.Hash = int64(h.Sum64())
	return true, nil
}

// jsonlogEntry is the part of a jsonlog line (log_destination = jsonlog) a plan needs.
type jsonlogEntry struct {
	Timestamp       string `json:"timestamp"`
	User            string `json:"user"`
	Database        string `json:"dbname"`
	PID             int32  `json:"pid"`
	ApplicationName string `json:"application_name"`
	Message         string `json:"message"`
	QueryID         *int64 `json:"query_id"`
}

// logTimeLayout is the server's %m (and jsonlog's timestamp) without its zone abbreviation,
// which is read as log_timezone instead: Go cannot map an abbreviation to its offset.
const logTimeLayout = "2006-01-02 15:04:05.999"

// parseLogTime reads "2026-12-05 06:23:27.123 UTC" (or %t's seconds) in the log's zone.
func parseLogTime(s string, zone *time.Location) (time.Time, error) {
	if i := strings.LastIndexByte(s, ' '); i > 0 && strings.Count(s, " ") == 2 {
		s = s[:i]
	}
	return time.ParseInLocation(logTimeLayout, s, zone)
}

// parseJSONLogLine reads one jsonlog line; ok is false for a line that is no plan.
func parseJSONLogLine(line []byte, zone *time.Location, e *PlanExecution) (ok bool, err error) {
	if !bytes.Contains(line, []byte(`plan:\n`)) {
		return false, nil // most lines: not worth decoding
	}
	var l jsonlogEntry
	if err := json.Unmarshal(line, &l); err != nil {
		return false, fmt.Errorf("jsonlog line: %w", err)
	}
	*e = PlanExecution{PID: l.PID, ApplicationName: l.ApplicationName, User: l.User, Database: l.Database, QueryID: nonZero(l.QueryID)}
	if e.LoggedAt, err = parseLogTime(l.Timestamp, zone); err != nil {
		return false, fmt.Errorf("jsonlog timestamp: %w", err)
	}
	return parsePlanMessage(l.Message, e)
}

// nonZero drops a query_id of 0: none was computed.
func nonZero(id *int64) *int64 {
	if id == nil || *id == 0 {
		return nil
	}
	return id
}

// stderrPrefix reads the log_line_prefix of stderr log lines: the session's pid (%p),
// application_name (%a) and the time (%m, %n or %t) are required to tell the batch's
// sessions' plans and when they ran; user (%u), database (%d) and query id (%Q) are read
// where the prefix has them.
type stderrPrefix struct {
	re    *regexp.Regexp
	zone  *time.Location
	epoch bool // the time is %n
}

// prefixEscapes are the log_line_prefix escapes read, and what they match.
var prefixEscapes = map[byte]string{
	'p': `(?P<pid>\d+)`, 'a': `(?P<app>.*?)`, 'u': `(?P<user>.*?)`, 'd': `(?P<db>.*?)`, 'Q': `(?P<query_id>-?\d+)`,
	'm': `(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+(?: \S+)?)`, 't': `(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?: \S+)?)`,
	'n': `(?P<epoch>\d+\.\d+)`,
}

// ErrPrefixLacks says what the stderr log's log_line_prefix lacks for plans to be read.
var ErrPrefixLacks = errors.New("log_line_prefix lacks")

func newStderrPrefix(prefix string, zone *time.Location) (*stderrPrefix, error) {
	var b strings.Builder
	b.WriteString(`^`)
	seen := map[byte]bool{}
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		if c != '%' || i+1 == len(prefix) {
			b.WriteString(regexp.QuoteMeta(string(c)))
			continue
		}
		i++
		// %-10a and the like pad a value: the padding is spaces around it.
		for i < len(prefix) && (prefix[i] == '-' || prefix[i] >= '0' && prefix[i] <= '9') {
			i++
		}
		if i == len(prefix) {
			break
		}
		esc := prefix[i]
		switch pattern, known := prefixEscapes[esc]; {
		case esc == '%':
			b.WriteString(`%`)
		case known && !seen[timeGroup(esc)]:
			seen[timeGroup(esc)] = true
			b.WriteString(` *` + pattern + ` *`)
		default:
			b.WriteString(`.*?`)
		}
	}
	var lacks []string
	if !seen['p'] {
		lacks = append(lacks, "%p (the session's pid)")
	}
	if !seen['a'] {
		lacks = append(lacks, "%a (its application_name)")
	}
	if !seen['m'] {
		lacks = append(lacks, "%m, %n or %t (the time)")
	}
	if len(lacks) > 0 {
		return nil, fmt.Errorf("%w %s, which reading the batch's plans from a stderr log requires (log_line_prefix = %q; e.g. '%%m [%%p] app=%%a db=%%d user=%%u query=%%Q ')",
			ErrPrefixLacks, strings.Join(lacks, " and "), prefix)
	}
	b.WriteString(`[A-Z0-9]+:  `)
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, err
	}
	return &stderrPrefix{re: re, zone: zone, epoch: !strings.Contains(re.String(), "?P<time>")}, nil
}

// timeGroup makes the three time escapes one group: the first one read.
func timeGroup(esc byte) byte {
	if esc == 't' || esc == 'n' {
		return 'm'
	}
	return esc
}

// parse reads one stderr entry (its first line and the tab-indented lines after it); ok is
// false for an entry that is no plan.
func (p *stderrPrefix) parse(entry []byte, e *PlanExecution) (ok bool, err error) {
	if !bytes.Contains(entry, []byte("plan:\n")) {
		return false, nil
	}
	m := p.re.FindSubmatchIndex(entry)
	if m == nil {
		return false, nil
	}
	*e = PlanExecution{}
	group := func(name string) string {
		i := p.re.SubexpIndex(name)
		if i < 0 || m[2*i] < 0 {
			return ""
		}
		return string(entry[m[2*i]:m[2*i+1]])
	}
	pid, _ := strconv.ParseInt(group("pid"), 10, 32)
	e.PID, e.ApplicationName, e.User, e.Database = int32(pid), group("app"), group("user"), group("db")
	if q, err := strconv.ParseInt(group("query_id"), 10, 64); err == nil {
		e.QueryID = nonZero(&q)
	}
	if p.epoch {
		secs, _ := strconv.ParseFloat(group("epoch"), 64)
		e.LoggedAt = time.UnixMicro(int64(secs * 1e6))
	} else if e.LoggedAt, err = parseLogTime(group("time"), p.zone); err != nil {
		return false, fmt.Errorf("stderr log time: %w", err)
	}
	// The message's continuation lines are tab-indented.
	msg := strings.ReplaceAll(string(entry[m[1]:]), "\n\t", "\n")
	return parsePlanMessage(msg, e)
}
