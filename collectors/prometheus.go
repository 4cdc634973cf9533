package collectors

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// readsOtherSessions are the collectors that read other sessions' activity, which a role
// without pg_read_all_stats does not see.
var readsOtherSessions = []string{"sessions", "waits", "locks", "progress", "replication", "statements", "xmin_horizon"}

const reasonNoReadAllStats = "no_pg_read_all_stats"

var (
	upDesc                = newDesc("up", "1 when the last attempt to reach PostgreSQL succeeded.")
	serverVersionDesc     = newDesc("server_version_num", "server_version_num of the monitored server.")
	collectorOKDesc       = newDesc("collector_success", "1 when the collector's last run succeeded.", "collector")
	collectorTimeDesc     = newDesc("collector_duration_seconds", "How long the collector's last run took.", "collector")
	collectorDegradedDesc = newDesc("collector_degraded", "1 when the collector ran but could not see all it reads, by reason "+
		"(no_pg_read_all_stats: other roles' sessions are hidden from the role; grant pg_monitor).", "collector", "reason")
	tierLastSuccessDesc = newDesc("tier_last_success_timestamp_seconds", "When the tier last collected successfully.", "tier")
)

// Metrics returns a Prometheus collector serving the latest collections of the given tiers
// from memory: scraping it never touches the database. It is TierMetrics and LiveMetrics
// together.
func (r *Runner) Metrics(tiers ...Tier) prometheus.Collector {
	return &runnerMetrics{r: r, tiers: tiers, tierData: true, live: true}
}

// TierMetrics serves what the collectors of the tiers read: it changes only when a tier
// collects, so its exposition can be encoded once per collection (see Runner.Latest).
func (r *Runner) TierMetrics(tiers ...Tier) prometheus.Collector {
	return &runnerMetrics{r: r, tiers: tiers, tierData: true}
}

// LiveMetrics serves what changes between collections and is small: pgbatch_up, the
// collectors' success and duration, and the wait sampler's counters.
func (r *Runner) LiveMetrics(tiers ...Tier) prometheus.Collector {
	return &runnerMetrics{r: r, tiers: tiers, live: true}
}

type runnerMetrics struct {
	r              *Runner
	tiers          []Tier
	tierData, live bool
}

// Describe sends nothing: the families present depend on the server version (an unchecked collector).
func (m *runnerMetrics) Describe(chan<- *prometheus.Desc) {}

func (m *runnerMetrics) Collect(ch chan<- prometheus.Metric) {
	if m.live {
		m.r.emitLive(ch, m.tiers)
	}
	if m.tierData {
		for _, t := range m.tiers {
			if c := m.r.Latest(t); c != nil {
				for _, n := range m.r.collectors[t] {
					n.Emit(c, ch)
				}
			}
		}
	}
}

func (r *Runner) emitLive(ch chan<- prometheus.Metric, tiers []Tier) {
	st := r.status()
	gauge(ch, upDesc, boolValue(st.up))
	if st.server.VersionNum > 0 {
		gauge(ch, serverVersionDesc, float64(st.server.VersionNum))
	}
	for _, t := range tiers {
		if ts, ok := st.lastSuccess[t]; ok {
			gauge(ch, tierLastSuccessDesc, float64(ts.UnixNano())/1e9, string(t))
		}
		c := r.Latest(t)
		if c == nil {
			continue
		}
		for _, res := range c.Results {
			gauge(ch, collectorOKDesc, boolValue(res.Err == nil), res.Collector)
			gauge(ch, collectorTimeDesc, res.Duration.Seconds(), res.Collector)
			if slices.Contains(readsOtherSessions, res.Collector) {
				gauge(ch, collectorDegradedDesc, boolValue(!c.Server.ReadsAllStats), res.Collector, reasonNoReadAllStats)
			}
		}
		if t == TierSample && r.waits != nil {
			r.waits.Emit(ch)
			ok, took := r.waits.lastResult()
			gauge(ch, collectorOKDesc, boolValue(ok), "waits")
			gauge(ch, collectorTimeDesc, took.Seconds(), "waits")
			gauge(ch, collectorDegradedDesc, boolValue(!c.Server.ReadsAllStats), "waits", reasonNoReadAllStats)
		}
	}
}
