package dashboards

import "fmt"

// The panel shapes the dashboards use, and their data sources, variables, annotations and
// links, as Grafana's JSON. A dashboard names a shape and fills in its title, unit,
// description and queries; everything else about the shape is here once.

// datasourceRef points at a data source through a dashboard's data-source variable, so a
// dashboard imports anywhere as it is.
type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

var (
	prometheus = datasourceRef{Type: "prometheus", UID: "${datasource}"}
	recorderDB = datasourceRef{Type: "grafana-postgresql-datasource", UID: "${recorder}"}
)

// Data-source variables: Grafana asks for the data source on import.
var (
	prometheusVariable = datasourceVariable{Name: "datasource", Label: "Prometheus", Type: "datasource", Query: prometheus.Type, Refresh: 1}
	recorderVariable   = datasourceVariable{Name: "recorder", Label: "Recorder (PostgreSQL)", Type: "datasource", Query: recorderDB.Type, Refresh: 1}
)

// instanceVariable picks the exporter the Prometheus queries filter on ($instance).
var instanceVariable = queryVariable{
	Name: "instance", Label: "Instance", Type: "query", Datasource: prometheus,
	Definition: "label_values(pgbatch_up, instance)",
	Query: prometheusVariableQuery{
		Query: "label_values(pgbatch_up, instance)",
		RefID: "PrometheusVariableQueryEditor-VariableQuery",
		Type:  1, // label values
	},
	Refresh: 2, Sort: 1,
}

// sqlVariable is a variable whose values a query on the recorder gives.
func sqlVariable(name, label, sql string) queryVariable {
	return queryVariable{Name: name, Label: label, Type: "query", Datasource: recorderDB, Definition: sql, Query: sql, Refresh: 1}
}

type datasourceVariable struct {
	Name    string     `json:"name"`
	Label   string     `json:"label"`
	Type    string     `json:"type"`
	Query   string     `json:"query"` // the data source's plugin
	Current struct{}   `json:"current"`
	Hide    int        `json:"hide"`
	Refresh int        `json:"refresh"`
	Regex   string     `json:"regex"`
	Options emptyArray `json:"options"`
}

// textVariable is a value the user types, with a default.
type textVariable struct {
	Name        string `json:"name"`
	Label       string `json:"label"`
	Description string `json:"description"`
	Type        string `json:"type"` // textbox
	Query       string `json:"query"`
	Current     struct {
		Text  string `json:"text"`
		Value string `json:"value"`
	} `json:"current"`
	Hide int `json:"hide"`
}

func textbox(name, label, description, value string) textVariable {
	v := textVariable{Name: name, Label: label, Description: description, Type: "textbox", Query: value}
	v.Current.Text, v.Current.Value = value, value
	return v
}

type queryVariable struct {
	Name       string        `json:"name"`
	Label      string        `json:"label,omitempty"`
	Type       string        `json:"type"`
	Datasource datasourceRef `json:"datasource"`
	Definition string        `json:"definition"`
	Query      any           `json:"query"`   // the SQL, or a prometheusVariableQuery
	Refresh    int           `json:"refresh"` // 1: on load, 2: on a time range change too
	Sort       int           `json:"sort"`    // 0: as the query returns them, 1: alphabetical
	Current    struct{}      `json:"current"`
	Hide       int           `json:"hide"` // 2: hidden, for links
	IncludeAll bool          `json:"includeAll"`
	Multi      bool          `json:"multi"`
	Options    emptyArray    `json:"options"`
	Regex      string        `json:"regex"`
}

type prometheusVariableQuery struct {
	Query string `json:"query"`
	RefID string `json:"refId"`
	Type  int    `json:"qryType"`
}

// batchRunsAnnotation marks the batches' runs from Prometheus, at step resolution.
func batchRunsAnnotation(step string) promAnnotation {
	return promAnnotation{
		Name: "Batch runs", Datasource: prometheus, Enable: true, IconColor: "purple",
		Expr:        `max by (batch) (pgbatch_batch_running{instance="$instance"} == 1)`,
		Step:        step,
		TitleFormat: "Batch {{batch}}", TextFormat: "running", TagKeys: "batch",
	}
}

// recordedRunsAnnotation marks the runs the recorder holds, from their start to their end.
func recordedRunsAnnotation(name, color string, enable bool) sqlAnnotation {
	return sqlAnnotationOf(name, color, enable, `SELECT started_at AS time, coalesce(ended_at, now()) AS timeend, batch || ' #' || run_id AS text, status AS tags
FROM telemetry.batch_runs WHERE started_at <= $__timeTo() AND coalesce(ended_at, now()) >= $__timeFrom()
  AND telemetry._run_times_ok(started_at, ended_at)`)
}

// sqlAnnotationOf is an annotation from a query on the recorder: time (and timeend for a
// region), text and tags columns.
func sqlAnnotationOf(name, color string, enable bool, sql string) sqlAnnotation {
	return sqlAnnotation{
		Name: name, Datasource: recorderDB, Enable: enable, IconColor: color, RawQuery: sql,
		Target: sqlTarget{RefID: "Anno", RawSQL: sql, Format: "table", RawQuery: true, EditorMode: "code"},
	}
}

// runStartsAnnotation and runEndsAnnotation mark each recorded run's begin and end as
// instants: a run's start and end lines even where its region would cover the range.
func runStartsAnnotation() sqlAnnotation {
	return sqlAnnotationOf("Run starts", "green", true, `SELECT started_at AS time, format('%s #%s began (%s)', batch, run_id, source) AS text, batch AS tags
FROM telemetry.batch_runs WHERE started_at BETWEEN $__timeFrom() AND $__timeTo()`)
}

func runEndsAnnotation() sqlAnnotation {
	return sqlAnnotationOf("Run ends", "red", true, `SELECT ended_at AS time,
  format('%s #%s %s after %s s', batch, run_id, status, round(extract(epoch FROM ended_at - started_at)::numeric, 1)) AS text, batch AS tags
FROM telemetry.batch_runs WHERE ended_at BETWEEN $__timeFrom() AND $__timeTo()`)
}

// builtInAnnotation is Grafana's own: annotations and alerts made in Grafana.
type builtInAnnotation struct{}

func (builtInAnnotation) MarshalJSON() ([]byte, error) {
	return []byte(`{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": true, "hide": true, ` +
		`"iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}`), nil
}

type promAnnotation struct {
	Name            string        `json:"name"`
	Datasource      datasourceRef `json:"datasource"`
	Enable          bool          `json:"enable"`
	Hide            bool          `json:"hide"`
	IconColor       string        `json:"iconColor"`
	Expr            string        `json:"expr"`
	Step            string        `json:"step"`
	TitleFormat     string        `json:"titleFormat"`
	TextFormat      string        `json:"textFormat"`
	TagKeys         string        `json:"tagKeys"`
	UseValueForTime bool          `json:"useValueForTime"` // the value is the event's time in ms
}

type sqlAnnotation struct {
	Name       string        `json:"name"`
	Datasource datasourceRef `json:"datasource"`
	Enable     bool          `json:"enable"`
	Hide       bool          `json:"hide"`
	IconColor  string        `json:"iconColor"`
	RawQuery   string        `json:"rawQuery"`
	Target     sqlTarget     `json:"target"`
}

// dashboardsLink is the drop-down of every pg-batch-exporter dashboard.
func dashboardsLink(includeVars bool) dashboardsLinkModel {
	return dashboardsLinkModel{Title: "pg-batch-exporter", Type: "dashboards", Tags: []string{"pg-batch-exporter"}, AsDropdown: true, KeepTime: true, IncludeVars: includeVars}
}

type dashboardsLinkModel struct {
	Title       string   `json:"title"`
	Type        string   `json:"type"`
	Tags        []string `json:"tags"`
	AsDropdown  bool     `json:"asDropdown"`
	KeepTime    bool     `json:"keepTime"`
	IncludeVars bool     `json:"includeVars"`
}

type urlLink struct {
	Title       string `json:"title"`
	Type        string `json:"type"` // "link"
	Icon        string `json:"icon"`
	TargetBlank bool   `json:"targetBlank"`
	KeepTime    bool   `json:"keepTime"`
	IncludeVars bool   `json:"includeVars"`
	Tooltip     string `json:"tooltip"`
	URL         string `json:"url"`
}

// Queries.

// promQuery is a PromQL query of a panel and its series' legend.
type promQuery struct {
	expr, legend string
}

func prom(expr, legend string) promQuery { return promQuery{expr, legend} }

// promTargets are a panel's PromQL queries, each over the whole range or, instant, at its
// end only.
func promTargets(instant bool, queries []promQuery) []any {
	var out []any
	for i, q := range queries {
		t := promTarget{RefID: refID(i), Datasource: prometheus, Expr: q.expr, LegendFormat: q.legend, EditorMode: "code", Instant: instant, Range: !instant}
		if instant {
			t.Format = "time_series"
		}
		out = append(out, t)
	}
	return out
}

// sqlTargets is a panel's query on the recorder; format is "table" or "time_series".
func sqlTargets(format, sql string) []any {
	return []any{sqlTarget{RefID: refID(0), Datasource: &recorderDB, RawSQL: sql, Format: format, RawQuery: true, EditorMode: "code"}}
}

// refID names a panel's i-th query: A, B, C...
func refID(i int) string { return string(rune('A' + i)) }

type promTarget struct {
	RefID        string        `json:"refId"`
	Datasource   datasourceRef `json:"datasource"`
	Expr         string        `json:"expr"`
	LegendFormat string        `json:"legendFormat"`
	EditorMode   string        `json:"editorMode"`
	Instant      bool          `json:"instant"`
	Range        bool          `json:"range"`
	Format       string        `json:"format,omitempty"`
}

type sqlTarget struct {
	RefID      string         `json:"refId"`
	Datasource *datasourceRef `json:"datasource,omitempty"` // an annotation's is the annotation's
	RawSQL     string         `json:"rawSql"`
	Format     string         `json:"format"`
	RawQuery   bool           `json:"rawQuery"`
	EditorMode string         `json:"editorMode"`
}

// Panels.

type panel struct {
	Type        string        `json:"type"`
	ID          int           `json:"id"`
	Title       string        `json:"title"`
	TimeFrom    string        `json:"timeFrom,omitempty"` // the panel's own relative range, e.g. 28d
	Description string        `json:"description"`
	Datasource  datasourceRef `json:"datasource"`
	GridPos     gridPos       `json:"gridPos"`
	Targets     []any         `json:"targets"`
	FieldConfig fieldConfig   `json:"fieldConfig"`
	Options     any           `json:"options"`
}

// width sets how many of the dashboard's 24 columns the panel takes (all by default).
func (p panel) width(w int) panel {
	p.GridPos.W = w
	return p
}

func (p panel) height(h int) panel {
	p.GridPos.H = h
	return p
}

type fieldConfig struct {
	Defaults  fieldDefaults `json:"defaults"`
	Overrides []override    `json:"overrides"`
}

type fieldDefaults struct {
	Unit       string      `json:"unit"`
	Min        *float64    `json:"min,omitempty"`
	Color      *colorMode  `json:"color,omitempty"`
	Thresholds *thresholds `json:"thresholds,omitempty"`
	NoValue    string      `json:"noValue,omitempty"`
	Custom     any         `json:"custom,omitempty"` // seriesStyle for graphs, a map for tables
}

type colorMode struct {
	Mode string `json:"mode"`
}

type thresholds struct {
	Mode  string          `json:"mode"`
	Steps []thresholdStep `json:"steps"`
}

type thresholdStep struct {
	Color string   `json:"color"`
	Value *float64 `json:"value"` // nil: the base step, from minus infinity
}

// timeSeries is a line graph of PromQL queries over the range.
func timeSeries(title, unit, description string, queries ...promQuery) panel {
	return graph(title, unit, description, prometheus, promTargets(false, queries), seriesStyle{ShowPoints: "never"})
}

// sqlTimeSeries graphs a query on the recorder whose rows are snapshots or samples: a point
// each, joined across gaps.
func sqlTimeSeries(title, unit, description, sql string) panel {
	return graph(title, unit, description, recorderDB, sqlTargets("time_series", sql), seriesStyle{ShowPoints: "auto", SpanNulls: true})
}

func graph(title, unit, description string, ds datasourceRef, targets []any, style seriesStyle) panel {
	style.DrawStyle, style.LineWidth, style.FillOpacity = "line", 1, 10
	return panel{
		Type: "timeseries", Title: title, Description: description, Datasource: ds,
		GridPos: gridPos{W: gridWidth, H: 8}, Targets: targets,
		FieldConfig: fieldConfig{Defaults: fieldDefaults{Unit: unit, Custom: style}, Overrides: []override{}},
		Options:     seriesOptions,
	}
}

// overridden adds field overrides to a panel.
func (p panel) overridden(o ...override) panel {
	p.FieldConfig.Overrides = append(p.FieldConfig.Overrides, o...)
	return p
}

// lastDays shows the panel over the last n days whatever the dashboard's range.
func (p panel) lastDays(n int) panel {
	p.TimeFrom = fmt.Sprintf("%dd", n)
	return p
}

// points draws a graph's values as points: one per run, not a line through them.
func (p panel) points() panel {
	style := p.FieldConfig.Defaults.Custom.(seriesStyle)
	style.DrawStyle, style.ShowPoints, style.SpanNulls, style.PointSize = "points", "always", false, 6
	p.FieldConfig.Defaults.Custom = style
	return p
}

// dashedSeries draws the series whose names match the regular expression dashed: a
// reference, such as the usual duration, beside the measured series.
func dashedSeries(regexp string) override {
	return override{matcher{"byRegexp", regexp}, []property{{"custom.lineStyle", map[string]any{"fill": "dash", "dash": []int{10, 10}}}}}
}

// colorSeries gives the series whose names match the regular expression a fixed colour.
func colorSeries(regexp, color string) override {
	return override{matcher{"byRegexp", regexp}, []property{{"color", map[string]string{"mode": "fixed", "fixedColor": color}}}}
}

// stacked stacks a graph's series, for parts of a whole such as sessions by wait.
func (p panel) stacked() panel {
	style := p.FieldConfig.Defaults.Custom.(seriesStyle)
	style.FillOpacity, style.Stacking = 60, &stacking{Mode: "normal", Group: "A"}
	p.FieldConfig.Defaults.Custom = style
	return p
}

type seriesStyle struct {
	DrawStyle   string    `json:"drawStyle"`
	LineWidth   int       `json:"lineWidth"`
	FillOpacity int       `json:"fillOpacity"`
	ShowPoints  string    `json:"showPoints"`
	SpanNulls   bool      `json:"spanNulls"`
	PointSize   int       `json:"pointSize,omitempty"`
	Stacking    *stacking `json:"stacking,omitempty"`
}

type stacking struct {
	Mode  string `json:"mode"`
	Group string `json:"group"`
}

// seriesOptions: a legend table with each series' max and mean, a tooltip of every series.
var seriesOptions = map[string]any{
	"legend":  map[string]any{"displayMode": "table", "placement": "bottom", "calcs": []string{"max", "mean"}},
	"tooltip": map[string]any{"mode": "multi", "sort": "desc"},
}

// stat is one number: an instant PromQL query at the end of the range.
func stat(title, unit, description, expr string) panel {
	th := &thresholds{Mode: "absolute", Steps: []thresholdStep{{Color: "text"}}} // the text's colour whatever the value
	return panel{
		Type: "stat", Title: title, Description: description, Datasource: prometheus,
		GridPos: gridPos{W: 4, H: 4}, Targets: promTargets(true, []promQuery{prom(expr, "__auto")}),
		FieldConfig: fieldConfig{
			Defaults:  fieldDefaults{Unit: unit, Color: &colorMode{"thresholds"}, Thresholds: th, NoValue: "no data"},
			Overrides: []override{},
		},
		Options: map[string]any{
			"reduceOptions": lastValue,
			"colorMode":     "value", "graphMode": "none", "justifyMode": "auto", "textMode": "value", "orientation": "auto",
		},
	}
}

// barGauge is horizontal bars, one per series of an instant PromQL query at the end of the
// range.
func barGauge(title, unit, description string, query promQuery) panel {
	zero := 0.0
	return panel{
		Type: "bargauge", Title: title, Description: description, Datasource: prometheus,
		GridPos: gridPos{W: gridWidth, H: 8}, Targets: promTargets(true, []promQuery{query}),
		FieldConfig: fieldConfig{
			Defaults:  fieldDefaults{Unit: unit, Min: &zero, Color: &colorMode{"continuous-BlYlRd"}},
			Overrides: []override{},
		},
		Options: map[string]any{
			"reduceOptions": lastValue,
			"orientation":   "horizontal", "displayMode": "gradient", "showUnfilled": true, "valueMode": "color",
		},
	}
}

// lastValue reduces each series to its last value.
var lastValue = map[string]any{"calcs": []string{"lastNotNull"}, "fields": "", "values": false}

// table shows a query on the recorder as it returns it; the overrides set its columns'
// units and links.
func table(title, description, sql string, overrides ...override) panel {
	if overrides == nil {
		overrides = []override{}
	}
	return panel{
		Type: "table", Title: title, Description: description, Datasource: recorderDB,
		GridPos: gridPos{W: gridWidth, H: 8}, Targets: sqlTargets("table", sql),
		FieldConfig: fieldConfig{
			Defaults: fieldDefaults{
				Unit:   "none",
				Custom: map[string]any{"align": "auto", "cellOptions": map[string]any{"type": "auto"}},
			},
			Overrides: overrides,
		},
		Options: map[string]any{"showHeader": true, "cellHeight": "sm", "footer": map[string]any{"show": false}},
	}
}

// override sets a property of the table columns its matcher picks.
type override struct {
	Matcher    matcher    `json:"matcher"`
	Properties []property `json:"properties"`
}

type matcher struct {
	ID      string `json:"id"` // byName, byRegexp
	Options string `json:"options"`
}

type property struct {
	ID    string `json:"id"`
	Value any    `json:"value"`
}

// columnsUnit sets the unit of the columns whose names match the regular expression.
func columnsUnit(regexp, unit string) override {
	return override{matcher{"byRegexp", regexp}, []property{{"unit", unit}}}
}

// columnLink makes each cell of the column a link; the URL can use the row's fields
// (${__data.fields.<name>}).
func columnLink(column, title, url string) override {
	return override{matcher{"byName", column}, []property{{"links", []map[string]string{{"title": title, "url": url}}}}}
}
