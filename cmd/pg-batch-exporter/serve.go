package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/exporter"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
)

type serveCommand struct {
	name          string
	conn          *connFlags
	web           *web.FlagConfig
	metricsPath   string
	sampleEvery   time.Duration
	snapshotEvery time.Duration
	waitsEvery    time.Duration
	track         []string
	selection     *collectors.Selection
	recorder      *recorderFlags
}

func newServeCommand(app *kingpin.Application, conn *connFlags) *serveCommand {
	s := &serveCommand{name: "serve", conn: conn}
	app.Command(s.name, "Run the exporter (the default command).").Default()
	// The exporter's flags belong to the application, not the command: serve is the default,
	// so `pg-batch-exporter --help` must list them.
	s.web = kingpinflag.AddFlags(app, ":9188")
	app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&s.metricsPath)
	addDuration(app, "tier.sample-interval", "How often the sample tier (sessions, locks, progress, replication) is collected.", "30s", &s.sampleEvery)
	addDuration(app, "tier.snapshot-interval", "How often the snapshot tier (WAL, checkpoints, I/O, tables...) is collected.", "1m", &s.snapshotEvery)
	addDuration(app, "collector.waits.interval", "How often the wait sampler reads pg_stat_activity.", "1s", &s.waitsEvery)
	app.Flag("collector.tables.track", "A table to track, as schema.table (repeatable). Tables in telemetry.tracked_tables are tracked too.").StringsVar(&s.track)
	s.selection = collectors.RegisterFlags(app)
	s.recorder = addRecorderFlags(app)
	return s
}

func (s *serveCommand) validate() (collectors.Config, error) {
	var cfg collectors.Config
	for name, d := range map[string]time.Duration{"tier.sample-interval": s.sampleEvery, "tier.snapshot-interval": s.snapshotEvery, "collector.waits.interval": s.waitsEvery} {
		if d < 100*time.Millisecond {
			return cfg, usagef("--%s must be at least 100ms, got %s", name, d)
		}
	}
	if s.conn.maxConns < 1 {
		return cfg, usagef("--postgres.max-connections must be at least 1")
	}
	for _, t := range s.track {
		n, err := collectors.ParseTableName(t)
		if err != nil {
			return cfg, usagef("--collector.tables.track: %w", err)
		}
		cfg.TrackTables = append(cfg.TrackTables, n)
	}
	if err := s.recorder.validate(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

func (s *serveCommand) run(logger *slog.Logger) error {
	cfg, err := s.validate()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	poolCfg, err := postgres.Config(s.conn.options(true))
	if err != nil {
		return usageError{err}
	}
	pool, err := postgres.NewPool(ctx, poolCfg)
	if err != nil {
		return fmt.Errorf("cannot create connection pool: %w", err)
	}
	defer pool.Close()
	logger.Info("starting pg-batch-exporter", "version", version.Info(), "server", postgres.Describe(poolCfg))

	runner := collectors.NewRunner(collectors.RunnerOptions{
		Pool: pool, Logger: logger, Selection: s.selection, Config: cfg,
		SampleEvery: s.sampleEvery, SnapshotEvery: s.snapshotEvery, WaitSampleEvery: s.waitsEvery,
	})
	recorderMetrics, err := s.recorder.start(ctx, s.conn, runner, logger)
	if err != nil {
		return usageError{err}
	}
	handler, err := exporter.Handler(runner, exporter.Options{MetricsPath: s.metricsPath, Logger: logger, Extra: recorderMetrics})
	if err != nil {
		return err
	}
	go runner.Run(ctx)

	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- web.ListenAndServe(srv, s.web, logger) }()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("HTTP server: %w", err)
		}
	case <-ctx.Done():
		logger.Info("shutting down")
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}
	return nil
}
