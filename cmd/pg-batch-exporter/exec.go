package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/alecthomas/kingpin/v2"

	"github.com/pg-batch-exporter/pg-batch-exporter/batch"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
)

type execCommand struct {
	name           string
	conn           *connFlags
	stdin          io.Reader
	stdout, stderr io.Writer
	batch          string
	command        []string
}

func newExecCommand(app *kingpin.Application, conn *connFlags, stdin io.Reader, stdout, stderr io.Writer) *execCommand {
	e := &execCommand{name: "exec", conn: conn, stdin: stdin, stdout: stdout, stderr: stderr}
	cmd := app.Command(e.name, "Run a command as a run of a batch: its begin and end (with the exit status) go to telemetry.batch_runs, its PostgreSQL sessions carry the batch's name (PGAPPNAME), and pg-batch-exporter exits with the command's status.")
	cmd.Flag("batch", "The batch's name.").Required().StringVar(&e.batch)
	cmd.Arg("command", "The command and its arguments, after --.").Required().StringsVar(&e.command)
	return e
}

// exitStatus is the child's exit status, passed on as pg-batch-exporter's own.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("the command exited with status %d", int(e)) }

func (e *execCommand) run(logger *slog.Logger) error {
	if err := batch.CheckName(e.batch); err != nil {
		return usagef("--batch: %w", err)
	}
	o := e.conn.options(false)
	o.MaxConns = 2
	o.ApplicationName = postgres.ApplicationName + " exec"
	cfg, err := postgres.Config(o)
	if err != nil {
		return usageError{err}
	}
	pool, err := postgres.NewPool(context.Background(), cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	code := batch.Exec(batch.ExecOptions{Pool: pool, Batch: e.batch, Command: e.command,
		Stdin: e.stdin, Stdout: e.stdout, Stderr: e.stderr, Logger: logger})
	if code != 0 {
		return exitStatus(code)
	}
	return nil
}
