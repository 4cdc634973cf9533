package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/pg-batch-exporter/pg-batch-exporter/batch"
	"github.com/pg-batch-exporter/pg-batch-exporter/diagnosis"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
)

type diagnoseCommand struct {
	name     string
	conn     *connFlags
	stdout   io.Writer
	from, to string
	batch    string
	runSpec  string
	server   string
	format   string
}

func newDiagnoseCommand(app *kingpin.Application, conn *connFlags, stdout io.Writer) *diagnoseCommand {
	d := &diagnoseCommand{name: "diagnose", conn: conn, stdout: stdout}
	cmd := app.Command(d.name, "Say why a window or a batch run was slow, from the recorded telemetry: the diagnostic patterns found, most severe first, and for a run the measures that moved most against the batch's previous normal runs.")
	cmd.Flag("from", "Start of the window: RFC 3339 (2024-12-16T14:00:00+01:00) or local time (2024-12-16 14:00).").StringVar(&d.from)
	cmd.Flag("to", "End of the window (same forms). Default: now.").StringVar(&d.to)
	cmd.Flag("batch", "Diagnose a run of this batch instead of a window.").StringVar(&d.batch)
	cmd.Flag("run", "Which run of --batch: current (the one in progress, diagnosed up to now), last, last-1 (the one before), ..., or a run_id.").Default("last").StringVar(&d.runSpec)
	cmd.Flag("server", "The recorded server, where the telemetry schema holds several (SELECT server FROM telemetry.servers).").StringVar(&d.server)
	cmd.Flag("format", "Report format: text or json.").Default("text").EnumVar(&d.format, "text", "json")
	return d
}

// parsedRun is --run: the run in progress, back runs before the last, or a run_id.
type parsedRun struct {
	current bool
	back    int
	runID   int64
}

func parseRun(s string) (parsedRun, error) {
	switch s {
	case "last":
		return parsedRun{}, nil
	case "current":
		return parsedRun{current: true}, nil
	}
	if n, ok := strings.CutPrefix(s, "last-"); ok {
		if back, err := strconv.Atoi(n); err == nil && back >= 0 {
			return parsedRun{back: back}, nil
		}
	}
	if id, err := strconv.ParseInt(s, 10, 64); err == nil && id > 0 {
		return parsedRun{runID: id}, nil
	} else if err == nil {
		return parsedRun{}, fmt.Errorf("--run %d: run ids are positive; the run before the last is last-1", id)
	}
	return parsedRun{}, fmt.Errorf("--run %q: want current, last, last-N or a run_id", s)
}

func (d *diagnoseCommand) window() (from, to time.Time, err error) {
	if from, err = diagnosis.ParseTime(d.from); err != nil {
		return from, to, usagef("--from: %w", err)
	}
	to = time.Now()
	if d.to != "" {
		if to, err = diagnosis.ParseTime(d.to); err != nil {
			return from, to, usagef("--to: %w", err)
		}
	}
	if !to.After(from) {
		return from, to, usagef("--to (%s) is not after --from (%s)", to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	return from, to, nil
}

func (d *diagnoseCommand) run(logger *slog.Logger) error {
	if (d.from == "") == (d.batch == "") {
		return usagef("diagnose needs either --from (a window) or --batch (a run)")
	}
	if d.batch != "" && d.to != "" {
		return usagef("--to goes with --from, not with --batch")
	}
	var from, to time.Time
	var which parsedRun
	var err error
	if d.batch == "" {
		from, to, err = d.window()
	} else if err = batch.CheckName(d.batch); err != nil {
		err = usagef("--batch: %w", err)
	} else if which, err = parseRun(d.runSpec); err != nil {
		err = usageError{err}
	}
	if err != nil {
		return err
	}
	o := d.conn.options(true)
	o.MaxConns = 1
	cfg, err := postgres.Config(o)
	if err != nil {
		return usageError{err}
	}
	ctx := context.Background()
	pool, err := postgres.NewPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	var rep *diagnosis.Report
	if err := diagnosis.CheckSchema(ctx, pool); errors.Is(err, diagnosis.ErrNoSchema) {
		return usagef("%s: %w", postgres.Describe(cfg), err)
	} else if err != nil {
		return fmt.Errorf("diagnosing on %s: %w", postgres.Describe(cfg), err)
	}
	if d.batch == "" {
		rep, err = diagnosis.Window(ctx, pool, from, to, d.server)
	} else {
		runID := which.runID
		switch {
		case which.current:
			runID, err = diagnosis.CurrentRun(ctx, pool, d.batch)
		case runID == 0:
			runID, err = diagnosis.LastRun(ctx, pool, d.batch, which.back)
			if n, err := diagnosis.OutOfRangeRuns(ctx, pool, d.batch); err == nil && n > 0 {
				logger.Warn("runs of the batch with times out of range are skipped (SELECT * FROM telemetry.batch_runs_out_of_range)",
					"batch", d.batch, "runs", n)
			}
		}
		if err == nil {
			rep, err = diagnosis.ForRun(ctx, pool, runID)
		}
		if err == nil && rep.Run.Batch != d.batch {
			err = fmt.Errorf("%w: run %d is a run of %s, not of %s", diagnosis.ErrNotFound, runID, rep.Run.Batch, d.batch)
		}
	}
	// A window out of range is the user's input; a stored run out of range is not.
	if errors.Is(err, diagnosis.ErrNotFound) || d.batch == "" && errors.Is(err, diagnosis.ErrOutOfRange) {
		return usageError{err}
	}
	if err != nil {
		return fmt.Errorf("diagnosing on %s: %w", postgres.Describe(cfg), err)
	}
	if d.format == "json" {
		return rep.JSON(d.stdout)
	}
	return rep.Text(d.stdout)
}
