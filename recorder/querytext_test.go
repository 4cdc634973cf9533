package recorder

import (
	"context"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/pg-batch-exporter/pg-batch-exporter/collectors"
	"github.com/pg-batch-exporter/pg-batch-exporter/testharness/pgtest"
)

// telemetry._normalized_query replaces every constant by $n, numbered after the query's own
// parameters, whatever its quoting, and keeps identifiers, parameters and comments; a constant
// cut off by a preview's length is replaced to the end.
func TestNormalizedQuery(t *testing.T) {
	e := newEnv(t, pgtest.Start(t, pgtest.Versions()[0]))
	c := e.conn()
	for _, tc := range []struct{ in, want string }{
		{`SELECT 'café crème' FROM t`, `SELECT $1 FROM t`},
		{`UPDATE cards SET holder = 'Ann' WHERE number = '4111 1111 1111 1111'`, `UPDATE cards SET holder = $1 WHERE number = $2`},
		{`SELECT * FROM t1 WHERE x = 42 AND y = 3.5e-3 AND z = .5 AND w = -7`, `SELECT * FROM t1 WHERE x = $1 AND y = $2 AND z = $3 AND w = -$4`},
		{`SELECT E'it\'s 4111', 'a''b 4111', e'\\', '4111'`, `SELECT $1, $2, $3, $4`},
		{`SELECT $$4111$$, $tag$ a $$ 4111 $tag$, 1`, `SELECT $1, $2, $3`},
		{`SELECT x FROM t WHERE id = $2 AND v = 'secret'`, `SELECT x FROM t WHERE id = $2 AND v = $3`},
		{`SELECT "col'1", 5 FROM "t""x" AS "4111"`, `SELECT "col'1", $1 FROM "t""x" AS "4111"`},
		{"SELECT 1 -- what pg_stat_statements keeps: 'x'\nFROM t", "SELECT $1 -- what pg_stat_statements keeps: 'x'\nFROM t"},
		{`/* nested /* c */ 'x' */ SELECT 'y'`, `/* nested /* c */ 'x' */ SELECT $1`},
		{`INSERT INTO t VALUES ('4111 1111`, `INSERT INTO t VALUES ($1`},
		{`INSERT INTO t VALUES (E'4111 \' 1111`, `INSERT INTO t VALUES ($1`},
		// One string where a session turned standard_conforming_strings off: its words too.
		{`SELECT 'it\'s my secret' FROM t`, `SELECT $1`},
		{`SELECT $q$ 4111 1111`, `SELECT $1`},
		{`SELECT B'1010', X'ff', U&'d\0061t', N'x', 0x1F, 1_000_000, 0b101`, `SELECT $1, $2, $3, $4, $5, $6, $7`},
		{`SELECT a$1, t2.c3, café, _x9 FROM t2`, `SELECT a$1, t2.c3, café, _x9 FROM t2`},
		{`SELECT interval '1 day', '{1,2}'::int[], 4111::text`, `SELECT interval $1, $2::int[], $3::text`},
		{`SELECT count(*) FROM work /* 😀😀 */`, `SELECT count(*) FROM work /* 😀😀 */`},
		{``, ``},
	} {
		var got string
		if err := c.QueryRow(context.Background(), `SELECT telemetry._normalized_query($1)`, tc.in).Scan(&got); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if got != tc.want {
			t.Errorf("_normalized_query(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A lock-blocked query carrying a card number (issue 17): telemetry_reader could not see it
// in pg_stat_activity, but read it in the recorded samples. The recorder stores it with its
// constants replaced, in activity, lock and statement wait samples, lock wait episodes,
// pg_cron mode's sample() and statement texts (pg_stat_statements keeps the constants of some
// utility statements, such as COMMENT's, on 15 to 18); the statement's lock wait is still told
// apart by its text
// (statement_compare). --recorder.literal-query-text keeps the literal text.
func TestQueryTextsNormalized(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, srv *pgtest.Server) {
		// Statements stored at every snapshot: statement_compare reads the delta between two
		// plain snapshots, not batch boundaries.
		e := newEnvWith(t, srv, srv.NewDatabase(t), NoInterval)
		e.exec(`CREATE EXTENSION pg_stat_statements; CREATE TABLE cards (number text, holder text)`)
		c := e.conn()
		const stmt = `UPDATE cards SET holder = 'Ann' WHERE number = '4111 1111 1111 1111'`
		const normalized = `UPDATE cards SET holder = $1 WHERE number = $2`
		start := e.record(collectors.TierSnapshot)
		e.lockWaitedQuery(e.dsn, "cards", stmt, func() {
			pgtest.MustExec(t, c, `SELECT telemetry.sample()`) // pg_cron mode
		})
		// A utility statement whose constant pg_stat_statements keeps.
		e.exec(`COMMENT ON TABLE cards IS 'card 4111 1111 1111 1111'`)
		end := e.record(collectors.TierSnapshot)
		tables := []string{"activity_samples", "lock_samples", "lock_wait_episodes", "statement_wait_samples", "statement_texts"}
		for _, table := range tables {
			if leaked := pgtest.Query(t, c, `SELECT x::text AS row FROM telemetry.`+table+` x WHERE x::text LIKE '%4111 1111%'`); len(leaked) > 0 {
				t.Errorf("%s holds the card number: %v", table, leaked)
			}
		}
		for _, q := range []string{
			`SELECT count(*) AS n FROM telemetry.activity_samples WHERE query_preview = $1`,
			`SELECT count(*) AS n FROM telemetry.lock_samples WHERE blocked_query_preview = $1`,
			`SELECT count(DISTINCT captured_at) - 1 AS n FROM telemetry.lock_samples WHERE blocked_query_preview = $1`, // sample() too
			`SELECT count(*) AS n FROM telemetry.lock_wait_episodes WHERE blocked_query_preview = $1`,
			`SELECT count(*) AS n FROM telemetry.statement_wait_samples WHERE queryid = 0 AND query_text = $1`,
			`SELECT count(*) AS n FROM telemetry.statement_texts WHERE $1 <> '' AND query = 'COMMENT ON TABLE cards IS $1'`,
		} {
			if n := pgtest.Query(t, c, q, normalized)[0]["n"]; n.(int64) < 1 {
				t.Errorf("no normalized text: %s", q)
			}
		}
		waits := pgtest.Query(t, c, `SELECT sampled_waits FROM telemetry.statement_compare($1, $2) WHERE query = $3`, start, end, normalized)
		if len(waits) != 1 || waits[0]["sampled_waits"] == nil || waits[0]["sampled_waits"].(map[string]any)["Lock:relation"] == nil {
			t.Errorf("the statement's lock wait by its normalized text: %v, want Lock:relation", waits)
		}

		e.rec.o.LiteralQueryText = true
		const literal = `UPDATE cards SET holder = 'Bob' WHERE number = '5500 0000 0000 0004'`
		e.lockWaitedQuery(e.dsn, "cards", literal, nil)
		for _, table := range tables[:4] {
			if kept := pgtest.Query(t, c, `SELECT count(*) AS n FROM telemetry.`+table+` x WHERE x::text LIKE '%5500 0000 0000 0004%'`)[0]["n"]; kept == int64(0) {
				t.Errorf("%s: the literal text not kept with --recorder.literal-query-text", table)
			}
		}
	})
}

// _normalized_query never fails and ends on any text (a failure would set its row aside, or
// fail pg_cron mode's sample()): 3,000 random texts of SQL's quoting characters, digits,
// letters and multibyte characters. Normalizing a result again changes nothing where the text
// has no $ but parameters' (a $ or $tag right before a constant reads with its $n as a dollar
// quote: not SQL).
func TestNormalizedQueryAnyText(t *testing.T) {
	otherDollar := regexp.MustCompile(`\$([^0-9]|$)`)
	e := newEnv(t, pgtest.Start(t, pgtest.Versions()[0]))
	c := e.conn()
	pieces := []string{"'", "''", `"`, "$", "$$", "$a$", "$1", "--", "\n", "/*", "*/", `\`, "E'", "U&'", "x'", "0x", "1", "42", ".", ".5", "e-", "-",
		" ", "a", "t1", "SELECT", "é", "😀", "&", ";", "(", ")"}
	rng := rand.New(rand.NewPCG(17, 1))
	texts := make([]string, 3000)
	for i := range texts {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		texts[i] = b.String()
	}
	rows := pgtest.Query(t, c, `SELECT x AS text, telemetry._normalized_query(x) AS once,
			telemetry._normalized_query(telemetry._normalized_query(x)) AS twice
		FROM unnest($1::text[]) x`, texts)
	if len(rows) != len(texts) {
		t.Fatalf("%d rows for %d texts", len(rows), len(texts))
	}
	for _, r := range rows {
		if once := r["once"].(string); once != r["twice"] && !otherDollar.MatchString(r["text"].(string)) {
			t.Errorf("%q: normalized %q, again %q", r["text"], once, r["twice"])
		}
	}
}
