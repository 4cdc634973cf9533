// Package collectors reads PostgreSQL's statistics into one data model (Collection) and
// turns it into Prometheus metrics. One file per collector; each registers itself with
// its tier, which makes it a --collector.<name> flag.
package collectors

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"

	"github.com/alecthomas/kingpin/v2"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Namespace prefixes every metric, so the exporter can run beside postgres_exporter (pg_*).
const Namespace = "pgbatch"

// Collector reads one group of statistics. Collect runs inside the tier's read-only
// transaction (in a savepoint of its own, so a failing collector spoils no other) and
// fills its part of the collection; Emit turns that part into metrics.
type Collector interface {
	Collect(ctx context.Context, tx pgx.Tx, c *Collection) error
	Emit(c *Collection, ch chan<- prometheus.Metric)
}

// Config is what collectors may need beyond the connection.
type Config struct {
	// TrackTables are schema.table names from --collector.tables.track.
	TrackTables []TableName
	Statements  StatementsConfig
	Plans       PlansConfig
	Logger      *slog.Logger
	// TouchedRelations are the relations batches' own sessions were seen holding locks on
	// (the runner sets it from the wait sampler).
	TouchedRelations func() []uint32
}

type factory struct {
	name      string
	tier      Tier
	defaultOn bool
	help      string
	build     func(Config) Collector
}

var factories []factory

func register(name string, tier Tier, defaultOn bool, help string, build func(Config) Collector) {
	factories = append(factories, factory{name, tier, defaultOn, help, build})
}

// Named is a built collector with its name and tier.
type Named struct {
	Name string
	Tier Tier
	Collector
}

// Selection is the set of collectors the flags turned on.
type Selection struct {
	enabled map[string]*bool
	// named are the collectors named on the command line (--collector.x or --no-collector.x).
	named           map[string]bool
	disableDefaults *bool
}

// FlagAdder is a kingpin application or command.
type FlagAdder interface {
	Flag(name, help string) *kingpin.FlagClause
}

// RegisterFlags adds --collector.<name> (and kingpin's --no-collector.<name>) for each
// collector, and --collector.disable-defaults.
func RegisterFlags(app FlagAdder) *Selection {
	s := &Selection{enabled: map[string]*bool{}, named: map[string]bool{}}
	s.disableDefaults = app.Flag("collector.disable-defaults",
		"Run only the collectors enabled by name (--collector.<name>), none of the others that are on by default.").Bool()
	for _, f := range sortedFactories() {
		def := "false"
		if f.defaultOn {
			def = "true"
		}
		s.enabled[f.name] = app.Flag("collector."+f.name,
			fmt.Sprintf("%s (%s tier). Default: %s.", f.help, f.tier, map[bool]string{true: "enabled", false: "disabled"}[f.defaultOn])).
			Default(def).Action(func(*kingpin.ParseContext) error { s.named[f.name] = true; return nil }).Bool()
	}
	return s
}

// DefaultSelection selects the collectors on by default, as the flags do when none is given.
func DefaultSelection() *Selection {
	s := &Selection{enabled: map[string]*bool{}}
	for _, f := range factories {
		on := f.defaultOn
		s.enabled[f.name] = &on
	}
	return s
}

// AllEnabled selects every registered collector (tests, benchmarks).
func AllEnabled() *Selection {
	s := &Selection{enabled: map[string]*bool{}}
	for _, f := range factories {
		on := true
		s.enabled[f.name] = &on
	}
	return s
}

// Enabled reports whether a collector (or the wait sampler, "waits") is on.
func (s *Selection) Enabled(name string) bool {
	p, ok := s.enabled[name]
	if !ok || (s.disableDefaults != nil && *s.disableDefaults && !s.named[name]) {
		return false
	}
	return *p
}

// Build instantiates the selected collectors of one tier, in a stable order.
func (s *Selection) Build(tier Tier, cfg Config) []Named {
	var out []Named
	for _, f := range sortedFactories() {
		if f.tier == tier && s.Enabled(f.name) && f.build != nil {
			// A collector that its configuration leaves off (plans without --plans.source) builds none.
			if c := f.build(cfg); c != nil {
				out = append(out, Named{f.name, f.tier, c})
			}
		}
	}
	return out
}

func sortedFactories() []factory {
	fs := slices.Clone(factories)
	sort.Slice(fs, func(i, j int) bool { return fs[i].name < fs[j].name })
	return fs
}
