package collectors

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

func init() {
	// The wait sampler runs on its own schedule (--collector.waits.interval), not in a tier.
	register("waits", TierSample, true, "High-frequency wait sampler: session-seconds by wait event (ASH without an extension)", nil)
}

var waitSecondsDesc = newDesc("wait_event_seconds_total",
	"Session-seconds non-idle client sessions spent in each wait, sampled from pg_stat_activity; rate() is the average number of active sessions in that wait. Active sessions not waiting count as Running/CPU.",
	"wait_event_type", "wait_event")

// SQLSessionWaits is the wait sampler's query: non-idle client sessions (the exporter's own
// left out) by application and wait.
const SQLSessionWaits = `SELECT coalesce(application_name, ''), coalesce(wait_event_type, 'Running'), coalesce(wait_event, 'CPU'), count(*)::int
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND state NOT IN ('idle', 'idle in transaction', 'idle in transaction (aborted)')
	AND ` + sqlNotOwnSession + `
GROUP BY 1, 2, 3`

// SessionWait is one group of the wait sampler's reading.
type SessionWait struct {
	ApplicationName string
	WaitEventType   string
	WaitEvent       string
	Count           int
}

// WaitObserver sees each wait sample with the time it stands for (batch attribution uses it).
type WaitObserver func(at time.Time, span time.Duration, waits []SessionWait)

type waitKey struct{ typ, event string }

// WaitSampler turns frequent pg_stat_activity samples into session-seconds per wait: each
// sample's count times the time since the previous sample.
type WaitSampler struct {
	pool     *pgxpool.Pool
	interval time.Duration
	logger   *slog.Logger

	mu        sync.Mutex
	last      time.Time
	lastErr   error
	lastTook  time.Duration
	totals    map[waitKey]float64
	pending   map[waitKey]float64
	observers []WaitObserver
}

// NewWaitSampler samples through the pool every interval.
func NewWaitSampler(pool *pgxpool.Pool, interval time.Duration, logger *slog.Logger) *WaitSampler {
	return &WaitSampler{pool: pool, interval: interval, logger: logger,
		totals: map[waitKey]float64{}, pending: map[waitKey]float64{}}
}

// Observe adds an observer of every sample.
func (w *WaitSampler) Observe(o WaitObserver) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.observers = append(w.observers, o)
}

// Sample reads pg_stat_activity once and adds count × elapsed to each wait. The span a sample
// stands for is capped at two intervals, so an outage is not booked to the waits seen after it.
func (w *WaitSampler) Sample(ctx context.Context) error {
	start := time.Now()
	waits, err := w.read(ctx)
	now := time.Now()
	w.mu.Lock()
	w.lastErr, w.lastTook = err, now.Sub(start)
	if err != nil {
		w.mu.Unlock()
		return err
	}
	span := w.interval
	if !w.last.IsZero() {
		span = min(now.Sub(w.last), 2*w.interval)
	}
	w.last = now
	for _, s := range waits {
		k := waitKey{s.WaitEventType, s.WaitEvent}
		secs := float64(s.Count) * span.Seconds()
		w.totals[k] += secs
		w.pending[k] += secs
	}
	observers := w.observers
	w.mu.Unlock()
	for _, o := range observers {
		o(now, span, waits)
	}
	return nil
}

func (w *WaitSampler) read(ctx context.Context) ([]SessionWait, error) {
	rows, err := w.pool.Query(ctx, SQLSessionWaits)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoConnection, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (SessionWait, error) {
		var s SessionWait
		err := r.Scan(&s.ApplicationName, &s.WaitEventType, &s.WaitEvent, &s.Count)
		return s, err
	})
}

func (w *WaitSampler) lastResult() (ok bool, took time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr == nil && !w.last.IsZero(), w.lastTook
}

// TakeSinceLast returns the session-seconds accumulated since the previous call and starts anew.
func (w *WaitSampler) TakeSinceLast() []WaitTime {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := sortedWaits(w.pending)
	w.pending = map[waitKey]float64{}
	return out
}

// Totals returns the cumulative session-seconds per wait.
func (w *WaitSampler) Totals() []WaitTime {
	w.mu.Lock()
	defer w.mu.Unlock()
	return sortedWaits(w.totals)
}

func sortedWaits(m map[waitKey]float64) []WaitTime {
	out := make([]WaitTime, 0, len(m))
	for k, v := range m {
		out = append(out, WaitTime{WaitEventType: k.typ, WaitEvent: k.event, Seconds: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].WaitEventType != out[j].WaitEventType {
			return out[i].WaitEventType < out[j].WaitEventType
		}
		return out[i].WaitEvent < out[j].WaitEvent
	})
	return out
}

// Emit exports the cumulative totals, read live at scrape time.
func (w *WaitSampler) Emit(ch chan<- prometheus.Metric) {
	for _, t := range w.Totals() {
		counter(ch, waitSecondsDesc, t.Seconds, t.WaitEventType, t.WaitEvent)
	}
}
