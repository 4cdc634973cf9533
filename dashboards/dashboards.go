// Package dashboards is the source of the Grafana dashboards in this folder: each
// dashboard is a Go value (overview.go, batchwindow.go, recorder.go) built from the panel
// shapes in panels.go, and go generate writes the JSON files users import. The JSON files
// stay committed; TestGeneratedInSync fails when they no longer match their source.
package dashboards

//go:generate go run ./internal/gen

import (
	"bytes"
	"encoding/json"
)

// all are the dashboards this folder holds, each with its file name.
var all = []dashboard{overview, batchWindow, recorderDashboard}

// Files returns each dashboard's JSON by file name, as go generate writes it.
func Files() (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, d := range all {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // the SQL's <= and the links' & stay readable
		enc.SetIndent("", "  ")
		if err := enc.Encode(d.model()); err != nil {
			return nil, err
		}
		out[d.file] = b.Bytes()
	}
	return out, nil
}

// dashboard describes one dashboard: what is not common to all three.
type dashboard struct {
	file        string
	uid         string // links between the dashboards and users' bookmarks rely on it
	title       string // after "pg-batch-exporter / "
	description string
	from        string // the default time range, from this to now
	variables   []any  // datasourceVariable, queryVariable
	annotations []any  // promAnnotation, sqlAnnotation; Grafana's built-in one comes first
	links       []any  // urlLink, dashboardsLink
	rows        []row
}

// row is a row of panels: they flow left to right and wrap at the dashboard's width.
type row struct {
	title  string
	panels []panel
}

// gridWidth is Grafana's dashboard width in grid units.
const gridWidth = 24

// model is the dashboard as Grafana's JSON: panels numbered and laid out in order.
func (d dashboard) model() dashboardModel {
	m := dashboardModel{
		UID:           d.uid,
		Title:         "pg-batch-exporter / " + d.title,
		Description:   d.description,
		Tags:          []string{"pg-batch-exporter", "postgresql"},
		Editable:      true,
		GraphTooltip:  1, // shared crosshair
		SchemaVersion: 39,
		Version:       1,
		Timezone:      "browser",
		Time:          timeRange{From: d.from, To: "now"},
		Templating:    list{d.variables},
		Annotations:   list{append([]any{builtInAnnotation{}}, d.annotations...)},
		Links:         d.links,
	}
	id, y := 0, 0
	for _, r := range d.rows {
		id++
		m.Panels = append(m.Panels, rowModel{Type: "row", Title: r.title, ID: id, GridPos: gridPos{Y: y, W: gridWidth, H: 1}})
		y++
		x, lineHeight := 0, 0
		for _, p := range r.panels {
			if x+p.GridPos.W > gridWidth {
				x, y, lineHeight = 0, y+lineHeight, 0
			}
			id++
			p.ID, p.GridPos.X, p.GridPos.Y = id, x, y
			m.Panels = append(m.Panels, p)
			x += p.GridPos.W
			lineHeight = max(lineHeight, p.GridPos.H)
		}
		y += lineHeight
	}
	return m
}

type dashboardModel struct {
	UID                  string    `json:"uid"`
	Title                string    `json:"title"`
	Description          string    `json:"description"`
	Tags                 []string  `json:"tags"`
	Editable             bool      `json:"editable"`
	GraphTooltip         int       `json:"graphTooltip"`
	SchemaVersion        int       `json:"schemaVersion"`
	Version              int       `json:"version"`
	Timezone             string    `json:"timezone"`
	Time                 timeRange `json:"time"`
	Refresh              string    `json:"refresh"`
	FiscalYearStartMonth int       `json:"fiscalYearStartMonth"`
	LiveNow              bool      `json:"liveNow"`
	WeekStart            string    `json:"weekStart"`
	Templating           list      `json:"templating"`
	Annotations          list      `json:"annotations"`
	Links                []any     `json:"links"`
	Panels               []any     `json:"panels"` // rowModel, panel
}

type timeRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

type list struct {
	List []any `json:"list"`
}

type gridPos struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

// rowModel is an open row: its panels follow it in the dashboard's list, not inside it.
type rowModel struct {
	Type      string     `json:"type"`
	Title     string     `json:"title"`
	ID        int        `json:"id"`
	Collapsed bool       `json:"collapsed"`
	Panels    emptyArray `json:"panels"`
	GridPos   gridPos    `json:"gridPos"`
}

// emptyArray is a field Grafana wants as [] (it fills the array itself at run time).
type emptyArray struct{}

func (emptyArray) MarshalJSON() ([]byte, error) { return []byte("[]"), nil }
