package collectors

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// FuzzParseTableName: --collector.tables.track never panics; a name it accepts has two
// non-empty parts, unquoted parts fold as PostgreSQL folds them (ASCII only), and quoting
// the result as SQL reads back the same name.
func FuzzParseTableName(f *testing.F) {
	for _, s := range []string{"orders", "public.orders", `"My Schema"."Orders"`, `a.b.c`, `"unterminated`, `"a""b".c`,
		`.x`, `x.`, `""."x"`, `ÉCOLE.Élève`, "a b", `"a".`, `"x"y`, "\x00", " orders "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseTableName(s)
		if err != nil {
			return
		}
		if n.Schema == "" || n.Table == "" {
			t.Fatalf("%q: accepted %#v", s, n)
		}
		if !strings.ContainsRune(s, '"') {
			want := strings.TrimSpace(s)
			for c := 'A'; c <= 'Z'; c++ {
				want = strings.ReplaceAll(want, string(c), string(c+'a'-'A'))
			}
			if got := n.String(); got != want && "public."+want != got {
				t.Errorf("%q: read as %q, PostgreSQL reads %q", s, got, want)
			}
		}
		quoted := pgx.Identifier{n.Schema, n.Table}.Sanitize()
		again, err := ParseTableName(quoted)
		if err != nil || again != n {
			t.Errorf("%q: read as %#v, its quoted form %s reads as %#v (%v)", s, n, quoted, again, err)
		}
	})
}
