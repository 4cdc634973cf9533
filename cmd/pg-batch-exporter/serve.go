package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/pg-batch-exporter/pg-batch-exporter/batch"
	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/exposition"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
	"github.com/pg-batch-exporter/pg-batch-exporter/report"
)

type serveCommand struct {
	name          string
	conn          *connFlags
	pools         *exposition.ConnectionPools // every pool opened, for pgbatch_exporter_connections
	web           *web.FlagConfig
	metricsPath   string
	sampleEvery   time.Duration
	snapshotEvery time.Duration
	waitsEvery    time.Duration
	runWaitsEvery time.Duration
	track         []string
	statements    collectors.StatementsConfig
	plans         collectors.PlansConfig
	selection     *collectors.Selection
	recorder      *recorderFlags
	batchMatch    []string
	configFile    string
	quietPeriod   time.Duration
	maxBatches    int
	report        bool
	externalURL   string
}

func newServeCommand(app *kingpin.Application, conn *connFlags) *serveCommand {
	s := &serveCommand{name: "serve", conn: conn}
	cmd := app.Command(s.name, "Run the exporter (the default command): collect PostgreSQL's statistics, serve them as metrics, optionally record them (--recorder.enabled) and follow batch runs. Its flags may be given without the command name.").Default()
	cmd.Flag("postgres.max-connections", "Connections the exporter may open at most to the monitored database to collect (both tiers and the wait sampler). The recorder adds up to 6 of its own in the recorder's database (3 to write, one of them LISTENing; 1 for batch runs; 2 for /report): pgbatch_exporter_connections{pool} reports each pool.").Default("2").Int32Var(&conn.maxConns)
	s.web = kingpinflag.AddFlags(cmd, ":9188")
	cmd.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&s.metricsPath)
	cmd.Flag("web.report", "Serve the batch report pages under /report (with the recorder). They show query text and lock holders' queries to anyone who can reach the port: --no-web.report where only /metrics may be exposed.").Default("true").BoolVar(&s.report)
	cmd.Flag("web.external-url", "The URL under which the exporter is reachable by those who follow its links (the report page in an alert's annotation, pgbatch_batch_run_info's report_url), as Prometheus's flag of that name. Only links use it: the pages are served where they are. Default: http://<hostname>:<port of the first --web.listen-address>/.").StringVar(&s.externalURL)
	addDuration(cmd, "tier.sample-interval", "How often the sample tier (sessions, locks, progress, replication) is collected.", "30s", &s.sampleEvery)
	addDuration(cmd, "tier.snapshot-interval", "How often the snapshot tier (WAL, checkpoints, I/O, tables...) is collected.", "1m", &s.snapshotEvery)
	addDuration(cmd, "collector.waits.interval", "How often the wait sampler reads pg_stat_activity.", "1s", &s.waitsEvery)
	addDuration(cmd, "collector.waits.run-interval", "How often the wait sampler reads pg_stat_activity while a batch runs (detected, or open in telemetry.batch_runs), so that a statement taking a second of the run is seen (about 0.7% of a core at 100 sessions, docs/performance.md).", "250ms", &s.runWaitsEvery)
	cmd.Flag("collector.tables.track", "A table to track, as schema.table (repeatable). Tables in telemetry.tracked_tables are tracked too.").StringsVar(&s.track)
	cmd.Flag("collector.statements.text-length", "Query texts are kept up to this many characters (once per queryid, never in a label).").
		Default(fmt.Sprint(collectors.DefaultStatementTextLength)).IntVar(&s.statements.TextLength)
	cmd.Flag("collector.statements.top", "Series per statement (queryid, datname, user) for the union of the N statements with the most time, blocks read, temp written and WAL; 0: totals only.").
		Default("0").IntVar(&s.statements.Top)
	cmd.Flag("collector.statements.top-min-calls", "Statements called fewer times get no series of their own.").
		Default(fmt.Sprint(collectors.DefaultTopMinCalls)).Int64Var(&s.statements.TopMinCalls)
	cmd.Flag("plans.source", "Where to read the plans auto_explain logs of the batch's sessions (docs/plans.md): off; file, the server's log on this host (--plans.log-path); sql, through pg_read_binary_file (granted to the exporter's role). Its log must be jsonlog, or stderr with %p, %a and a time in log_line_prefix.").
		Default(collectors.PlansOff).EnumVar(&s.plans.Source, collectors.PlansOff, collectors.PlansFile, collectors.PlansSQL)
	cmd.Flag("plans.log-path", "With --plans.source=file: the server's log directory on this host (log_directory), or its log file where stderr goes to a file.").StringVar(&s.plans.LogPath)
	s.selection = collectors.RegisterFlags(cmd)
	s.recorder = addRecorderFlags(cmd)
	cmd.Flag("batch.match", "Detect a batch's runs: batch=application_name:regexp, batch=user:role or batch=user:role,application_name:regexp (repeatable; any role may set an application_name, user: binds the rule to the role a session logged in as). A run starts when a matching session becomes active and ends after --batch.quiet-period without one.").StringsVar(&s.batchMatch)
	cmd.Flag("config.file", "YAML file of batch rules: batches: [{name: nightly, match: 'application_name:^etl_nightly'}].").StringVar(&s.configFile)
	addDuration(cmd, "batch.quiet-period", "A detected run ends when no session of the batch has been active for this long.", "1m", &s.quietPeriod)
	cmd.Flag("batch.max-batches", "At most this many batches named by runs in telemetry.batch_runs (beyond --batch.match's) get series; more are counted in pgbatch_batch_names_dropped. A batch's series go when its rows do.").
		Default(fmt.Sprint(batch.DefaultMaxBatches)).IntVar(&s.maxBatches)
	return s
}

func (s *serveCommand) validate() (collectors.Config, error) {
	cfg := collectors.Config{Statements: s.statements, Plans: s.plans}
	if s.plans.Source == collectors.PlansFile && s.plans.LogPath == "" {
		return cfg, usagef("--plans.source=file needs --plans.log-path: the server's log directory (or log file) on this host")
	}
	if s.statements.TextLength < 1 || s.statements.Top < 0 || s.statements.TopMinCalls < 1 {
		return cfg, usagef("--collector.statements.text-length and --collector.statements.top-min-calls must be at least 1 and --collector.statements.top at least 0")
	}
	if err := checkTelemetryPath(s.metricsPath); err != nil {
		return cfg, usagef("--web.telemetry-path: %w", err)
	}
	// The toolkit reads the file only when the listener starts, after the collectors: a
	// mistake in it must stop the exporter before anything runs, in one line.
	if err := web.Validate(*s.web.WebConfigFile); err != nil {
		return cfg, usagef("--web.config.file: %s", strings.Join(strings.Fields(err.Error()), " "))
	}
	if s.quietPeriod < s.waitsEvery {
		return cfg, usagef("--batch.quiet-period (%s) must be at least --collector.waits.interval (%s): a run would end between two samples", s.quietPeriod, s.waitsEvery)
	}
	if s.maxBatches < 1 {
		return cfg, usagef("--batch.max-batches must be at least 1")
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
	if _, err := s.externalBase(); err != nil {
		return cfg, usagef("--web.external-url: %w", err)
	}
	return cfg, nil
}

// externalBase is --web.external-url without its trailing slash, or the default Prometheus
// derives for its own: the host's name and the port the exporter listens on.
func (s *serveCommand) externalBase() (string, error) {
	raw := s.externalURL
	if raw == "" {
		host, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("no --web.external-url and no host name to derive it from: %w", err)
		}
		port := "9188"
		if addrs := *s.web.WebListenAddresses; len(addrs) > 0 {
			if _, p, err := net.SplitHostPort(addrs[0]); err == nil && p != "" {
				port = p
			}
		}
		raw = "http://" + net.JoinHostPort(host, port) + "/"
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an absolute http(s) URL, e.g. https://db-host.example:9188/", raw)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

// reportURL is where the report page of a run is linked from outside, or nil where the report
// pages are not served.
func (s *serveCommand) reportURL() func(runID int64) string {
	base, err := s.externalBase()
	if err != nil || !s.recorder.enabled || !s.report {
		return nil
	}
	return func(runID int64) string { return base + exposition.ReportPath + "/run/" + strconv.FormatInt(runID, 10) }
}

// checkTelemetryPath refuses a metrics path the HTTP mux would panic on or that would
// shadow another page: it is a plain absolute path outside /report.
func checkTelemetryPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q must start with /", p)
	}
	if i := strings.IndexFunc(p, func(r rune) bool {
		return !(r == '/' || r == '-' || r == '_' || r == '.' || r == '~' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}); i >= 0 {
		return fmt.Errorf("%q: %q is not allowed; use letters, digits and / - _ . ~", p, p[i:i+1])
	}
	if p == exposition.ReportPath || strings.HasPrefix(p, exposition.ReportPath+"/") {
		return fmt.Errorf("%q is where the batch report pages are served", p)
	}
	return nil
}

// batchRules are the --batch.match rules and those of --config.file.
func (s *serveCommand) batchRules() ([]batch.Rule, error) {
	rules, err := batch.ParseRules(s.batchMatch)
	if err != nil {
		return nil, usagef("--batch.match: %w", err)
	}
	if s.configFile != "" {
		fromFile, err := batch.LoadRules(s.configFile)
		if err != nil {
			return nil, usagef("--config.file: %w", err)
		}
		rules = append(rules, fromFile...)
		if err := batch.CheckUnique(rules); err != nil {
			return nil, usagef("--batch.match and --config.file: %w", err)
		}
	}
	if len(rules) > 0 && !s.selection.Enabled("waits") {
		return nil, usagef("--batch.match needs the wait sampler: drop --no-collector.waits")
	}
	return rules, nil
}

// startBatches follows the batches' runs: detected by the rules through the wait sampler,
// and read from telemetry.batch_runs (markers, exec) where the recorder writes, else in the
// monitored database when its schema is there. Detected runs are recorded with the recorder.
func (s *serveCommand) startBatches(ctx context.Context, rules []batch.Rule, pool *pgxpool.Pool, runner *collectors.Runner, logger *slog.Logger) (*batch.Tracker, error) {
	o := s.trackerOptions()
	o.Rules, o.RunsDB, o.Trigger, o.ReportURL, o.Logger = rules, pool, runner.Trigger, s.reportURL(), logger.With("component", "batch")
	if s.recorder.enabled {
		po := s.recorderOptions(false, 1, "batch")
		var err error
		if o.RunsDB, err = s.recorderPool(ctx, po, "batch"); err != nil {
			return nil, err
		}
		o.RecorderDB = o.RunsDB
	}
	t := batch.NewTracker(o)
	if w := runner.Waits(); w != nil {
		t.Follow(w)
	}
	go t.Run(ctx)
	return t, nil
}

// trackerOptions are the batch tracker's options from the flags.
func (s *serveCommand) trackerOptions() batch.Options {
	// Runs begun by markers are read often enough to sample a short run at the sampler's pace.
	return batch.Options{QuietPeriod: s.quietPeriod, MaxBatches: s.maxBatches, RefreshEvery: min(s.sampleEvery, batch.DefaultRefreshEvery)}
}

// runnerOptions are the runner's options from the flags.
func (s *serveCommand) runnerOptions(cfg collectors.Config) collectors.RunnerOptions {
	return collectors.RunnerOptions{Selection: s.selection, Config: cfg,
		SampleEvery: s.sampleEvery, SnapshotEvery: s.snapshotEvery, WaitSampleEvery: s.waitsEvery, RunWaitSampleEvery: s.runWaitsEvery}
}

// recorderOptions are the connection options of a pool in the recorder's database.
func (s *serveCommand) recorderOptions(readOnly bool, maxConns int32, component string) postgres.Options {
	po := s.conn.options(readOnly)
	if s.recorder.dsn != "" {
		po.DSN = s.recorder.dsn
	}
	po.MaxConns = maxConns
	po.ApplicationName = postgres.ApplicationName + " " + component
	return po
}

func (s *serveCommand) recorderPool(ctx context.Context, po postgres.Options, name string) (*pgxpool.Pool, error) {
	cfg, err := postgres.Config(po)
	if err != nil {
		return nil, usagef("--recorder.dsn: %w", err)
	}
	pool, err := postgres.NewPool(ctx, cfg)
	if err == nil {
		s.pools.Add(name, pool)
	}
	return pool, err
}

// startReport serves the batch report pages from the recorder's database, when it is on.
func (s *serveCommand) startReport(ctx context.Context, logger *slog.Logger) (http.Handler, error) {
	if !s.recorder.enabled || !s.report {
		return nil, nil
	}
	po := s.recorderOptions(true, 2, "report")
	// A report reads a run and its baseline runs: allow it more than one collection query.
	po.StatementTimeout = max(po.StatementTimeout, 30*time.Second)
	pool, err := s.recorderPool(ctx, po, "report")
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, pool.Close)
	return report.Handler(report.Options{Pool: pool, Logger: logger.With("component", "report")}), nil
}

func (s *serveCommand) run(logger *slog.Logger) error {
	cfg, err := s.validate()
	if err != nil {
		return err
	}
	rules, err := s.batchRules()
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
	s.pools = exposition.NewConnectionPools()
	s.pools.Add("collect", pool)
	logger.Info("starting pg-batch-exporter", "version", version.Info(), "server", postgres.Describe(poolCfg))

	ro := s.runnerOptions(cfg)
	ro.Pool, ro.Logger = pool, logger
	runner := collectors.NewRunner(ro)
	batches, err := s.startBatches(ctx, rules, pool, runner, logger)
	if err != nil {
		return err
	}
	recorderMetrics, flushRecorder, err := s.recorder.start(ctx, s.conn, runner, batches.RefreshNow, s.pools, logger)
	if err != nil {
		return usageError{err}
	}
	runner.SetBatchWaits(batches.TakeRunWaits)
	reports, err := s.startReport(ctx, logger)
	if err != nil {
		return err
	}
	handler, err := exposition.Handler(runner, exposition.Options{MetricsPath: s.metricsPath, Logger: logger, Extra: append(recorderMetrics, batches, s.pools),
		Report: reports, NoReport: !s.report})
	if err != nil {
		return err
	}
	runnerDone := make(chan struct{})
	go func() { defer close(runnerDone); runner.Run(ctx) }()

	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- web.ListenAndServe(srv, s.web, logger) }()
	select {
	case err = <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("HTTP server: %w", err)
		}
	case <-ctx.Done():
		logger.Info("shutting down")
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}
	// No collection comes after the runner has stopped: what the recorder holds then is all
	// there is to flush.
	stop()
	<-runnerDone
	flushRecorder()
	return err
}
