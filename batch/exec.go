package batch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ExecOptions configure Exec.
type ExecOptions struct {
	// Pool writes the run's markers (writable, to the database holding the telemetry schema).
	Pool    *pgxpool.Pool
	Batch   string
	Command []string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Logger  *slog.Logger
}

// markerTimeout bounds each marker: telemetry that cannot be written must not hold up the batch.
const markerTimeout = 10 * time.Second

// Exec runs the command as one run of the batch and returns its exit status. The run begins
// and ends in telemetry.batch_runs (source exec, the status from the exit status), on a
// session held for the whole run so that a killed wrapper leaves a run the next marker closes
// as abandoned. The child's PostgreSQL sessions carry the batch's name (PGAPPNAME); it also
// gets PGBATCH_BATCH and PGBATCH_RUN_ID. When the markers cannot be written the command
// still runs: the batch matters more than its telemetry. For the same reason a run that was
// closed before its end (abandoned by another session's judgement, or by hand) is a warning
// naming its status, and the exit status stays the command's.
func Exec(o ExecOptions) int {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ctx := context.Background()
	var runID int64
	conn, err := acquire(ctx, o.Pool)
	if err == nil {
		defer conn.Release()
		err = withTimeout(ctx, func(ctx context.Context) error {
			return conn.QueryRow(ctx, `SELECT telemetry.batch_begin($1, 'exec')`, o.Batch).Scan(&runID)
		})
	}
	if err != nil {
		o.Logger.Warn("cannot mark the run's begin; running the command anyway", "batch", o.Batch, "err", err)
	}

	code, status := run(o, runID)

	if runID == 0 {
		return code
	}
	var ended *int64
	end := func(ctx context.Context) error {
		return conn.QueryRow(ctx, `SELECT telemetry.batch_end($1, $2, $3)`, o.Batch, status, code).Scan(&ended)
	}
	err = withTimeout(ctx, end)
	if err != nil {
		// The held session may be gone (a restart, a network cut): one more try on a new one.
		conn.Release()
		if conn, err = acquire(ctx, o.Pool); err == nil {
			err = withTimeout(ctx, end)
		}
		if err != nil {
			o.Logger.Warn("cannot mark the run's end", "batch", o.Batch, "run_id", runID, "err", err)
		}
	}
	if err == nil && (ended == nil || *ended != runID) {
		o.Logger.Warn("the run was closed before its end was marked: its status is not the command's", runClosedBy(ctx, conn, runID)...)
	}
	return code
}

// runClosedBy is how a run was closed, as log attributes: its status and detail (abandoned,
// and why), read where batch_end found it no longer open.
func runClosedBy(ctx context.Context, conn *pgxpool.Conn, runID int64) []any {
	var status, detail pgtype.Text
	err := withTimeout(ctx, func(ctx context.Context) error {
		return conn.QueryRow(ctx, `SELECT status, detail FROM telemetry.batch_runs WHERE run_id = $1`, runID).Scan(&status, &detail)
	})
	attrs := []any{"run_id", runID, "status", status.String, "detail", detail.String}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	return attrs
}

func acquire(ctx context.Context, pool *pgxpool.Pool) (*pgxpool.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, markerTimeout)
	defer cancel()
	return pool.Acquire(ctx)
}

func withTimeout(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, markerTimeout)
	defer cancel()
	return f(ctx)
}

// run starts the command and waits for it, passing on SIGTERM, SIGHUP and SIGQUIT (a
// scheduler stopping the job; Go's own SIGQUIT would dump goroutines and leave the child
// running and the run open). SIGINT from a terminal reaches the child directly, so it is only
// kept from killing the wrapper before the end is marked.
func run(o ExecOptions, runID int64) (code int, status string) {
	cmd := exec.Command(o.Command[0], o.Command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	cmd.Env = append(os.Environ(), "PGAPPNAME="+o.Batch, "PGBATCH_BATCH="+o.Batch)
	if runID != 0 {
		cmd.Env = append(cmd.Env, "PGBATCH_RUN_ID="+strconv.FormatInt(runID, 10))
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(signals)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(o.Stderr, "pg-batch-exporter exec: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return 127, "failed"
		}
		return 126, "failed"
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-signals:
				if s != syscall.SIGINT {
					_ = cmd.Process.Signal(s)
				}
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, "succeeded"
	case errors.As(err, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), "cancelled"
		}
		return exitErr.ExitCode(), "failed"
	}
	fmt.Fprintf(o.Stderr, "pg-batch-exporter exec: %v\n", err)
	return 1, "failed"
}
