package exposition_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/proctest"
)

// pgbenchPath is pgbench from PATH or Debian's postgresql-15 (scripts/ci-deps.sh installs it;
// the npm binaries have none). Any version drives any server.
func pgbenchPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p
	}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench"); len(m) > 0 {
		return m[len(m)-1]
	}
	t.Fatal("no pgbench on PATH or in /usr/lib/postgresql/*/bin: make deps installs postgresql-15, which has it")
	return ""
}

// pgbenchPlan is how many A/B pairs of rounds of how long the overhead bench runs.
type pgbenchPlan struct {
	scale, pairs int
	round        time.Duration
}

// benchWorkloadOverhead is issue 12's row 1: pgbench's TPS (TPC-B-like, 4 clients) with the
// exporter binary at its defaults plus the recorder writing into the same database, against
// no exporter, in alternating rounds (pairs in the order AB, BA, AB, ...: a linear drift of
// the machine cancels out over two pairs). Each pair gives the ratio TPS(B)/TPS(A); the table
// has their median with its distribution-free interval (the order statistics that the sign
// test gives, at least 95% coverage), and the CPU that the exporter process and its backends
// used during B rounds as a share of the workload's (pgbench's process and the backends that
// served it) and of one core.
//
// One exporter runs throughout, stopped with SIGSTOP during A rounds and between rounds.
// Its schedules skip what falls in a stop but catch up once on SIGCONT (a tier whose random
// instant fell in the stop collects at once), so B rounds carry up to all the tier
// collections of the whole bench's time, about twice the steady state's: the overhead is
// overstated, never hidden.
func benchWorkloadOverhead(t *testing.T, full bool) benchSection {
	plan := pgbenchPlan{scale: 1, pairs: 2, round: 2 * time.Second}
	srv := pgtest.Start(t, latestMajor())
	if full {
		plan = pgbenchPlan{scale: 20, pairs: 30, round: 5 * time.Second}
		srv = pgtest.StartWith(t, latestMajor(), pgtest.Options{Private: true})
	}
	if v := os.Getenv("PGBATCH_BENCH_PGBENCH"); v != "" { // pairs:seconds, to try other plans
		var s int
		if _, err := fmt.Sscanf(v, "%d:%d", &plan.pairs, &s); err != nil {
			t.Fatalf("PGBATCH_BENCH_PGBENCH=%q: want pairs:seconds", v)
		}
		plan.round = time.Duration(s) * time.Second
	}
	pgbench := pgbenchPath(t)
	dsn := srv.NewDatabase(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn := []string{"-h", srv.Host, "-p", fmt.Sprint(srv.Port), "-U", srv.User, strings.TrimPrefix(u.Path, "/")}
	ctl := pgtest.Connect(t, dsn, "bench control")
	pgtest.MustExec(t, ctl, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
	if out, err := exec.Command(pgbench, append([]string{"-i", "-q", "-s", fmt.Sprint(plan.scale)}, conn...)...).CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	postmaster := proctest.Parent(t, ctl.PgConn().PID())
	exporterArgs := []string{"--postgres.dsn=" + dsn, "--recorder.enabled"}

	// One exporter for the whole bench, stopped (SIGSTOP) during A rounds: its connections
	// stay open and idle, which costs the server nothing measurable, and it never pauses
	// inside a transaction (that would hold back the horizon of pgbench's updates). Started
	// once, it is in its steady state after the warm-up: no B round pays for a start-up.
	p := startExporterBinary(t, exporterArgs...)
	pause := func() {
		for attempt := 0; ; attempt++ {
			p.pause(t)
			var busy int
			if err := ctl.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
				WHERE application_name LIKE 'pg-batch-exporter%' AND state <> 'idle'`).Scan(&busy); err != nil {
				t.Fatal(err)
			}
			if busy == 0 {
				return
			}
			if attempt == 100 {
				t.Fatal("the exporter was in a statement or transaction at each of 100 attempts to pause it")
			}
			p.resume()
			time.Sleep(20 * time.Millisecond)
		}
	}

	round := func(withExporter bool, d time.Duration) (r pgbenchRound) {
		// What pgbench does before a run (its -n skips it inside the measured window).
		pgtest.MustExec(t, ctl, `VACUUM pgbench_branches, pgbench_tellers`)
		pgtest.MustExec(t, ctl, `TRUNCATE pgbench_history`)
		var self0 time.Duration
		var backends0 map[uint32]time.Duration
		if withExporter {
			self0, _ = proctest.Stat(t, p.pid())
			backends0 = exporterBackendsCPU(t, ctl)
			p.resume()
		}
		_, children0 := proctest.Stat(t, postmaster)
		cmd := exec.Command(pgbench, append([]string{"-n", "-c", "4", "-j", "2", "-T", fmt.Sprint(int(d.Seconds()))}, conn...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("pgbench: %v\n%s", err, out.String())
		}
		if withExporter {
			pause()
		}
		m := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no tps in pgbench's output:\n%s", out.String())
		}
		r.tps, _ = strconv.ParseFloat(m[1], 64)
		n := regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`).FindStringSubmatch(out.String())
		if n == nil {
			t.Fatalf("no transaction count in pgbench's output:\n%s", out.String())
		}
		r.txns, _ = strconv.Atoi(n[1])
		// pgbench's backends have exited: the postmaster has reaped them (their CPU went to its cutime).
		pgtest.Eventually(t, 5*time.Second, "pgbench's sessions gone", func() bool {
			var n int
			return ctl.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'`).Scan(&n) == nil && n == 0
		})
		time.Sleep(100 * time.Millisecond)
		_, children1 := proctest.Stat(t, postmaster)
		r.workloadCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime() + children1 - children0
		if withExporter {
			self1, _ := proctest.Stat(t, p.pid())
			r.exporterCPU = self1 - self0
			for pid, cpu := range exporterBackendsCPU(t, ctl) {
				r.backendsCPU += cpu - backends0[pid] // a backend born in the round counts from 0
			}
		}
		r.wall = d
		return r
	}

	// Warm-up, not measured: the recorder's schema is created, the caches are filled, each tier
	// has collected.
	time.Sleep(2 * time.Second)
	pause()
	round(true, min(plan.round, 5*time.Second))
	round(false, min(plan.round, 5*time.Second))

	var ratios, cpuRatios []float64
	var as, bs []pgbenchRound
	for i := range plan.pairs {
		var a, b pgbenchRound
		if i%2 == 0 {
			a, b = round(false, plan.round), round(true, plan.round)
		} else {
			b, a = round(true, plan.round), round(false, plan.round)
		}
		as, bs = append(as, a), append(bs, b)
		ratios = append(ratios, b.tps/a.tps)
		cpuRatios = append(cpuRatios, a.cpuPerTxn()/b.cpuPerTxn())
		t.Logf("pair %d: A %.1f tps %.0f µs CPU a transaction, B %.1f tps %.0f µs, ratio %.4f; exporter %v + backends %v of workload %v",
			i, a.tps, a.cpuPerTxn()*1e6, b.tps, b.cpuPerTxn()*1e6, b.tps/a.tps, b.exporterCPU, b.backendsCPU, b.workloadCPU)
	}
	lo, hi, coverage := medianCI(ratios)
	clo, chi, ccoverage := medianCI(cpuRatios)
	var exp, backends, workload, wall time.Duration
	for _, b := range bs {
		exp, backends, workload, wall = exp+b.exporterCPU, backends+b.backendsCPU, workload+b.workloadCPU, wall+b.wall
	}
	share := (exp + backends).Seconds() / workload.Seconds()
	peak := proctest.Status(t, p.pid(), "VmHWM")
	p.resume()
	p.stop(t)
	tps := func(rs []pgbenchRound) string {
		var v []float64
		for _, r := range rs {
			v = append(v, r.tps)
		}
		return fmt.Sprintf("%.0f", median(v))
	}
	pct := func(a, b time.Duration) string { return fmt.Sprintf("%.2f%%", 100*a.Seconds()/b.Seconds()) }
	sorted := slices.Clone(ratios)
	slices.Sort(sorted)
	return benchSection{
		title: fmt.Sprintf("Workload overhead: pgbench (TPC-B-like) scale %d, 4 clients, 2 threads, PostgreSQL %d; %d A/B pairs of %s rounds "+
			"(A: no exporter; B: the exporter binary at defaults with --recorder.enabled into the same database)",
			plan.scale, latestMajor(), plan.pairs, plan.round),
		header: []string{"TPS A (median)", "TPS B (median)", "TPS B/A: median", "its interval", "B/A min / max",
			"transactions per workload CPU-second B/A: median", "its interval",
			"exporter CPU / workload CPU", "its backends / workload", "exporter + backends, % of one core",
			"B/A on a saturated CPU (CPU per transaction and the exporter's share)", "exporter peak RSS"},
		rows: [][]string{{tps(as), tps(bs), fmt.Sprintf("%.4f", median(ratios)),
			fmt.Sprintf("%.4f to %.4f (%.1f%%)", lo, hi, 100*coverage),
			fmt.Sprintf("%.3f / %.3f", sorted[0], sorted[len(sorted)-1]),
			fmt.Sprintf("%.4f", median(cpuRatios)), fmt.Sprintf("%.4f to %.4f (%.1f%%)", clo, chi, 100*ccoverage),
			pct(exp, workload), pct(backends, workload), pct(exp+backends, wall),
			fmt.Sprintf("%.4f (%.4f to %.4f)", median(cpuRatios)/(1+share), clo/(1+share), chi/(1+share)),
			fmt.Sprintf("%d kB", peak)}},
	}
}

type pgbenchRound struct {
	tps                                         float64
	txns                                        int
	wall, workloadCPU, exporterCPU, backendsCPU time.Duration
	peakRSS                                     int64
}

// cpuPerTxn is the workload's CPU seconds per transaction: pgbench's own and its backends'.
func (r pgbenchRound) cpuPerTxn() float64 { return r.workloadCPU.Seconds() / float64(r.txns) }

// exporterBackendsCPU is the CPU so far of each backend serving the exporter (its sessions'
// application_name begins with pg-batch-exporter: the collectors', the recorder's), by pid.
func exporterBackendsCPU(t *testing.T, c *pgx.Conn) map[uint32]time.Duration {
	t.Helper()
	return proctest.BackendsCPU(t, c, `SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pg-batch-exporter%'`)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianCI is the distribution-free interval of the median of v: the k-th smallest and k-th
// largest values, k the largest for which the interval covers the median with at least 95%
// probability (1 - 2 P(Bin(n, 1/2) < k), the sign test's), with that coverage; fewer than 6
// values have no such interval, and give their range and its coverage.
func medianCI(v []float64) (lo, hi, coverage float64) {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	// cdf(k) = P(Bin(n, 1/2) <= k)
	cdf := func(k int) float64 {
		var p float64
		for i := 0; i <= k; i++ {
			p += math.Exp(lgammaInt(n+1) - lgammaInt(i+1) - lgammaInt(n-i+1) - float64(n)*math.Ln2)
		}
		return p
	}
	k := 1
	for k+1 <= n/2 && 1-2*cdf(k) >= 0.95 { // interval [s[k], s[n-1-k]] (0-based) excludes k values each side
		k++
	}
	return s[k-1], s[n-k], 1 - 2*cdf(k-1)
}

func lgammaInt(n int) float64 { v, _ := math.Lgamma(float64(n)); return v }

// The interval of the median is the sign test's: for 20 values the 6th smallest to the 6th
// largest (95.9%), for 5 their range (93.8%).
func TestMedianCI(t *testing.T) {
	for _, c := range []struct {
		n              int
		lo, hi, covers float64
	}{{20, 6, 15, 0.9586}, {30, 10, 21, 0.9572}, {5, 1, 5, 0.9375}} {
		var v []float64
		for i := c.n; i >= 1; i-- {
			v = append(v, float64(i))
		}
		lo, hi, covers := medianCI(v)
		if lo != c.lo || hi != c.hi || math.Abs(covers-c.covers) > 0.0001 {
			t.Errorf("n=%d: %v to %v (%.4f), want %v to %v (%.4f)", c.n, lo, hi, covers, c.lo, c.hi, c.covers)
		}
	}
}
