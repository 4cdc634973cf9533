// Package batch knows when a batch runs: detection rules that turn the wait sampler's view of
// sessions into runs, the runs recorded in telemetry.batch_runs (markers, the exec wrapper),
// the per-batch metrics, and the exec wrapper itself.
package batch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Rule says which sessions are a batch's: a run starts when one becomes active. An
// application_name is whatever a session sets (any role may SET it); User, where given, is the
// role the session must have logged in as (pg_stat_activity.usename), which it cannot change.
type Rule struct {
	Batch           string
	User            string         // "": any role
	ApplicationName *regexp.Regexp // nil: any application_name (a rule on User alone)
}

// Matches tells whether a session with this application_name, logged in as this role, belongs
// to the rule's batch.
func (r Rule) Matches(applicationName, user string) bool {
	return (r.User == "" || r.User == user) && (r.ApplicationName == nil || r.ApplicationName.MatchString(applicationName))
}

// ruleSyntax is a --batch.match value's and a config file's match's form.
const ruleSyntax = "user:role, application_name:regexp, or user:role,application_name:regexp"

// ParseRule reads a --batch.match value: batch=application_name:regexp, batch=user:role, or
// batch=user:role,application_name:regexp.
func ParseRule(s string) (Rule, error) {
	batch, match, ok := strings.Cut(s, "=")
	if !ok {
		return Rule{}, fmt.Errorf("batch rule %q: want batch=%s", s, ruleSyntax)
	}
	return newRule(strings.TrimSpace(batch), match)
}

// MaxNameBytes bounds a batch's name: it becomes a Prometheus label value and a row of
// every run, so a runaway name must not.
const MaxNameBytes = 200

// CheckName refuses an empty, overlong or non-UTF-8 batch name, and one with a control
// character (a tab, a newline: a label, a log line and a report cell each show it wrongly),
// as telemetry.batch_begin does. Every command that takes a batch's name checks it here.
func CheckName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("the batch name is empty")
	case len(name) > MaxNameBytes:
		return fmt.Errorf("the batch name is %d bytes long (%.20q...): at most %d", len(name), name, MaxNameBytes)
	case !utf8.ValidString(name):
		return fmt.Errorf("the batch name %q is not valid UTF-8 text", name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("the batch name %q has a control character", name)
	}
	return nil
}

func newRule(batch, match string) (Rule, error) {
	if err := CheckName(batch); err != nil {
		return Rule{}, fmt.Errorf("batch rule %.60q: %w", batch+"="+match, err)
	}
	r := Rule{Batch: batch}
	if role, ok := strings.CutPrefix(match, "user:"); ok {
		role, match, _ = strings.Cut(role, ",")
		if r.User = strings.TrimSpace(role); r.User == "" {
			return Rule{}, fmt.Errorf("batch %s: the role of user: is empty", batch)
		}
		if match == "" {
			return r, nil
		}
	}
	field, pattern, ok := strings.Cut(match, ":")
	if !ok {
		return Rule{}, fmt.Errorf("batch %s: match %q: want %s", batch, match, ruleSyntax)
	}
	if field != "application_name" {
		return Rule{}, fmt.Errorf("batch %s: cannot match on %q: only user and application_name are known", batch, field)
	}
	if pattern == "" {
		return Rule{}, fmt.Errorf("batch %s: the application_name pattern is empty", batch)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return Rule{}, fmt.Errorf("batch %s: application_name pattern: %w", batch, err)
	}
	r.ApplicationName = re
	return r, nil
}

// ParseRules reads every --batch.match value; a batch may have one rule only.
func ParseRules(values []string) ([]Rule, error) {
	var rules []Rule
	for _, v := range values {
		r, err := ParseRule(v)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, CheckUnique(rules)
}

// CheckUnique refuses two rules for one batch.
func CheckUnique(rules []Rule) error {
	seen := map[string]bool{}
	for _, r := range rules {
		if seen[r.Batch] {
			return fmt.Errorf("batch %s has two rules", r.Batch)
		}
		seen[r.Batch] = true
	}
	return nil
}

// fileConfig is the --config.file layout:
//
//	batches:
//	  - name: nightly
//	    match: application_name:^etl_nightly
type fileConfig struct {
	Batches []struct {
		Name  string `yaml:"name"`
		Match string `yaml:"match"`
	} `yaml:"batches"`
}

// LoadRules reads the rules of a YAML configuration file; unknown keys are errors.
func LoadRules(path string) ([]Rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rules, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rules, nil
}

// ParseConfig reads the rules of a --config.file's content.
func ParseConfig(data []byte) ([]Rule, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var cfg fileConfig
	if err := dec.Decode(&cfg); errors.Is(err, io.EOF) {
		return nil, errors.New("the file is empty: want batches: [{name: nightly, match: 'application_name:^etl_nightly'}]")
	} else if err != nil {
		return nil, err
	}
	var rules []Rule
	for _, b := range cfg.Batches {
		r, err := newRule(strings.TrimSpace(b.Name), b.Match)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, CheckUnique(rules)
}
