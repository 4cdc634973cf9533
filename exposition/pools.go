package exposition

import (
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
)

// ConnectionPools are the exporter's pools by purpose. --postgres.max-connections bounds only
// the collecting pool; the recorder, the batch tracker and the report pages each add their
// own, so the total a DBA must allow is their sum, reported here.
type ConnectionPools struct {
	mu    sync.Mutex
	names []string
	pools map[string]*pgxpool.Pool
}

var (
	connectionsDesc = prometheus.NewDesc(prometheus.BuildFQName(collectors.Namespace, "exporter", "connections"),
		"Connections the exporter's pool holds open now, by pool (collect: the monitored database, bounded by --postgres.max-connections; recorder, batch, report: the recorder's database).",
		[]string{"pool"}, nil)
	connectionsMaxDesc = prometheus.NewDesc(prometheus.BuildFQName(collectors.Namespace, "exporter", "connections_max"),
		"Connections the pool may open at most; their sum is what the exporter may hold in all.",
		[]string{"pool"}, nil)
)

// NewConnectionPools reports no pool until Add.
func NewConnectionPools() *ConnectionPools {
	return &ConnectionPools{pools: map[string]*pgxpool.Pool{}}
}

// Add reports a pool under its name.
func (c *ConnectionPools) Add(name string, p *pgxpool.Pool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names = append(c.names, name)
	c.pools[name] = p
}

func (c *ConnectionPools) Describe(ch chan<- *prometheus.Desc) {
	ch <- connectionsDesc
	ch <- connectionsMaxDesc
}

func (c *ConnectionPools) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range c.names {
		st := c.pools[name].Stat()
		ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(st.TotalConns()), name)
		ch <- prometheus.MustNewConstMetric(connectionsMaxDesc, prometheus.GaugeValue, float64(st.MaxConns()), name)
	}
}
