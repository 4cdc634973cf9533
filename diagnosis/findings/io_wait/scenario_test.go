package iowait_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/lab"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// accountRows is the size of public.accounts: some 600 MB of heap, many times the test
// server's shared_buffers (32 MB), so that most of the batch's reads of it come from the
// operating system's page cache, or from the disk where the page cache lost them.
const accountRows = 2_000_000

// lookups is the batch's work: 120,000 keyed reads of public.accounts in one statement, spread
// over the table (the same keys every run), one index probe each (LIMIT 1 keeps the lateral
// subquery a parameterized index scan, never a hash join over a scan of the table), and a
// fixed amount of CPU.
func lookups(t *testing.T, _ *lab.Lab, c *pgx.Conn) {
	lab.MustExec(t, c, `SELECT count(*), sum(length(a.note)) FROM generate_series(1, 120000) g
		CROSS JOIN LATERAL (SELECT note FROM public.accounts WHERE id = (hashint4(g) & 2147483647) % $1 + 1 LIMIT 1) a`, accountRows)
	lab.MustExec(t, c, `SELECT count(*) FROM (SELECT generate_series(1, 3000000)) s`)
}

// TestColdPageCache: the batch reads its table at random, from memory in the usual runs (the
// operating system's page cache); tonight another job's files pushed the table out of the page
// cache before the run (lab.DropFromPageCache), and its reads went to the disk. Nothing in
// PostgreSQL changed: the same plan, the same blocks read per call (pg_stat_statements counts a
// read from the page cache and one from the disk alike). io_wait is the cause, first, naming
// the statement.
func TestColdPageCache(t *testing.T) {
	lab.RunSlow(t, lab.SlowRun{Want: "io_wait",
		Setup: func(l *lab.Lab) {
			l.Exec(`CREATE TABLE public.accounts (id int PRIMARY KEY, note text) WITH (autovacuum_enabled = false)`)
			l.Exec(`INSERT INTO public.accounts SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, $1::int) g`, accountRows)
			l.Exec(`VACUUM ANALYZE public.accounts`)
		},
		Usual: lookups,
		Between: func(t *testing.T, l *lab.Lab) {
			l.DropFromPageCache("public.accounts", "public.accounts_pkey")
		},
		Check: func(t *testing.T, l *lab.Lab, runID int64, d *lab.RunDiagnosis) {
			if s := d.Findings[0].Summary; !strings.Contains(s, `"SELECT count(*), sum(length(a.note))`) || !strings.Contains(s, "IO:") ||
				!strings.Contains(s, "the same reads took longer") {
				t.Errorf("io_wait %q: want the lookups' statement, its I/O wait, and its reads as many as usual", s)
			}
		}})
}
