package recorder

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// The recorder's database stopped for a while and started again: the collections taken
// meanwhile are buffered, then all written in order, none twice; past the bound the oldest
// are dropped and counted.
func TestRecorderDatabaseOutage(t *testing.T) {
	monitored := pgtest.Start(t, pgtest.Versions()[0])
	store := pgtest.StartWith(t, pgtest.Versions()[0], pgtest.Options{Private: true})
	e := newEnv(t, monitored)
	// Record into the private server instead of the monitored database.
	storeDSN := store.NewDatabase(t)
	e.pool = newPool(t, storeDSN, false, "pg-batch-exporter recorder")
	ctx := context.Background()
	if err := schema.Migrate(ctx, e.pool); err != nil {
		t.Fatal(err)
	}
	e.rec = New(Options{Pool: e.pool, BufferRows: 100000})
	e.runner.Subscribe(e.rec.Consume)

	e.record(collectors.TierSample)
	store.Stop(t)
	const during = 3
	for range during {
		if _, err := e.runner.Collect(ctx, collectors.TierSample); err != nil {
			t.Fatal(err)
		}
		if err := e.rec.drain(ctx); err == nil {
			t.Fatal("write succeeded with the recorder's database down")
		}
	}
	buffered := e.rec.Buffered()
	if buffered == 0 {
		t.Fatal("nothing buffered during the outage")
	}
	store.Restart(t)
	if err := e.rec.drain(ctx); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	// A retry of an already stored collection (commit acknowledged lost) writes nothing.
	c := e.runner.Latest(collectors.TierSample)
	e.rec.Consume(c)
	if err := e.rec.drain(ctx); err != nil {
		t.Fatal(err)
	}
	conn := (&env{t: t, srv: store, dsn: storeDSN}).conn()
	rows := pgtest.Query(t, conn, `SELECT count(*) AS n, count(DISTINCT captured_at) AS distinct_at FROM telemetry.samples`)
	if rows[0]["n"] != int64(1+during) || rows[0]["distinct_at"] != int64(1+during) {
		t.Errorf("samples after the outage: %v, want %d, none twice", rows, 1+during)
	}
	if e.rec.Buffered() != 0 || value(t, e.rec.written.WithLabelValues("samples")) != 1+during {
		t.Errorf("buffered %d, written %v", e.rec.Buffered(), value(t, e.rec.written.WithLabelValues("samples")))
	}

	// A bound smaller than two collections keeps only the newest; the dropped rows are counted.
	small := New(Options{Pool: e.pool, BufferRows: buffered / during})
	for range 2 {
		small.Consume(c)
	}
	if got := value(t, small.dropped.WithLabelValues("samples")); got != 1 {
		t.Errorf("dropped samples: %v, want 1", got)
	}
}

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
