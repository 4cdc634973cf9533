// Package postgres opens the exporter's connections: where the DSN comes from,
// the timeouts every query runs under, and how a DSN is shown without its password.
package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ApplicationName marks the exporter's own sessions, so that its samplers can leave them out.
const ApplicationName = "pg-batch-exporter"

// SearchPath is every session's search_path: only the system catalogs and the session's own
// temporary objects, which pg_catalog's functions and operators beat, and no one else can create.
const SearchPath = "pg_catalog, pg_temp"

// TrustedOwner is a SQL condition on an owner column (pg_namespace.nspowner, pg_class.relowner,
// ...): the owner is the session's role, a role that can act as it, or a superuser. The
// program reads and calls telemetry objects only where they pass it: a schema or a view that
// another role owns could run that role's code with this session's rights (a view over its
// own function, a trigger), whatever the search_path.
func TrustedOwner(owner string) string {
	return "pg_catalog.pg_has_role(" + owner + ", current_user, 'MEMBER')"
}

// Options are the connection settings shared by every command.
type Options struct {
	// DSN is a libpq URL or keyword/value string; empty means libpq's environment
	// (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, .pgpass), as psql reads it.
	DSN      string
	MaxConns int32
	// StatementTimeout and LockTimeout bound every query; 0: DefaultStatementTimeout and
	// DefaultLockTimeout (the flags' defaults: a zero never switches them off).
	StatementTimeout time.Duration
	LockTimeout      time.Duration
	// ReadOnly makes every transaction read-only: the exporter only reads; the recorder writes.
	ReadOnly bool
	// ApplicationName overrides ApplicationName (for example "pg-batch-exporter recorder").
	ApplicationName string
}

// The defaults of --postgres.statement-timeout and --postgres.lock-timeout.
const (
	DefaultStatementTimeout = 5 * time.Second
	DefaultLockTimeout      = time.Second
)

// Config parses the options into a pool configuration. Parse errors never repeat the DSN.
func Config(o Options) (*pgxpool.Config, error) {
	o.StatementTimeout = cmp.Or(o.StatementTimeout, DefaultStatementTimeout)
	o.LockTimeout = cmp.Or(o.LockTimeout, DefaultLockTimeout)
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		return nil, fmt.Errorf("invalid PostgreSQL connection string: %w", redactError(err, o.DSN))
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	cfg.MinConns = 0
	cfg.MaxConnIdleTime = 5 * time.Minute
	cfg.HealthCheckPeriod = 30 * time.Second
	rp := cfg.ConnConfig.RuntimeParams
	name := o.ApplicationName
	if name == "" {
		name = ApplicationName
	}
	rp["application_name"] = name
	// Every query, whatever issues it, is bounded: a hung catalog read or a lock held by the
	// batch costs one collection, never the batch's throughput or the exporter.
	rp["statement_timeout"] = millis(o.StatementTimeout)
	rp["lock_timeout"] = millis(o.LockTimeout)
	rp["idle_in_transaction_session_timeout"] = millis(max(o.StatementTimeout*2, time.Minute))
	// No name our SQL uses may resolve to an object another role created: with "$user", public
	// a public.unnest(integer[]) would beat pg_catalog's and run as the exporter's role. Our
	// own objects are always written telemetry.name.
	rp["search_path"] = SearchPath
	if o.ReadOnly {
		rp["default_transaction_read_only"] = "on"
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	return cfg, nil
}

// NewPool creates a pool without connecting: the first collection connects, so the
// exporter starts and serves pgbatch_up 0 even when the server is down.
func NewPool(ctx context.Context, cfg *pgxpool.Config) (*pgxpool.Pool, error) {
	return pgxpool.NewWithConfig(ctx, cfg)
}

// Describe names the server a pool connects to, for logs: user@host:port/database, never the password.
func Describe(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	return fmt.Sprintf("%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

func millis(d time.Duration) string {
	return fmt.Sprintf("%d", d.Milliseconds())
}

// redactError keeps a parse error's reason but removes any password it quotes.
func redactError(err error, dsn string) error {
	msg := err.Error()
	for _, pw := range passwords(dsn) {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) && pe.Unwrap() != nil {
		msg = redactError(pe.Unwrap(), dsn).Error()
	}
	return errors.New(msg)
}

// passwords finds the password in a URL or keyword/value DSN, however malformed the rest is.
func passwords(dsn string) []string {
	var out []string
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			out = append(out, pw, url.QueryEscape(pw), url.PathEscape(pw))
		}
	}
	if i := strings.Index(dsn, "://"); i >= 0 {
		rest := dsn[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if c := strings.Index(rest[:at], ":"); c >= 0 && c+1 < at {
				out = append(out, rest[c+1:at])
			}
		}
	}
	for _, f := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(f, "password="); ok && v != "" {
			out = append(out, strings.Trim(v, "'"))
		}
	}
	return out
}

// SQLUntrustedTelemetryOwner is the first owner, of the schema n (pg_namespace) or of a
// relation or function in it, that this role cannot trust; NULL when there is none. The
// recorder's migrations and install.sql refuse to go on where there is one.
var SQLUntrustedTelemetryOwner = `(
	SELECT pg_catalog.pg_get_userbyid(o.owner) FROM (
		SELECT n.nspowner AS owner
		UNION ALL SELECT relowner FROM pg_catalog.pg_class WHERE relnamespace = n.oid
		UNION ALL SELECT proowner FROM pg_catalog.pg_proc WHERE pronamespace = n.oid) o
	WHERE NOT ` + TrustedOwner("o.owner") + ` LIMIT 1)`

// sqlTelemetryTrust finds the telemetry schema and the first owner that this role cannot trust.
var sqlTelemetryTrust = `SELECT n.oid IS NOT NULL, current_user, ` + SQLUntrustedTelemetryOwner + `
FROM (SELECT) AS one LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'telemetry'`

// Querier is a pool, a connection or a transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// TelemetrySchema tells whether the telemetry schema exists, and fails where it, or anything
// in it, belongs to a role this session's role cannot trust (see TrustedOwner). It asks only
// the catalog, so it raises nothing in the server log whatever the schema's privileges.
func TelemetrySchema(ctx context.Context, q Querier) (installed bool, err error) {
	var role string
	var untrusted *string
	if err := q.QueryRow(ctx, sqlTelemetryTrust).Scan(&installed, &role, &untrusted); err != nil {
		return false, err
	}
	if untrusted != nil {
		return true, fmt.Errorf("schema telemetry, or an object in it, belongs to role %q, which role %q cannot trust "+
			"(it is neither that role, a role that can act as it, nor a superuser): refusing to use it, since its views and "+
			"functions would run that role's code with %q's rights; connect as %[1]q, or let %[2]q or a superuser own the schema",
			*untrusted, role, role)
	}
	return installed, nil
}
