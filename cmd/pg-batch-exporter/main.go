// Command pg-batch-exporter explains batch variance on PostgreSQL: run with no command it is
// a Prometheus exporter (and optionally a recorder); other commands share its connection flags.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
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

// usageError is bad input (a flag, a DSN, a table name, a time): one line on stderr, exit status 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exited carries kingpin's exit (after --help or --version) out of Parse.
type exited int

// commandLine is the binary's application, its commands and their flags' values.
type commandLine struct {
	app       *kingpin.Application
	conn      *connFlags
	logConfig *promslog.Config
	serve     *serveCommand
	diagnose  *diagnoseCommand
	execute   *execCommand
}

func newCommandLine(stdout, stderr io.Writer) *commandLine {
	app := kingpin.New("pg-batch-exporter", "PostgreSQL telemetry that answers: why did tonight's batch take 60 minutes instead of 10?")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.Version(version.Print("pg-batch-exporter"))
	app.HelpFlag.Short('h')
	app.UsageTemplate(usageTemplate)
	app.Terminate(func(c int) { panic(exited(c)) })
	cl := &commandLine{app: app, conn: &connFlags{}, logConfig: &promslog.Config{}}
	app.Flag("postgres.dsn", "PostgreSQL connection string (URL or key=value). When neither this nor DATA_SOURCE_NAME is set, libpq's environment (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, .pgpass) applies.").
		Envar("DATA_SOURCE_NAME").StringVar(&cl.conn.dsn)
	addDuration(app, "postgres.statement-timeout", "statement_timeout of every query the exporter runs.", "5s", &cl.conn.statementTimeout)
	addDuration(app, "postgres.lock-timeout", "lock_timeout of every query the exporter runs: it never queues behind the batch's locks for longer.", "1s", &cl.conn.lockTimeout)
	promslogflag.AddFlags(app, cl.logConfig)
	cl.serve = newServeCommand(app, cl.conn)
	cl.diagnose = newDiagnoseCommand(app, cl.conn, stdout)
	cl.execute = newExecCommand(app, cl.conn, os.Stdin, stdout, stderr)
	return cl
}

func run(args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		switch e := recover().(type) {
		case nil:
		case exited:
			code = int(e)
		default:
			panic(e)
		}
	}()
	cl := newCommandLine(stdout, stderr)
	app, serve, diagnose, execute, logConfig := cl.app, cl.serve, cl.diagnose, cl.execute, cl.logConfig

	cmd, err := app.Parse(joinDashValues(app.Model(), args))
	if err != nil {
		fmt.Fprintf(stderr, "pg-batch-exporter: %v\n", err)
		return 2
	}
	logConfig.Writer = stderr
	logger := promslog.New(logConfig)
	commands := map[string]func(*slog.Logger) error{
		serve.name:    serve.run,
		diagnose.name: diagnose.run,
		execute.name:  execute.run,
	}
	err = commands[cmd](logger)
	var usage usageError
	var status exitStatus
	switch {
	case errors.As(err, &status): // exec passes on its command's status
		return int(status)
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "pg-batch-exporter: %v\n", err)
		return 2
	case err != nil:
		logger.Error("failed", "err", err)
		return 1
	}
	return 0
}

// joinDashValues writes a value flag and a value that begins with one '-' as one argument
// ("--run -1" as "--run=-1"): kingpin reads such a value as a flag of its own and reports the
// value missing. A long flag ("--x", known or a typo) and a known short one ("-h") stay
// flags; nothing after "--" (exec's command) is touched.
func joinDashValues(app *kingpin.ApplicationModel, args []string) []string {
	flags := append([]*kingpin.FlagModel(nil), app.Flags...)
	for _, c := range app.FlattenedCommands() {
		flags = append(flags, c.Flags...)
	}
	valueFlag, shortFlag := map[string]bool{}, map[string]bool{}
	for _, f := range flags {
		if f.Short != 0 {
			shortFlag["-"+string(f.Short)] = true
		}
		if !f.IsBoolFlag() {
			valueFlag["--"+f.Name] = true
		}
	}
	// dashValue tells a value that begins with one '-' and is no short flag of the app.
	dashValue := func(a string) bool {
		return strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && !shortFlag[a[:min(2, len(a))]]
	}
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if valueFlag[a] && i+1 < len(args) && dashValue(args[i+1]) {
			a += "=" + args[i+1]
			i++
		}
		out = append(out, a)
	}
	return out
}

// usageTemplate is kingpin's default with a command's own flags first, then the flags
// every command shares (connection, logging).
const usageTemplate = `{{define "FormatCommand" -}}
{{if .FlagSummary}} {{.FlagSummary}}{{end -}}
{{range .Args}}{{if not .Hidden}} {{if not .Required}}[{{end}}{{if .PlaceHolder}}{{.PlaceHolder}}{{else}}<{{.Name}}>{{end}}{{if .Value|IsCumulative}}...{{end}}{{if not .Required}}]{{end}}{{end}}{{end -}}
{{end -}}

{{define "FormatUsage" -}}
{{template "FormatCommand" .}}{{if .Commands}} <command> [<args> ...]{{end}}
{{if .Help}}
{{.Help|Wrap 0 -}}
{{end -}}
{{end -}}

{{if .Context.SelectedCommand -}}
usage: {{.App.Name}} {{.Context.SelectedCommand}}{{template "FormatUsage" .Context.SelectedCommand}}
{{if .Context.SelectedCommand.Flags -}}
Flags:
{{.Context.SelectedCommand.Flags|FlagsToTwoColumns|FormatTwoColumns}}
{{end -}}
{{if .Context.Args -}}
Args:
{{.Context.Args|ArgsToTwoColumns|FormatTwoColumns}}
{{end -}}
Flags of every command:
{{.App.Flags|FlagsToTwoColumns|FormatTwoColumns}}
{{- else -}}
usage: {{.App.Name}}{{template "FormatUsage" .App}}
Flags of every command:
{{.App.Flags|FlagsToTwoColumns|FormatTwoColumns}}
Commands:
{{range .App.FlattenedCommands -}}
{{if not .Hidden -}}
  {{.FullCommand}}{{if .Default}} (the default){{end}}
{{.Help|Wrap 4}}
{{end -}}
{{end -}}
Run {{.App.Name}} <command> --help for a command's own flags.
{{end -}}
`

// durationFlag is a duration flag whose parse error names the flag.
type durationFlag struct {
	name string
	d    *time.Duration
}

// minDuration is the least a duration flag accepts: PostgreSQL's timeouts count whole
// milliseconds (500us would be sent as 0, which switches the timeout off), and no interval,
// period or timeout of ours means anything at zero or below.
const minDuration = time.Millisecond

// durationMinimums are the flags whose least value is not minDuration: collecting more often
// than every 100ms would load the server it watches; a rate limit of 0 means no limit, a
// statements interval of 0 every snapshot.
var durationMinimums = map[string]time.Duration{
	"tier.sample-interval": 100 * time.Millisecond, "tier.snapshot-interval": 100 * time.Millisecond,
	"collector.waits.interval": 100 * time.Millisecond, "collector.waits.run-interval": 100 * time.Millisecond, "recorder.request-min-interval": 0,
	"recorder.statements-interval": 0,
}

func (f durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("--%s: %q is not a duration (examples: 500ms, 30s, 5m)", f.name, s)
	}
	least := minDuration
	if m, ok := durationMinimums[f.name]; ok {
		least = m
	}
	if d < 0 && least == 0 {
		return fmt.Errorf("--%s must not be negative, got %s", f.name, s)
	}
	if d < least {
		return fmt.Errorf("--%s must be at least %s, got %s", f.name, least, s)
	}
	*f.d = d
	return nil
}

func (f durationFlag) String() string { return f.d.String() }

// addDuration declares a duration flag on the app or a command.
func addDuration(fl collectors.FlagAdder, name, help, def string, d *time.Duration) {
	fl.Flag(name, help).Default(def).SetValue(durationFlag{name, d})
}
