package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/exposition"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
	"github.com/pg-batch-exporter/pg-batch-exporter/recorder"
	"github.com/pg-batch-exporter/pg-batch-exporter/schema"
)

// recorderFlags are the serve command's --recorder.* flags.
type recorderFlags struct {
	enabled    bool
	dsn        string
	retention  string
	buffer     int
	serverName string
	// requestMinInterval spaces the snapshots telemetry.request_snapshot() asks for.
	requestMinInterval time.Duration
	// shutdownTimeout bounds the flush of buffered collections on SIGTERM.
	shutdownTimeout time.Duration
	// statementsEvery spaces the statements stored between batches' boundaries.
	statementsEvery time.Duration
	// literalQueryText keeps sessions' query texts with their constants.
	literalQueryText bool
}

func addRecorderFlags(cmd collectors.FlagAdder) *recorderFlags {
	f := &recorderFlags{}
	cmd.Flag("recorder.enabled", "Record every collection in the telemetry schema (the seed's schema and SQL API).").BoolVar(&f.enabled)
	cmd.Flag("recorder.dsn", "Where to record: a PostgreSQL connection string. Default: the monitored database (--postgres.dsn).").StringVar(&f.dsn)
	cmd.Flag("recorder.retention", "How long recorded data is kept, e.g. 7d, 36h (whole days are dropped once older).").Default("7d").StringVar(&f.retention)
	cmd.Flag("recorder.buffer", "Rows held in memory while the recorder's database cannot be written; beyond, the oldest collections are dropped.").Default("100000").IntVar(&f.buffer)
	addDuration(cmd, "recorder.shutdown-timeout", "On SIGTERM or SIGINT, how long the recorder may keep writing the collections still buffered; it then logs how many it wrote and how many were lost.", "10s", &f.shutdownTimeout)
	cmd.Flag("recorder.server-name", "Names the monitored server in every recorded row. Default: its system identifier (give standbys recorded beside their primary a name of their own).").StringVar(&f.serverName)
	addDuration(cmd, "recorder.statements-interval", "How often pg_stat_statements is stored between batches' boundaries, which store every entry (0: at every snapshot, about 300 bytes per busy statement each time).", "1h", &f.statementsEvery)
	cmd.Flag("recorder.literal-query-text", "Record sessions' query texts (activity, lock and statement wait samples) as they ran, constants included. "+
		"Default: each constant is replaced by $n, as pg_stat_statements shows them, since the telemetry schema's readers may not read other roles' queries (docs/security.md).").BoolVar(&f.literalQueryText)
	addDuration(cmd, "recorder.request-min-interval", "Least time between two snapshots asked for by telemetry.request_snapshot(): requests within it are coalesced into one snapshot when it ends (0: no limit).", "5s", &f.requestMinInterval)
	return f
}

func (f *recorderFlags) parseRetention() (time.Duration, error) {
	d, err := model.ParseDuration(f.retention)
	if err != nil {
		return 0, fmt.Errorf("--recorder.retention: %w", err)
	}
	if time.Duration(d) < time.Hour {
		return 0, fmt.Errorf("--recorder.retention must be at least 1h, got %s", f.retention)
	}
	return time.Duration(d), nil
}

func (f *recorderFlags) validate() error {
	if !f.enabled {
		return nil
	}
	if _, err := f.parseRetention(); err != nil {
		return err
	}
	if f.buffer < 1 {
		return fmt.Errorf("--recorder.buffer must be at least 1, got %d", f.buffer)
	}
	if f.requestMinInterval < 0 {
		return fmt.Errorf("--recorder.request-min-interval must not be negative, got %s", f.requestMinInterval)
	}
	return nil
}

// options are the recorder's options from the flags (retention parsed): a flag's 0 interval
// is recorder.NoInterval.
func (f *recorderFlags) options(retention time.Duration) recorder.Options {
	none := func(d time.Duration) time.Duration { return cmp.Or(d, recorder.NoInterval) }
	return recorder.Options{ServerName: f.serverName, Retention: retention, BufferRows: f.buffer,
		RequestMinInterval: none(f.requestMinInterval), StatementsEvery: none(f.statementsEvery), LiteralQueryText: f.literalQueryText}
}

// start subscribes a recorder to the runner and runs it until ctx ends (boundary: called at
// each batch boundary it is told of): the schema is
// migrated first, retried while the database is unreachable (collections are buffered
// meanwhile). It returns the recorder's metrics, or nil when the recorder is off, and flush,
// to call once ctx has ended and the runner stopped: it writes what is still buffered
// within --recorder.shutdown-timeout and logs what it wrote and what was lost.
func (f *recorderFlags) start(ctx context.Context, conn *connFlags, runner *collectors.Runner, boundary func(), pools *exposition.ConnectionPools, logger *slog.Logger) (metrics []prometheus.Collector, flush func(), err error) {
	if !f.enabled {
		return nil, func() {}, nil
	}
	retention, err := f.parseRetention()
	if err != nil {
		return nil, nil, err
	}
	o := conn.options(false)
	if f.dsn != "" {
		o.DSN = f.dsn
	}
	o.MaxConns = 3 // one LISTENs, one writes, one spare
	o.ApplicationName = postgres.ApplicationName + " recorder"
	cfg, err := postgres.Config(o)
	if err != nil {
		return nil, nil, fmt.Errorf("--recorder.dsn: %w", err)
	}
	// The pool outlives ctx: the flush after it still writes.
	pool, err := postgres.NewPool(context.WithoutCancel(ctx), cfg)
	if err != nil {
		return nil, nil, err
	}
	pools.Add("recorder", pool)
	log := logger.With("component", "recorder")
	ro := f.options(retention)
	ro.Pool, ro.Trigger, ro.Boundary, ro.Logger = pool, runner.Trigger, boundary, log
	rec := recorder.New(ro)
	runner.Subscribe(rec.Consume)
	log.Info("recording", "to", postgres.Describe(cfg), "retention", f.retention)
	migrated := make(chan bool, 1)
	go func() {
		for {
			err := schema.Migrate(ctx, pool)
			if err == nil {
				break
			}
			log.Warn("cannot migrate the telemetry schema; retrying", "err", err)
			select {
			case <-ctx.Done():
				migrated <- false
				return
			case <-time.After(10 * time.Second):
			}
		}
		rec.Run(ctx)
		migrated <- true
	}()
	flush = func() {
		defer pool.Close()
		ok := <-migrated
		flushCtx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
		defer cancel()
		if !ok && rec.Buffered() > 0 {
			if err := schema.Migrate(flushCtx, pool); err != nil {
				log.Warn("cannot migrate the telemetry schema to flush the buffer", "err", err)
			}
		}
		done := rec.Flush(flushCtx)
		level := slog.LevelInfo
		if done.LostCollections > 0 {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "recorder flushed its buffer on shutdown", "written_collections", done.Collections,
			"lost_collections", done.LostCollections, "lost_rows", done.LostRows, "timeout", f.shutdownTimeout)
	}
	return rec.Metrics(), flush, nil
}
