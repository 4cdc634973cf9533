package batch

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// checkRules holds for every rule a parser accepts: a bounded, trimmed UTF-8 name, one rule
// per batch, and a pattern that can be matched.
func checkRules(t *testing.T, input string, rules []Rule) {
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Batch == "" || len(r.Batch) > MaxNameBytes || !utf8.ValidString(r.Batch) || strings.TrimSpace(r.Batch) != r.Batch {
			t.Errorf("%q: accepted batch name %q", input, r.Batch)
		}
		if seen[r.Batch] {
			t.Errorf("%q: two rules for %q", input, r.Batch)
		}
		seen[r.Batch] = true
		r.Matches(input, input)
	}
}

func FuzzParseRule(f *testing.F) {
	for _, s := range []string{"nightly=application_name:^etl_nightly", "a=application_name:(", "=application_name:x",
		" b =application_name:^b$", "x=datname:y", "n=application_name:", strings.Repeat("n", 201) + "=application_name:x",
		"\xff=application_name:x", "a=b=application_name:c", "a=application_name:a{1000}{1000}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			return
		}
		checkRules(t, s, []Rule{r})
	})
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"batches:\n  - name: nightly\n    match: application_name:^etl_nightly\n",
		"batches: [{name: a, match: 'application_name:^a'}, {name: a, match: 'application_name:^b'}]", "", "batches: 3",
		"batches:\n  - name: x\n    match: application_name:x\n    extra: 1\n", "batches: [{name: &a x, match: *a}]",
		"a: &a [*a, *a]\nbatches: []", "batches: [{name: '" + strings.Repeat("é", 101) + "', match: 'application_name:x'}]",
		"---\nbatches: []\n---\nbatches: [{name: b}]", "batches: [{name: \"\\0\", match: 'application_name:x'}]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, err := ParseConfig(data)
		if err != nil {
			return
		}
		checkRules(t, string(data), rules)
	})
}

// TestNameBound: a batch name longer than MaxNameBytes is refused by every way in.
func TestNameBound(t *testing.T) {
	long := strings.Repeat("é", MaxNameBytes/2+1)
	if _, err := ParseRule(long + "=application_name:x"); err == nil || !strings.Contains(err.Error(), "at most 200") {
		t.Errorf("--batch.match: %v", err)
	}
	if _, err := ParseConfig([]byte("batches: [{name: " + long + ", match: 'application_name:x'}]")); err == nil || !strings.Contains(err.Error(), "at most 200") {
		t.Errorf("--config.file: %v", err)
	}
	if err := CheckName(strings.Repeat("n", MaxNameBytes)); err != nil {
		t.Errorf("%d bytes: %v", MaxNameBytes, err)
	}
}
