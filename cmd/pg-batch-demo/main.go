// Command pg-batch-demo shows pg-batch-exporter diagnosing a slow batch, on a throwaway
// PostgreSQL server it starts and removes itself (`make demo`).
//
// It starts the server the way the tests get theirs (testharness/pgserver), starts the real
// exporter binary with the recorder on at short intervals, runs a scripted "nightly" batch
// twice through `pg-batch-exporter exec` (a normal run, then one held up by another
// session's lock, a forced checkpoint and a sort spilling to temp files), prints
// `pg-batch-exporter diagnose` of the slow run, and where to look next. It then waits for
// Ctrl-C (or with --exit, for scripts and tests, stops at once) and removes everything.
//
// `pg-batch-demo nightly` is the batch itself, run by `pg-batch-exporter exec`.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgserver"
)

func main() {
	app := kingpin.New("pg-batch-demo", "Show pg-batch-exporter diagnosing a slow batch on a throwaway PostgreSQL server.")
	app.HelpFlag.Short('h')
	d := &demo{out: os.Stdout}
	run := app.Command("run", "Run the demo (the default command).").Default()
	run.Flag("exporter", "The pg-batch-exporter binary to run.").Default("bin/pg-batch-exporter").StringVar(&d.exporter)
	run.Flag("exit", "Stop and clean up once the demo has run, instead of waiting for Ctrl-C (also DEMO_EXIT=1).").
		Envar("DEMO_EXIT").BoolVar(&d.exit)
	run.Flag("pg-version", "PostgreSQL major version of the throwaway server (15-18).").Default("17").IntVar(&d.major)
	run.Flag("listen", "Where the exporter listens; a free port is taken if this one is busy.").Default("127.0.0.1:9188").StringVar(&d.listen)
	nightly := app.Command("nightly", "The demo's nightly batch (run by pg-batch-exporter exec; reads DEMO_DSN).").Hidden()
	var trouble bool
	nightly.Flag("trouble", "Sort with a tiny work_mem, so that the sort spills to temp files.").BoolVar(&trouble)

	switch kingpin.MustParse(app.Parse(os.Args[1:])) {
	case nightly.FullCommand():
		if err := runNightly(os.Getenv("DEMO_DSN"), trouble); err != nil {
			fmt.Fprintf(os.Stderr, "nightly: %v\n", err)
			os.Exit(1)
		}
	default:
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		err := d.run(ctx)
		stop()
		d.cleanup()
		if err != nil {
			fmt.Fprintf(os.Stderr, "\npg-batch-demo: %v\n", err)
			os.Exit(1)
		}
	}
}

// demo is one run of the demo and what it has started, for cleanup.
type demo struct {
	out      io.Writer
	exporter string
	exit     bool
	major    int
	listen   string

	dir     string // temp dir: the batch's script, the exporter's log
	server  *pgserver.Server
	exp     *exec.Cmd
	expDone chan error
	dsn     string // the demo database
	url     string // the exporter

	step, steps int
	started     time.Time
	left        time.Duration // estimated time for the steps not done yet
}

// The steps and how long each usually takes, for the progress lines.
var plan = []struct {
	what     string
	estimate time.Duration
}{
	{"Starting a throwaway PostgreSQL server", 2 * time.Second},
	{"Starting pg-batch-exporter with the recorder on", 1 * time.Second},
	{"Nightly batch, run 1: a normal night", 5 * time.Second},
	{"Nightly batch, run 2: another session holds a lock, a checkpoint is forced, a sort spills to disk", 10 * time.Second},
	{"Diagnosing run 2 against run 1", 2 * time.Second},
}

func (d *demo) begin() {
	if d.step == 0 {
		d.started = time.Now()
		for _, s := range plan {
			d.left += s.estimate
		}
	}
	s := plan[d.step]
	d.step++
	fmt.Fprintf(d.out, "\n[%d/%d] %s (about %s; about %s left in all)\n", d.step, len(plan), s.what,
		s.estimate.Round(time.Second), d.left.Round(time.Second))
	d.left -= s.estimate
}

func (d *demo) logf(format string, args ...any) { fmt.Fprintf(d.out, "      "+format+"\n", args...) }

func (d *demo) run(ctx context.Context) error {
	exporter, err := filepath.Abs(d.exporter)
	if err != nil {
		return err
	}
	if _, err := os.Stat(exporter); err != nil {
		return fmt.Errorf("the exporter binary: %w (build it: go build -o bin/ ./cmd/pg-batch-exporter, or run `make demo`)", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if d.dir, err = os.MkdirTemp("", "pg-batch-demo-"); err != nil {
		return err
	}

	d.begin()
	t0 := time.Now()
	d.server, err = pgserver.Start(ctx, d.major, pgserver.Options{
		Docker: pgserver.UseDocker(),
		// Room for the batch's WAL: the only checkpoint in its window is the one forced.
		Settings: map[string]string{"max_wal_size": "1GB", "checkpoint_timeout": "1h"},
		Logf:     d.logf,
	})
	if err != nil {
		return err
	}
	d.logf("%s on %s:%d, ready in %s", d.server.Desc, d.server.Host, d.server.Port, since(t0))
	if err := d.server.Exec(ctx, "postgres", "CREATE DATABASE demo"); err != nil {
		return err
	}
	d.dsn = d.server.DSN("demo")
	if err := d.server.Exec(ctx, d.dsn, setupSQL); err != nil {
		return fmt.Errorf("creating the demo's tables: %w", err)
	}
	d.logf("database demo: table orders (200 000 rows), the batch's input")

	d.begin()
	t0 = time.Now()
	if err := d.startExporter(ctx, exporter); err != nil {
		return err
	}
	d.logf("exporter on %s (log: %s), recorder writing to the telemetry schema, ready in %s", d.url, filepath.Join(d.dir, "exporter.log"), since(t0))

	d.begin()
	t0 = time.Now()
	normal, err := d.nightly(ctx, exporter, self, false)
	if err != nil {
		return err
	}
	d.logf("run %d took %s", normal, since(t0))

	d.begin()
	t0 = time.Now()
	slow, err := d.troubledNight(ctx, exporter, self)
	if err != nil {
		return err
	}
	d.logf("run %d took %s", slow, since(t0))

	d.begin()
	if err := d.waitEndSnapshot(ctx, slow); err != nil {
		return err
	}
	out, err := d.cli(ctx, exporter, nil, "diagnose", "--batch", "nightly")
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\n$ pg-batch-exporter diagnose --batch nightly\n\n%s", indent(out))
	if err := d.checkReport(ctx, slow); err != nil {
		return err
	}
	if d.exit {
		// The addresses below die with the demo: say so, and how to keep them.
		fmt.Fprintf(d.out, "\nDone in %s. With --exit (DEMO_EXIT=1) the demo now stops its PostgreSQL server and exporter and removes them,\n"+
			"so these addresses are gone once it exits; run `make demo` without DEMO_EXIT to keep them until Ctrl-C:\n%s", since(d.started), d.where(slow))
		return nil
	}
	fmt.Fprintf(d.out, "\nDone in %s. Where to look now:\n%s", since(d.started), d.where(slow))
	fmt.Fprintf(d.out, "\nThe exporter keeps recording. Press Ctrl-C to stop and remove everything the demo started.\n")
	select {
	case <-ctx.Done():
	case err := <-d.expDone:
		return fmt.Errorf("the exporter stopped: %v (log: %s)", err, filepath.Join(d.dir, "exporter.log"))
	}
	return nil
}

const setupSQL = `
CREATE EXTENSION pg_stat_statements;
CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL, amount numeric NOT NULL, updated_at timestamptz);
INSERT INTO orders SELECT g, g % 5000, round((random() * 100)::numeric, 2), now() FROM generate_series(1, 200000) g;
CREATE TABLE customer_totals (customer int PRIMARY KEY, total numeric NOT NULL, refreshed_at timestamptz);
ANALYZE orders;`

// startExporter runs the exporter binary against the demo database at short intervals and
// waits until it serves metrics and its recorder has created the telemetry schema.
func (d *demo) startExporter(ctx context.Context, exporter string) error {
	addr := d.listen
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		addr = ln.Addr().String()
		ln.Close()
		d.logf("%s is busy: the exporter listens on %s", d.listen, addr)
	}
	d.url = "http://" + addr
	logf, err := os.Create(filepath.Join(d.dir, "exporter.log"))
	if err != nil {
		return err
	}
	d.exp = exec.Command(exporter,
		"--postgres.dsn="+d.dsn, "--web.listen-address="+addr, "--recorder.enabled",
		"--tier.sample-interval=500ms", "--tier.snapshot-interval=5s", "--collector.waits.interval=100ms",
		"--collector.tables.track=public.orders")
	d.exp.Stdout, d.exp.Stderr = logf, logf
	// The exporter goes when the demo goes, however the demo ends.
	d.exp.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := d.exp.Start(); err != nil {
		logf.Close()
		return err
	}
	d.expDone = make(chan error, 1)
	go func() { d.expDone <- d.exp.Wait(); logf.Close() }()

	conn, err := pgx.Connect(ctx, d.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return poll(ctx, 60*time.Second, "the exporter to serve metrics and create the telemetry schema", func() (bool, error) {
		select {
		case err := <-d.expDone:
			log, _ := os.ReadFile(filepath.Join(d.dir, "exporter.log"))
			return false, fmt.Errorf("the exporter exited (%v):\n%s", err, log)
		default:
		}
		resp, err := http.Get(d.url + "/metrics")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		var schema bool
		err = conn.QueryRow(ctx, `SELECT to_regprocedure('telemetry.diagnose_run(bigint)') IS NOT NULL
			AND EXISTS (SELECT FROM telemetry.snapshots)`).Scan(&schema)
		return resp.StatusCode == http.StatusOK && err == nil && schema, nil
	})
}

// nightly runs the batch through `pg-batch-exporter exec --batch nightly` and returns the
// run's id.
func (d *demo) nightly(ctx context.Context, exporter, self string, trouble bool) (int64, error) {
	args := []string{"exec", "--batch", "nightly", "--", self, "nightly"}
	if trouble {
		args = append(args, "--trouble")
	}
	d.logf("$ pg-batch-exporter exec --batch nightly -- pg-batch-demo %s", strings.Join(args[5:], " "))
	if _, err := d.cli(ctx, exporter, []string{"DEMO_DSN=" + d.dsn}, args...); err != nil {
		return 0, err
	}
	conn, err := pgx.Connect(ctx, d.dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var id int64
	var status string
	err = conn.QueryRow(ctx, `SELECT run_id, status FROM telemetry.batch_runs WHERE batch = 'nightly'
		ORDER BY started_at DESC LIMIT 1`).Scan(&id, &status)
	if err == nil && status != "succeeded" {
		err = fmt.Errorf("run %d of nightly ended %s", id, status)
	}
	return id, err
}

// troubledNight runs the batch while another session holds a lock on its table for a few
// seconds and a checkpoint is forced; the batch itself sorts with a tiny work_mem.
func (d *demo) troubledNight(ctx context.Context, exporter, self string) (int64, error) {
	other, err := pgx.Connect(ctx, d.dsn+"&application_name=reporting-job")
	if err != nil {
		return 0, err
	}
	defer other.Close(context.WithoutCancel(ctx))
	if _, err := other.Exec(ctx, `BEGIN; LOCK TABLE orders IN SHARE MODE`); err != nil {
		return 0, err
	}
	d.logf("session reporting-job: BEGIN; LOCK TABLE orders IN SHARE MODE  (held 5 s: the batch's UPDATE waits)")
	trouble := make(chan error, 1)
	go func() {
		select {
		case <-ctx.Done():
			trouble <- ctx.Err()
			return
		case <-time.After(5 * time.Second):
		}
		if _, err := other.Exec(ctx, `COMMIT`); err != nil {
			trouble <- err
			return
		}
		d.logf("session reporting-job: COMMIT; then CHECKPOINT  (forced while the batch writes)")
		_, err := other.Exec(ctx, `CHECKPOINT`)
		trouble <- err
	}()
	id, err := d.nightly(ctx, exporter, self, true)
	if terr := <-trouble; err == nil && terr != nil {
		err = fmt.Errorf("the other session: %w", terr)
	}
	return id, err
}

// runNightly is the batch: refresh the customers' totals from the orders, touching every
// order, then a report sorted by amount. With trouble, work_mem is tiny and the sort
// spills; sleeps stand in for the rest of a real batch's work.
func runNightly(dsn string, trouble bool) error {
	if dsn == "" {
		return errors.New("DEMO_DSN is not set")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	workMem := "256MB"
	if trouble {
		workMem = "64kB"
	}
	for _, sql := range []string{
		"SET work_mem = '" + workMem + "'",
		"SELECT pg_sleep(1)",
		"UPDATE orders SET amount = amount * 1.01, updated_at = now()",
		`INSERT INTO customer_totals SELECT customer, sum(amount), now() FROM orders GROUP BY customer
		 ON CONFLICT (customer) DO UPDATE SET total = excluded.total, refreshed_at = excluded.refreshed_at`,
		// The report's last page: the whole sort happens, one row comes back.
		"SELECT o.*, g FROM orders o, generate_series(1, 8) g ORDER BY amount::float8 * g DESC OFFSET 1599999",
		"SELECT pg_sleep(1)",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", strings.Fields(sql)[0], err)
		}
	}
	return nil
}

// cli runs the exporter binary with the demo's connection and returns its output.
func (d *demo) cli(ctx context.Context, exporter string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, exporter, append([]string{"--postgres.dsn=" + d.dsn, "--log.level=warn"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("pg-batch-exporter %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// waitEndSnapshot waits for the snapshot batch_end asked for: the run's window needs it.
func (d *demo) waitEndSnapshot(ctx context.Context, run int64) error {
	conn, err := pgx.Connect(ctx, d.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return poll(ctx, 30*time.Second, "the snapshot at the end of the run", func() (bool, error) {
		var ok bool
		err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM telemetry.snapshots s, telemetry.batch_runs r
			WHERE r.run_id = $1 AND s.captured_at >= r.ended_at)`, run).Scan(&ok)
		return ok, err
	})
}

// checkReport fetches the slow run's report page, so that the URL the demo prints works.
func (d *demo) checkReport(ctx context.Context, run int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/report/run/%d", d.url, run), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("lock_contention")) {
		return fmt.Errorf("the report page %s answered %s without the lock_contention finding", req.URL, resp.Status)
	}
	return nil
}

func (d *demo) where(slow int64) string {
	return fmt.Sprintf(`
  Report of the slow run   %[1]s/report/run/%[2]d
  All recorded runs        %[1]s/report
  Metrics (both tiers)     %[1]s/metrics   (?tier=sample, ?tier=snapshot)

  The recorded telemetry, in psql:
    psql '%[3]s'
      SELECT * FROM telemetry.recent_batch_runs;
      SELECT * FROM telemetry.diagnose_run(%[2]d);           -- this run against the earlier normal ones
      SELECT * FROM telemetry.diagnose_run_findings(%[2]d);  -- the patterns found, with the fix
      SELECT * FROM telemetry.compare(now() - interval '5 minutes', now());
      SELECT * FROM telemetry.wait_summary(now() - interval '5 minutes', now());
`, d.url, slow, d.dsn)
}

// cleanup stops the exporter and the server and removes their files.
func (d *demo) cleanup() {
	if d.exp != nil && d.exp.Process != nil {
		d.exp.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.expDone:
		case <-time.After(10 * time.Second):
			d.exp.Process.Kill()
		}
	}
	if d.server != nil {
		d.server.Destroy()
	}
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
	if d.server != nil || d.exp != nil {
		fmt.Fprintln(d.out, "Stopped the exporter and PostgreSQL and removed their files.")
	}
}

// poll calls ready until it says so, fails, or what times out.
func poll(ctx context.Context, timeout time.Duration, what string, ready func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := ready()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "  " + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}
