// Package exporter serves the runner's collections over HTTP: the landing page and
// /metrics, whole or one tier at a time (?tier=sample, ?tier=snapshot).
package exposition

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/pg-batch-exporter/pg-batch-exporter/report"

	pgcollectors "github.com/pg-batch-exporter/pg-batch-exporter/collectors"
)

// Program is the exporter's name in build info and on the landing page.
const Program = "pg_batch_exporter"

// ReportPath is where the batch report pages are served.
const ReportPath = "/report"

// Options configure the handler.
type Options struct {
	MetricsPath string
	Logger      *slog.Logger
	// Extra collectors served with every tier (the recorder's and batch metrics).
	Extra []prometheus.Collector
	// Report, when the recorder is on, serves the batch report pages under /report; the
	// landing page then links to the recent runs. Without it /report says what it needs.
	Report http.Handler
	// NoReport (--no-web.report) serves nothing under /report: the port shows no query text.
	NoReport bool
}

// Handler serves the landing page at / and the metrics at o.MetricsPath.
func Handler(r *pgcollectors.Runner, o Options) (http.Handler, error) {
	views := map[string]*view{}
	for name, tiers := range map[string][]pgcollectors.Tier{
		"":                                {pgcollectors.TierSample, pgcollectors.TierSnapshot},
		string(pgcollectors.TierSample):   {pgcollectors.TierSample},
		string(pgcollectors.TierSnapshot): {pgcollectors.TierSnapshot},
	} {
		live := append([]prometheus.Collector{versioncollector.NewCollector(Program)}, o.Extra...)
		if name == "" {
			live = append(live, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		}
		views[name] = newView(r, tiers, o.Logger, live...)
	}
	r.Subscribe(func(*pgcollectors.Collection) {
		for _, v := range views {
			v.refresh()
		}
	})
	mux := http.NewServeMux()
	mux.HandleFunc(o.MetricsPath, func(w http.ResponseWriter, req *http.Request) {
		tier := req.URL.Query().Get("tier")
		v, ok := views[tier]
		if !ok {
			http.Error(w, fmt.Sprintf("unknown tier %q: use sample or snapshot, or no tier for both", tier), http.StatusBadRequest)
			return
		}
		v.ServeHTTP(w, req)
	})
	if o.MetricsPath != "/" {
		links := []web.LandingLinks{
			{Address: o.MetricsPath, Text: "Metrics", Description: "Both tiers"},
			{Address: o.MetricsPath + "?tier=sample", Text: "Sample tier", Description: "Sessions, waits, locks, progress, replication lag"},
			{Address: o.MetricsPath + "?tier=snapshot", Text: "Snapshot tier", Description: "WAL, checkpoints, bgwriter, I/O, databases, slots, tables"},
		}
		if o.Report != nil {
			links = append(links, web.LandingLinks{Address: ReportPath, Text: "Batch runs",
				Description: "Recent runs, each diagnosed against the batch's previous normal runs, with charts"})
		}
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "pg-batch-exporter",
			Description: "Why did tonight's batch take 60 minutes instead of 10? PostgreSQL telemetry for batch variance.",
			Version:     version.Info(),
			Links:       links,
			// pprof is not served: no links to pages that answer 404.
			Profiling: "false",
		})
		if err != nil {
			return nil, err
		}
		mux.Handle("/", landing)
	}
	if o.NoReport {
		return mux, nil
	}
	reports := o.Report
	if reports == nil {
		reports = report.Disabled()
	}
	mux.Handle(ReportPath, reports)
	mux.Handle(ReportPath+"/", reports)
	return mux, nil
}
