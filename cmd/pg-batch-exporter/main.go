// Command pg-batch-exporter explains batch variance on PostgreSQL: run with no command it is
// a Prometheus exporter (and optionally a recorder); other commands share its connection flags.
package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"

	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// connFlags are the connection settings every command shares.
type connFlags struct {
	dsn              string
	maxConns         int32
	statementTimeout time.Duration
	lockTimeout      time.Duration
}

func (c *connFlags) options(readOnly bool) postgres.Options {
	return postgres.Options{DSN: c.dsn, MaxConns: c.maxConns, StatementTimeout: c.statementTimeout,
		LockTimeout: c.lockTimeout, ReadOnly: readOnly}
}

func run(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("pg-batch-exporter", "PostgreSQL telemetry that answers: why did tonight's batch take 60 minutes instead of 10?")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.Version(version.Print("pg-batch-exporter"))
	app.HelpFlag.Short('h')
	app.Terminate(nil)

	var conn connFlags
	app.Flag("postgres.dsn", "PostgreSQL connection string (URL or key=value). When neither this nor DATA_SOURCE_NAME is set, libpq's environment (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, .pgpass) applies.").
		Envar("DATA_SOURCE_NAME").StringVar(&conn.dsn)
	app.Flag("postgres.max-connections", "Connections the exporter may open at most.").Default("2").Int32Var(&conn.maxConns)
	app.Flag("postgres.statement-timeout", "statement_timeout of every query the exporter runs.").Default("5s").DurationVar(&conn.statementTimeout)
	app.Flag("postgres.lock-timeout", "lock_timeout of every query the exporter runs: it never queues behind the batch's locks for longer.").Default("1s").DurationVar(&conn.lockTimeout)
	logConfig := &promslog.Config{}
	promslogflag.AddFlags(app, logConfig)

	serve := newServeCommand(app, &conn)

	cmd, err := app.Parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "pg-batch-exporter: %v\n", err)
		return 2
	}
	if cmd == "" { // --help or --version
		return 0
	}
	logger := promslog.New(logConfig)
	switch cmd {
	case serve.name:
		return serve.run(logger)
	}
	return 2
}
