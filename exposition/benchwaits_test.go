package exposition_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/internal/postgres"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/proctest"
)

// benchWaitSamplerCost measures what the wait sampler costs (issue 12, row 2) with 10, 100
// and 500 client sessions in pg_sleep (short: 10), at --collector.waits.interval 1s, at
// --collector.waits.run-interval 250ms (while a batch runs) and at 100ms: the reading's mean
// wall time, this process's CPU while it samples, and the CPU of the backend serving the
// sampler's one connection (/proc/<pid>/stat), each as % of one core over the window. The sessions sleep in the server, so the process does nothing else: its
// CPU is the sampler's, with the Go runtime's share. Each session is a row of the reading,
// the worst case: an idle or idle-in-transaction session costs the server a pg_stat_activity
// entry too, but the query's WHERE drops it.
func benchWaitSamplerCost(t *testing.T, full bool) benchSection {
	sessions, window := []int{10}, 2*time.Second
	srv := pgtest.Start(t, latestMajor())
	if full {
		sessions, window = []int{10, 100, 500}, 40*time.Second
		srv = pgtest.StartWith(t, latestMajor(), pgtest.Options{Private: true, Settings: map[string]string{"max_connections": "600"}})
	}
	dsn := srv.NewDatabase(t)
	var rows [][]string
	opened := 0
	for _, n := range sessions {
		sleepingSessions(t, dsn, n-opened, n)
		opened = n
		// The default, the faster one while a batch runs, and the least allowed.
		for _, interval := range []time.Duration{collectors.DefaultWaitSampleEvery, collectors.DefaultRunWaitSampleEvery, 100 * time.Millisecond} {
			rows = append(rows, measureWaitSampler(t, dsn, srv.DataDir != "", interval, window, n, collectors.IdleSessions{}))
		}
	}
	return benchSection{
		title: fmt.Sprintf("Wait sampler cost: PostgreSQL %d; the client sessions in pg_sleep; CPU over %s of readings, as %% of one core",
			latestMajor(), window),
		header: []string{"client sessions", "interval", "readings", "reading mean (wall)", "exporter CPU (this process)",
			"backend CPU (the sampler's session)"},
		rows: rows,
	}
}

const sleeperApp = "bench sleeper"

// sleepingSessions opens add more sessions that wait in pg_sleep until the test ends, and
// waits until total of them sleep. At the end they are terminated, so none outlives the test
// on a shared server.
func sleepingSessions(t *testing.T, dsn string, add, total int) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = sleeperApp
	var wg sync.WaitGroup
	connecting := make(chan struct{}, 8) // connections opened at once
	for range add {
		wg.Add(1)
		go func() {
			defer wg.Done()
			connecting <- struct{}{}
			c, err := pgx.ConnectConfig(context.Background(), cfg)
			<-connecting
			if err != nil {
				t.Errorf("sleeping session: %v", err)
				return
			}
			defer c.Close(context.Background())
			_, _ = c.Exec(context.Background(), "SELECT pg_sleep(3600)") // ends when terminated
		}()
	}
	mon := pgtest.Connect(t, dsn, "")
	t.Cleanup(func() {
		pgtest.MustExec(t, mon, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", sleeperApp)
		wg.Wait()
	})
	pgtest.Eventually(t, 3*time.Minute, fmt.Sprintf("%d sessions in pg_sleep", total), func() bool {
		var n int
		err := mon.QueryRow(context.Background(),
			"SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event = 'PgSleep'", sleeperApp).Scan(&n)
		return err == nil && n == total
	})
}

// benchIdleSessionsCost measures what reading a running batch's own idle sessions costs the
// wait sampler (issue 19) with 10 sessions in pg_sleep and 100 or 500 idle ones (short: 10
// idle): between runs (every 1 s) no idle session is read, only filtered out by the server;
// while a batch runs (every 250 ms), those that may be its own by name (none of these), or
// every idle one (a running batch's rule matches application_names by a pattern).
func benchIdleSessionsCost(t *testing.T, full bool) benchSection {
	idle, window := []int{10}, 2*time.Second
	srv := pgtest.Start(t, latestMajor())
	if full {
		idle, window = []int{100, 500}, 40*time.Second
		srv = pgtest.StartWith(t, latestMajor(), pgtest.Options{Private: true, Settings: map[string]string{"max_connections": "600"}})
	}
	dsn := srv.NewDatabase(t)
	const sleeping = 10
	sleepingSessions(t, dsn, sleeping, sleeping)
	var rows [][]string
	opened := 0
	for _, n := range idle {
		idleSessions(t, dsn, n-opened)
		opened = n
		for _, read := range []struct {
			what     string
			interval time.Duration
			idle     collectors.IdleSessions
			seen     int
		}{
			{"between runs: none", collectors.DefaultWaitSampleEvery, collectors.IdleSessions{}, sleeping},
			{"in a run: by name", collectors.DefaultRunWaitSampleEvery, collectors.IdleSessions{ApplicationNames: []string{"etl_nightly"}}, sleeping},
			{"in a run: every one", collectors.DefaultRunWaitSampleEvery, collectors.IdleSessions{All: true}, sleeping + n},
		} {
			row := measureWaitSampler(t, dsn, srv.DataDir != "", read.interval, window, read.seen, read.idle)
			rows = append(rows, append([]string{fmt.Sprint(n), read.what}, row[1:]...))
		}
	}
	return benchSection{
		title: fmt.Sprintf("Idle sessions read: PostgreSQL %d; %d client sessions in pg_sleep and the idle ones; CPU over %s of readings, as %% of one core",
			latestMajor(), sleeping, window),
		header: []string{"idle sessions", "idle sessions read", "interval", "readings", "reading mean (wall)", "exporter CPU (this process)",
			"backend CPU (the sampler's session)"},
		rows: rows,
	}
}

// idleSessions opens n sessions that stay idle until the test ends.
func idleSessions(t *testing.T, dsn string, n int) {
	t.Helper()
	connecting := make(chan struct{}, 8) // connections opened at once
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			connecting <- struct{}{}
			defer func() { <-connecting }()
			pgtest.Connect(t, dsn, "bench idle")
		}()
	}
	wg.Wait()
}

// measureWaitSampler reads pg_stat_activity as the wait sampler does, every interval for
// window, through a pool of one connection, with the idle sessions idle names read too, and
// returns the row of the cost table; sessions is how many the last reading must see.
func measureWaitSampler(t *testing.T, dsn string, localBackend bool, interval, window time.Duration, sessions int, idle collectors.IdleSessions) []string {
	t.Helper()
	ctx := context.Background()
	pool := samplerPool(t, dsn, 1)
	backend := func() uint32 {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Release()
		return c.Conn().PgConn().PID()
	}
	pid := backend()
	w := collectors.NewWaitSampler(pool, interval, slog.New(slog.DiscardHandler))
	w.ReadIdleSessions(func() collectors.IdleSessions { return idle })
	var seen int
	w.Observe(func(_ time.Time, _ time.Duration, waits []collectors.SessionWait, _ []collectors.SessionTime) {
		seen = len(waits)
	})
	// A first reading prepares the statement and fills the backend's caches, as in a running exporter.
	if err := w.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	readings := int(window / interval)
	var took time.Duration
	cpu0, backend0, start := cpuTime(), procCPU(t, pid, localBackend), time.Now()
	for i := range readings {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		t0 := time.Now()
		if err := w.Sample(ctx); err != nil {
			t.Fatal(err)
		}
		took += time.Since(t0)
	}
	time.Sleep(time.Until(start.Add(window)))
	wall := time.Since(start)
	cpu, backendCPU := cpuTime()-cpu0, procCPU(t, pid, localBackend)-backend0
	if seen < sessions {
		t.Errorf("the last reading saw %d sessions, want %d", seen, sessions)
	}
	if p := backend(); p != pid {
		t.Fatalf("the sampler's connection changed (backend %d, then %d): its CPU was not measured", pid, p)
	}
	share := func(d time.Duration) string { return fmt.Sprintf("%.3f%%", 100*d.Seconds()/wall.Seconds()) }
	backendShare := "not measured (docker backend: the pid is the container's)"
	if localBackend {
		backendShare = share(backendCPU)
	}
	return []string{fmt.Sprint(sessions), interval.String(), fmt.Sprint(readings),
		(took / time.Duration(readings)).Round(10 * time.Microsecond).String(), share(cpu), backendShare}
}

// samplerPool is a pool as the exporter opens it (its application_name, which the samplers
// leave out; read-only; its timeouts), of at most conns connections.
func samplerPool(t *testing.T, dsn string, conns int32) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.PoolWith(t, postgres.Options{DSN: dsn, MaxConns: conns, StatementTimeout: 5 * time.Second, LockTimeout: time.Second, ReadOnly: true})
	t.Cleanup(pool.Close)
	return pool
}

// procCPU is a local process's user+system CPU time; 0 when the process is not local.
func procCPU(t *testing.T, pid uint32, local bool) time.Duration {
	t.Helper()
	if !local {
		return 0
	}
	self, _ := proctest.Stat(t, pid)
	return self
}

// pgWaitSamplingLib is Debian's pg_wait_sampling for PostgreSQL 15 (postgresql-15-pg-wait-sampling).
const pgWaitSamplingLib = "/usr/lib/postgresql/15/lib/pg_wait_sampling.so"

// wait is a wait event type and event, as the wait sampler names them.
type wait struct{ typ, event string }

func (w wait) String() string { return w.typ + "/" + w.event }

// The waits the fidelity workload scripts.
var (
	waitSleep = wait{"Timeout", "PgSleep"}
	waitLock  = wait{"Lock", "relation"}
	waitCPU   = wait{"Running", "CPU"}
)

// fidelityWorkload is what benchWaitFidelity runs: sessions in pg_sleep, sessions waiting
// for locks that others hold, CPU-bound sessions, each with pauses, for duration.
type fidelityWorkload struct {
	duration                         time.Duration
	sleepers, lockPairs, cpuSessions int
}

// benchWaitFidelity (issue 12, row 6) runs a scripted workload whose session-seconds in each
// wait the script knows (the pg_sleep durations it asked for, the lock waiters' and the CPU
// statements' own timing), and reads it at once with the exporter's wait sampler at 1s and
// 100ms (each a runner of its own, as --collector.waits.interval runs it) and, in the full
// run where Debian's package is installed, pg_wait_sampling (every 10 ms, on Debian's
// PostgreSQL 15). Short: a few seconds, without pg_wait_sampling.
func benchWaitFidelity(t *testing.T, full bool) benchSection {
	wl := fidelityWorkload{duration: 6 * time.Second, sleepers: 4, lockPairs: 1, cpuSessions: 1}
	if full {
		wl = fidelityWorkload{duration: 3 * time.Minute, sleepers: 8, lockPairs: 3, cpuSessions: 2}
	}
	var srv *pgtest.Server
	pws := "not run (short mode)"
	switch _, err := os.Stat(pgWaitSamplingLib); {
	case !full:
		srv = pgtest.Start(t, latestMajor())
	case err == nil:
		srv = pgtest.StartWith(t, 15, pgtest.Options{Private: true, Debian: true, SharedPreload: []string{"pg_wait_sampling"}})
		pws = ""
	default:
		srv = pgtest.StartWith(t, latestMajor(), pgtest.Options{Private: true})
		pws = "not run (no " + pgWaitSamplingLib + ": apt-get install postgresql-15-pg-wait-sampling)"
	}
	dsn := srv.NewDatabase(t)
	if pws == "" {
		srv.Exec(t, dsn, "CREATE EXTENSION pg_wait_sampling")
	}
	for i := range wl.lockPairs {
		srv.Exec(t, dsn, fmt.Sprintf("CREATE TABLE public.locked%d (id int)", i))
	}
	mon := pgtest.Connect(t, dsn, "")
	samplers := []*collectors.WaitSampler{startWaitSampler(t, dsn, time.Second), startWaitSampler(t, dsn, 100*time.Millisecond)}
	if pws == "" {
		pgtest.MustExec(t, mon, "SELECT pg_wait_sampling_reset_profile()")
	}
	truth, pids, lockWaits := runFidelityWorkload(t, dsn, wl)
	time.Sleep(2 * time.Second) // the 1s sampler's strata of the workload's end are read
	read := make([]map[wait]float64, len(samplers))
	for i, s := range samplers {
		read[i] = map[wait]float64{}
		for _, w := range s.Totals() {
			read[i][wait{w.WaitEventType, w.WaitEvent}] = w.Seconds
		}
	}
	var pwsRead map[wait]float64
	pwsCPU := true
	if pws == "" {
		pwsRead, pwsCPU = readPgWaitSampling(t, mon, pids)
	}

	scripted := []struct {
		wait wait
		what string
	}{
		{waitSleep, fmt.Sprintf("pg_sleep of 0.2-1.5 s, idle 0-0.5 s between (sessions: %d)", wl.sleepers)},
		{waitLock, fmt.Sprintf("waits of 2-5 s for a table another session locked, idle 0-0.5 s between (waits: %d, waiting sessions: %d)",
			lockWaits, wl.lockPairs)},
		{waitCPU, fmt.Sprintf("count(*) of a cross join of generate_series, 0.1-1.5 s, idle 0-0.3 s between (sessions: %d)", wl.cpuSessions)},
	}
	cell := func(got, want float64) string {
		if want == 0 {
			return fmt.Sprintf("%.1f", got)
		}
		return fmt.Sprintf("%.1f (%+.1f%%)", got, 100*(got-want)/want)
	}
	var rows [][]string
	for _, s := range scripted {
		want := truth[s.wait].Seconds()
		row := []string{s.wait.String() + ": " + s.what, fmt.Sprintf("%.1f", want)}
		for i := range samplers {
			row = append(row, cell(read[i][s.wait], want))
			if i == 1 && want > 0 && read[i][s.wait] == 0 {
				t.Errorf("the 100ms sampler booked nothing to %s (%.1f s scripted)", s.wait, want)
			}
		}
		switch {
		case pws != "":
			row = append(row, pws)
		case s.wait == waitCPU && !pwsCPU:
			row = append(row, "not sampled (this version has no pg_wait_sampling.sample_cpu)")
		default:
			row = append(row, cell(pwsRead[s.wait], want))
		}
		rows = append(rows, row)
	}
	// What the readers booked to waits the script has not: 0 is right.
	other := []string{"other waits (none scripted)", "0"}
	for _, r := range append(read, pwsRead) {
		sum := 0.0
		for w, v := range r {
			if w != waitSleep && w != waitLock && w != waitCPU {
				sum += v
			}
		}
		other = append(other, fmt.Sprintf("%.1f", sum))
	}
	if pws != "" {
		other[len(other)-1] = pws
	}
	rows = append(rows, other)
	return benchSection{
		title: fmt.Sprintf("Wait fidelity: PostgreSQL %d, a scripted workload of %s; session-seconds per wait (error against the script)",
			srv.Major, wl.duration),
		header: []string{"wait: workload", "scripted", "wait sampler 1s", "wait sampler 100ms", "pg_wait_sampling 10ms"},
		rows:   rows,
	}
}

// startWaitSampler runs the exporter's wait sampler alone (as --collector.disable-defaults
// --collector.waits would; the tiers' intervals an hour) every interval until the test ends.
func startWaitSampler(t *testing.T, dsn string, interval time.Duration) *collectors.WaitSampler {
	t.Helper()
	app := kingpin.New("bench", "")
	selection := collectors.RegisterFlags(app)
	if _, err := app.Parse([]string{"--collector.disable-defaults", "--collector.waits"}); err != nil {
		t.Fatal(err)
	}
	r := collectors.NewRunner(collectors.RunnerOptions{Pool: samplerPool(t, dsn, 2), Selection: selection,
		SampleEvery: time.Hour, SnapshotEvery: time.Hour, WaitSampleEvery: interval})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r.Waits()
}

// runFidelityWorkload runs wl against dsn and returns the session-seconds it spent in each
// scripted wait, the pids of its sessions, and the number of lock waits.
func runFidelityWorkload(t *testing.T, dsn string, wl fidelityWorkload) (truth map[wait]time.Duration, pids []uint32, lockWaits int) {
	t.Helper()
	truth = map[wait]time.Duration{}
	var mu sync.Mutex
	book := func(w wait, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		truth[w] += d
		if w == waitLock {
			lockWaits++
		}
	}
	connect := func() *pgx.Conn {
		c := pgtest.Connect(t, dsn, "bench workload")
		pids = append(pids, c.PgConn().PID())
		return c
	}
	// exec runs a statement from a workload goroutine, where t.Fatal may not be called.
	exec := func(c *pgx.Conn, sql string, args ...any) bool {
		if _, err := c.Exec(context.Background(), sql, args...); err != nil {
			t.Errorf("%s: %v", sql, err)
			return false
		}
		return true
	}
	pause := func(upTo time.Duration) { time.Sleep(rand.N(upTo)) }
	end := time.Now().Add(wl.duration)
	var wg sync.WaitGroup
	loop := func(step func() bool) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && step() {
			}
		}()
	}
	for range wl.sleepers {
		c := connect()
		loop(func() bool {
			d := 200*time.Millisecond + rand.N(1300*time.Millisecond)
			if !exec(c, "SELECT pg_sleep($1)", d.Seconds()) {
				return false
			}
			book(waitSleep, d)
			pause(500 * time.Millisecond)
			return true
		})
	}
	for i := range wl.lockPairs {
		holder, waiter := connect(), connect()
		table := fmt.Sprintf("public.locked%d", i)
		loop(func() bool {
			if !exec(holder, "BEGIN") || !exec(holder, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE") {
				return false
			}
			waited := make(chan time.Duration, 1)
			go func() {
				start := time.Now()
				exec(waiter, "SELECT count(*) FROM "+table) // waits until the holder commits
				waited <- time.Since(start)
			}()
			time.Sleep(2*time.Second + rand.N(3*time.Second))
			ok := exec(holder, "COMMIT")
			book(waitLock, <-waited)
			pause(500 * time.Millisecond)
			return ok
		})
	}
	for range wl.cpuSessions {
		c := connect()
		loop(func() bool {
			// A cross join of two small series: its rows are counted, never materialized
			// beyond 1000 of them (a big generate_series would spill to a temporary file
			// at the default work_mem: IO waits). 0.1-1.5 s on the machine measured.
			start := time.Now()
			if !exec(c, "SELECT count(*) FROM generate_series(1, $1) a, generate_series(1, 1000) b", 1000+rand.N(19000)) {
				return false
			}
			book(waitCPU, time.Since(start))
			pause(300 * time.Millisecond)
			return true
		})
	}
	wg.Wait()
	return truth, pids, lockWaits
}

// readPgWaitSampling is pg_wait_sampling's profile of the sessions pids: session-seconds per
// wait (samples × pg_wait_sampling.profile_period), samples without a wait as Running/CPU,
// and whether this version samples those at all (pg_wait_sampling.sample_cpu).
func readPgWaitSampling(t *testing.T, c *pgx.Conn, pids []uint32) (map[wait]float64, bool) {
	t.Helper()
	var periodMs float64
	var samplesCPU bool
	if err := c.QueryRow(context.Background(), `SELECT current_setting('pg_wait_sampling.profile_period')::float8,
		coalesce(current_setting('pg_wait_sampling.sample_cpu', true)::bool, false)`).Scan(&periodMs, &samplesCPU); err != nil {
		t.Fatal(err)
	}
	pidList := make([]int64, len(pids))
	for i, p := range pids {
		pidList[i] = int64(p)
	}
	// Client waits are idle sessions (ClientRead), which pg_wait_sampling samples and the
	// exporter's sampler leaves out.
	rows, err := c.Query(context.Background(), `SELECT coalesce(event_type, 'Running'), coalesce(event, 'CPU'), sum(count)::float8
		FROM pg_wait_sampling_profile WHERE pid = ANY($1) AND event_type IS DISTINCT FROM 'Client' GROUP BY 1, 2`, pidList)
	if err != nil {
		t.Fatal(err)
	}
	out := map[wait]float64{}
	for rows.Next() {
		var w wait
		var samples float64
		if err := rows.Scan(&w.typ, &w.event, &samples); err != nil {
			t.Fatal(err)
		}
		out[w] = samples * periodMs / 1000
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out, samplesCPU
}
